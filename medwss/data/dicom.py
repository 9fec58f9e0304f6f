"""DICOM series: find the series in a folder and list its files in slice order (GDCM through SimpleITK)."""

from __future__ import annotations

import logging
from pathlib import Path

from medwss.errors import MedwssError

logger = logging.getLogger(__name__)


def dicom_series_ids(folder: Path) -> list[str]:
    """Series instance UIDs found directly in ``folder`` (GDCM scans the files, not their names)."""
    import SimpleITK as sitk

    # ITK warns on stderr for every folder without DICOM; probing folders is expected here, so keep it quiet.
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def dicom_series_files(folder: Path, series_uid: str | None = None) -> list[str]:
    """Files of one series, sorted by slice position.

    With several series and no ``series_uid`` the one with the most slices is taken (a localiser or a derived
    series is usually smaller), and the choice is logged.

    Raises:
        MedwssError: no series, or ``series_uid`` is not in the folder.
    """
    import SimpleITK as sitk

    ids = dicom_series_ids(folder)
    if not ids:
        raise MedwssError(folder, "no DICOM series found in this folder")
    if series_uid is not None:
        if series_uid not in ids:
            raise MedwssError(folder, f"no DICOM series with UID {series_uid} (found {', '.join(ids)})")
        ids = [series_uid]
    files = {uid: sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid) for uid in ids}
    chosen = max(ids, key=lambda uid: len(files[uid]))
    if len(ids) > 1:
        logger.warning("%s holds %d DICOM series; reading %s (%d slices)", folder, len(ids), chosen, len(files[chosen]))
    return list(files[chosen])


def check_dicom_series(folder: Path, files: list[str], rtol: float = 0.1) -> None:
    """Refuse a series that ITK would read into a wrong grid: an unreadable slice, missing or uneven slices.

    ITK warns (on stderr) and goes on with an averaged spacing, so a scan with a gap comes back squeezed and its mask
    lies off the anatomy. Slice positions are projected on the slice normal (from ImagePositionPatient and
    ImageOrientationPatient), as GDCM sorts them; gaps may differ by ``rtol`` of the median gap.

    Raises:
        MedwssError: naming the series folder and the slice file at fault.
    """
    import numpy as np
    import pydicom
    from pydicom.errors import InvalidDicomError

    listed = {Path(f).resolve() for f in files}
    for other in sorted(folder.iterdir()):
        # GDCM leaves out a file it cannot parse, so a corrupt slice would only show up as a gap: name it instead.
        if other.is_file() and other.suffix.lower() in (".dcm", ".ima", "") and other.resolve() not in listed:
            try:
                ds = pydicom.dcmread(other)
                if "PixelData" in ds:
                    _check_pixel_data(ds)
            except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError, TypeError, EOFError) as err:
                problem = " ".join(str(err).split())[:120] or type(err).__name__
                raise MedwssError(folder, f"slice {other.name} cannot be read ({problem})") from None
    positions = []
    for name in files:
        try:
            ds = pydicom.dcmread(name, force=False)
            _check_pixel_data(ds)
            orientation = np.asarray([float(v) for v in ds.ImageOrientationPatient])
            position = np.asarray([float(v) for v in ds.ImagePositionPatient])
        except (InvalidDicomError, OSError, ValueError, AttributeError, KeyError, TypeError, EOFError) as err:
            problem = " ".join(str(err).split())[:120] or type(err).__name__
            raise MedwssError(folder, f"slice {Path(name).name} cannot be read ({problem})") from None
        positions.append((float(np.cross(orientation[:3], orientation[3:]) @ position), name))
    if len(positions) < 3:
        return
    positions.sort()
    z = np.asarray([p for p, _ in positions])
    gaps = np.diff(z)
    if np.any(gaps < 1e-6):
        k = int(np.argmax(gaps < 1e-6))
        raise MedwssError(folder, f"slices {Path(positions[k][1]).name} and {Path(positions[k + 1][1]).name} "
                                  f"share one position ({z[k]:g} mm)")  # fmt: skip
    median = float(np.median(gaps))
    off = np.abs(gaps - median) > rtol * median
    if np.any(off):
        k = int(np.argmax(off))
        kind = f"a missing slice after {Path(positions[k][1]).name}" if gaps[k] > 1.5 * median else "uneven spacing"
        raise MedwssError(
            folder,
            f"{kind}: gap {gaps[k]:.3g} mm between {Path(positions[k][1]).name} and "
            f"{Path(positions[k + 1][1]).name}, where the series' slices are {median:.3g} mm apart",
        )


def _check_pixel_data(ds) -> None:
    """Uncompressed pixel data as long as the header says (a truncated copy reads as zeros or fails later)."""
    if "PixelData" not in ds:
        raise ValueError("no pixel data")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if syntax is not None and syntax.is_compressed:
        return
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    expected = int(ds.Rows) * int(ds.Columns) * int(ds.SamplesPerPixel) * frames * int(ds.BitsAllocated) // 8
    if len(ds.PixelData) < expected:
        raise ValueError(f"pixel data truncated: {len(ds.PixelData)} bytes where {expected} are needed")
