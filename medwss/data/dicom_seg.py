"""DICOM Segmentation objects (SEG) from a mask on a DICOM series' grid, with ``highdicom``.

A SEG references its source series (study, series and instance UIDs, frame of reference), holds one frame per
source slice at the slice's own position and orientation, and names its segment (the bundle's label, a SNOMED CT
property type where one fits) and the algorithm that made it (``medwss`` and the bundle). PACS viewers, 3D Slicer and
OHIF open it next to the series.

``highdicom`` needs pydicom 3, which MONAI Label 0.8.5 cannot import: it is the optional extra ``dicom-seg``
(``pip install 'medwss[dicom-seg]'``), checked by ``require_highdicom`` before any work starts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medwss.errors import MedwssError
from medwss.runtime.atomic import atomic_output

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'medwss[dicom-seg]' (highdicom, pydicom>=3)"
"""What to run when ``highdicom`` is missing."""

SEG_SUFFIX = ".seg.dcm"
"""File name ending of the SEG objects ``medwss segment`` writes."""

FORMATS = ("nifti", "dicom-seg", "both")
"""``medwss segment --format`` values."""


def require_highdicom(what: str | Path = "--format dicom-seg") -> None:
    """Check that ``highdicom`` (and pydicom 3) import, before any work starts.

    Raises:
        MedwssError: highdicom missing or unusable, with the pip command that installs it.
    """
    try:
        import highdicom  # noqa: F401
        import pydicom
    except ImportError as err:
        raise MedwssError(what, f"DICOM SEG output needs highdicom ({err}): {INSTALL_HINT}") from None
    if int(pydicom.__version__.split(".")[0]) < 3:
        raise MedwssError(what, f"DICOM SEG output needs pydicom 3 (found {pydicom.__version__}): {INSTALL_HINT}")


@dataclass(frozen=True)
class SegmentInfo:
    """What the SEG says about its one segment and the algorithm behind it."""

    label: str
    """Segment label, e.g. the bundle's ``channel_def`` name of class 1 (``prostate``)."""
    algorithm_name: str
    """Algorithm identification name, e.g. ``medwss prostate rlsp``."""
    algorithm_version: str
    """Algorithm identification version, e.g. ``medwss 0.1.0, bundle 0.1.0``."""


def segment_info(bundle: Path, method: str) -> SegmentInfo:
    """The SEG's segment label and algorithm identification from a bundle's ``configs/metadata.json``.

    The label is the name of output class 1 (``network_data_format.outputs.pred.channel_def``); a bundle without
    one is labelled by its folder name.
    """
    from medwss import __version__

    meta_file = bundle / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    channels = meta.get("network_data_format", {}).get("outputs", {}).get("pred", {}).get("channel_def", {})
    label = str(channels.get("1", bundle.name))
    version = meta.get("version", "unknown")
    return SegmentInfo(
        label=label,
        algorithm_name=f"medwss {bundle.name} {method}"[:64],
        algorithm_version=f"medwss {__version__}, bundle {version}"[:64],
    )


def _property_codes(label: str):
    """(category, type) codes for a label: SNOMED CT organ or neoplasm where the name fits, else tissue."""
    from pydicom.sr.codedict import codes

    name = label.strip().lower()
    if name in ("tumour", "tumor", "lesion", "neoplasm", "cancer"):
        return codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm
    organ = getattr(codes.SCT, name.capitalize(), None) if name.isalpha() else None
    if organ is not None:
        return codes.SCT.AnatomicalStructure, organ
    return codes.SCT.Tissue, codes.SCT.Tissue


def read_source_series(series: Path, files: Sequence[str] | None = None) -> list:
    """The series' slices as pydicom datasets (without pixel data), in slice order (as SimpleITK stacks them).

    Raises:
        MedwssError: a file pydicom cannot read, or slices without the geometry tags a SEG needs.
    """
    import pydicom

    from medwss.data.dicom import dicom_series_files

    datasets = []
    for file in files if files is not None else dicom_series_files(series):
        try:
            ds = pydicom.dcmread(file, stop_before_pixels=True)
        except (OSError, pydicom.errors.InvalidDicomError) as err:
            raise MedwssError(file, f"cannot read DICOM: {err}") from None
        for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "FrameOfReferenceUID"):
            if keyword not in ds:
                raise MedwssError(file, f"no {keyword}: cannot place a DICOM SEG frame on this slice")
        datasets.append(ds)
    return datasets


def write_dicom_seg(mask: np.ndarray, series: Path, out: Path, info: SegmentInfo) -> Path:
    """Write an (x, y, z) binary mask on the series' grid as a DICOM SEG referencing that series, atomically.

    Every source slice gets one frame (empty ones too), so frame k lies on slice k of the series.

    Raises:
        MedwssError: highdicom missing, unreadable series, a mask off the series' grid, or highdicom refusing the
            series (its message, in one line).
    """
    require_highdicom(out)
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medwss import __version__

    sources = read_source_series(series)
    mask = np.asarray(mask)
    rows, cols = int(sources[0].Rows), int(sources[0].Columns)
    if mask.shape != (cols, rows, len(sources)):
        raise MedwssError(out, f"mask shape {mask.shape} differs from the series' {(cols, rows, len(sources))}")
    frames = np.ascontiguousarray(np.transpose(mask > 0, (2, 1, 0))).astype(np.uint8)  # (slice, row, column)
    category, prop = _property_codes(info.label)
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label=info.label[:64],
        segmented_property_category=category,
        segmented_property_type=prop,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=info.algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=info.algorithm_version
        ),
    )
    try:
        seg = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=[description],
            series_instance_uid=hd.UID(),
            series_number=int(getattr(sources[0], "SeriesNumber", 0) or 0) + 1000,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="medwss",
            manufacturer_model_name=info.algorithm_name,
            software_versions=__version__,
            device_serial_number="none",
            series_description=f"{info.label} ({info.algorithm_name})"[:64],
            omit_empty_frames=False,
        )
    except (ValueError, AttributeError, TypeError, KeyError) as err:
        raise MedwssError(series, f"cannot make a DICOM SEG from this series: {str(err).splitlines()[0]}") from None
    with atomic_output(out) as tmp:
        seg.save_as(tmp)
    return out
