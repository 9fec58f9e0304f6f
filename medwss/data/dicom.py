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
