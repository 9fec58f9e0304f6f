"""Read scans, validate them, and write masks with exactly the input's geometry.

Every format goes through SimpleITK (NIfTI, MetaImage, NRRD, DICOM series), wrapped as a MONAI ``ImageReader`` so
that ``LoadImage(d)`` pipelines and ``load_volume`` share one code path. Volumes come back as ``MetaTensor``s
laid out (x, y, z) with a RAS affine, as MONAI's own ITK reader does. Masks are written next to nothing: through a
temporary file and a rename, NIfTI references keep their header byte for byte (nnU-Net ``SimpleITKIO.write_seg``
does the same by copying the geometry).
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import MedwssError

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".ima", "")


def volume_suffix(path: str | Path) -> str:
    """The known suffix of ``path`` ('.nii.gz' counts as one), or '' when it has none we read."""
    name = Path(path).name.lower()
    for suffix in VOLUME_SUFFIXES:
        if name.endswith(suffix):
            return suffix
    return ""


def strip_suffix(path: str | Path) -> str:
    """File name without its volume suffix: the case id that pairs images, labels and predictions."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def is_volume_path(path: str | Path) -> bool:
    """True for a file with a volume suffix or a folder holding a DICOM series."""
    p = Path(path)
    if p.is_dir():
        return bool(dicom_series_ids(p))
    return bool(volume_suffix(p))


@dataclass(frozen=True)
class Geometry:
    """Voxel grid of a volume in ITK (LPS) terms, as SimpleITK reports it; compared with a tolerance."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: Any) -> Geometry:
        return cls(
            tuple(int(s) for s in image.GetSize()),
            tuple(float(s) for s in image.GetSpacing()),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )

    def to_meta(self) -> dict[str, list]:
        """Plain lists, so MONAI's meta handling (collation, endianness checks) can carry it."""
        return {k: list(getattr(self, k)) for k in ("size", "spacing", "origin", "direction")}

    @classmethod
    def from_meta(cls, meta: Any) -> Geometry:
        """Inverse of ``to_meta``; accepts a Geometry unchanged."""
        if isinstance(meta, Geometry):
            return meta
        return cls(*(tuple(meta[k]) for k in ("size", "spacing", "origin", "direction")))

    def mismatch(self, other: Geometry, atol: float = 1e-4) -> str | None:
        """The first difference to ``other`` in words, or None when the grids agree."""
        if self.size != other.size:
            return f"size {other.size} differs from {self.size}"
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, atol=atol, rtol=1e-5):
                return f"{name} {tuple(np.round(b, 4))} differs from {tuple(np.round(a, 4))}"
        return None

    def lps_affine(self) -> np.ndarray:
        """4 x 4 index-to-world matrix in LPS (ITK's world)."""
        dim = len(self.size)
        affine = np.eye(dim + 1)
        affine[:dim, :dim] = np.asarray(self.direction).reshape(dim, dim) @ np.diag(self.spacing)
        affine[:dim, dim] = self.origin
        return affine

    def ras_affine(self) -> np.ndarray:
        """4 x 4 index-to-world matrix in RAS (MONAI's and NIfTI's world)."""
        flip = np.diag([-1.0, -1.0] + [1.0] * (len(self.size) - 1))
        return flip @ self.lps_affine()


# ---------------------------------------------------------------------------------------------------------------
# DICOM series
# ---------------------------------------------------------------------------------------------------------------


def dicom_series_ids(folder: Path) -> list[str]:
    """Series instance UIDs found directly in ``folder`` (GDCM scans the files, not their names)."""
    import SimpleITK as sitk

    return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])


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


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------


def read_sitk(path: str | Path, series_uid: str | None = None) -> Any:
    """Read a volume file or DICOM series folder as a SimpleITK image.

    Raises:
        MedwssError: missing, unreadable, or not an image.
    """
    import SimpleITK as sitk

    p = Path(path)
    if not p.exists():
        raise MedwssError(p, "file not found")
    if p.is_dir():
        files = dicom_series_files(p, series_uid)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        reader.LoadPrivateTagsOff()
        try:
            image = reader.Execute()
        except RuntimeError as err:
            raise MedwssError(p, f"cannot read DICOM series: {_first_line(err)}") from None
        modality = reader.GetMetaData(0, "0008|0060").strip() if reader.HasMetaDataKey(0, "0008|0060") else ""
        if modality:
            image.SetMetaData("0008|0060", modality)
        return image
    if not volume_suffix(p) and p.suffix.lower() not in (".dcm", ".ima"):
        raise MedwssError(p, f"not a volume file (expected one of {', '.join(VOLUME_SUFFIXES)} or a DICOM folder)")
    try:
        return sitk.ReadImage(str(p))
    except RuntimeError as err:
        raise MedwssError(p, f"unreadable or not an image: {_first_line(err)}") from None


def _first_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    # ITK messages start with a file:line location; the last line usually says what went wrong.
    return (lines[-1] if lines else type(err).__name__)[:200]


def sitk_to_array(image: Any) -> np.ndarray:
    """Voxel array laid out (x, y, z), the index order of the affine (SimpleITK gives (z, y, x))."""
    import SimpleITK as sitk

    array = sitk.GetArrayFromImage(image)
    return np.ascontiguousarray(np.transpose(array, tuple(range(array.ndim - 1, -1, -1))))


def validate_array(array: np.ndarray, path: str | Path, *, ndim: int = 3, allow_constant: bool = False) -> None:
    """Reject what no later stage can use.

    Raises:
        MedwssError: wrong dimensionality, empty, NaN/Inf voxels, or constant (when not allowed).
    """
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != ndim:
        raise MedwssError(path, f"{array.ndim}D image where a {ndim}D volume is expected (shape {array.shape})")
    if array.size == 0 or 0 in array.shape:
        raise MedwssError(path, f"empty image (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise MedwssError(path, f"{bad} NaN/Inf voxels")
    if not allow_constant and array.min() == array.max():
        raise MedwssError(path, f"constant image (every voxel is {array.flat[0]})")


def load_volume(
    path: str | Path, *, series_uid: str | None = None, allow_constant: bool = False, dtype: Any = np.float32
):
    """Load and validate a 3D scan as a ``MetaTensor`` (x, y, z) with its RAS affine.

    The meta dict carries ``affine``/``original_affine`` (RAS), ``space`` 'RAS', ``spatial_shape``,
    ``filename_or_obj`` and ``geometry`` (the ITK grid, used to write masks back exactly), and ``modality`` when
    the file says it (DICOM).

    Raises:
        MedwssError: any problem ``read_sitk`` or ``validate_array`` reports.
    """
@@LOADVOL@@    validate_array(array, path, allow_constant=allow_constant)
    return to_metatensor(array.astype(dtype, copy=False), Geometry.of(image), path, modality_of(image))


def load_mask(path: str | Path, reference=None):
    """Load a label map (integers, may be all zero) and check it lies on ``reference``'s grid if given.

    Raises:
        MedwssError: unreadable, not 3D, non-integer values, or a grid that differs from the reference.
    """
    image = read_sitk(path)
    array = sitk_to_array(image)
    validate_array(array, path, allow_constant=True)
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise MedwssError(path, "label map holds non-integer values")
        array = array.astype(np.int32)
    geometry = Geometry.of(image)
    if reference is not None:
        ref_geometry = reference if isinstance(reference, Geometry) else Geometry.from_meta(reference.meta["geometry"])
        problem = ref_geometry.mismatch(geometry)
        if problem:
            raise MedwssError(path, f"label does not match its image: {problem}")
    return to_metatensor(array, geometry, path, "")


def modality_of(image: Any) -> str:
    return image.GetMetaData("0008|0060").strip() if image.HasMetaDataKey("0008|0060") else ""


def to_metatensor(array: np.ndarray, geometry: Geometry, path: str | Path, modality: str = ""):
    """Wrap an (x, y, z) array in a MetaTensor whose meta says where it came from and where it lies."""
    import torch
    from monai.data import MetaTensor

    affine = torch.as_tensor(geometry.ras_affine(), dtype=torch.float64)
    meta = {
        "original_affine": affine.clone(),
        "space": "RAS",
        "spatial_shape": np.asarray(array.shape),
        "original_channel_dim": float("nan"),
        "filename_or_obj": str(path),
        "geometry": geometry.to_meta(),
        "modality": modality,
    }
    return MetaTensor(torch.as_tensor(array), affine=affine, meta=meta)


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------


def reference_geometry(reference: Any) -> tuple[Geometry, Path | None]:
    """The grid to write on and, when known, the file it came from (a path, a MetaTensor, or a Geometry)."""
    if isinstance(reference, Geometry):
        return reference, None
    if isinstance(reference, str | Path):
        return Geometry.of(read_sitk(reference)), Path(reference)
    meta = getattr(reference, "meta", {})
    if "geometry" not in meta:
        raise ValueError("reference has no 'geometry' in its meta; load it with medwss.data.io")
    source = meta.get("filename_or_obj")
    return Geometry.from_meta(meta["geometry"]), Path(source) if source else None


def write_mask(mask: Any, reference: Any, out_path: str | Path, dtype: Any = np.uint8) -> Path:
    """Write an (x, y, z) mask as NIfTI on exactly the reference's grid, atomically.

    A NIfTI reference lends its header (sform, qform, units) unchanged, so the output's geometry is the input's byte
    for byte; any other reference (MetaImage, NRRD, DICOM) lends its ITK origin, spacing and direction.

    Raises:
        MedwssError: the output would overwrite an input, has a non-NIfTI suffix, or the mask's shape differs.
    """
    out = Path(out_path)
    geometry, source = reference_geometry(reference)
    if source is not None and out.resolve() == source.resolve():
        raise MedwssError(out, "refusing to overwrite an input scan")
    if volume_suffix(out) not in NIFTI_SUFFIXES:
        raise MedwssError(out, "masks are written as NIfTI: use a .nii.gz or .nii file name")
    array = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if array.ndim == len(geometry.size) + 1 and array.shape[0] == 1:
        array = array[0]
    if tuple(array.shape) != geometry.size:
        raise MedwssError(out, f"mask shape {tuple(array.shape)} differs from the scan's {geometry.size}")
    array = array.astype(dtype)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial{volume_suffix(out)}")
    try:
        if source is not None and volume_suffix(source) in NIFTI_SUFFIXES:
            _write_nifti_like(array, source, tmp)
        else:
            _write_sitk(array, geometry, tmp)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _write_nifti_like(array: np.ndarray, source: Path, tmp: Path) -> None:
    import nibabel as nib

    ref = nib.load(str(source))
    header = ref.header.copy()
    header.set_data_dtype(array.dtype)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 0
    # affine=None: nibabel keeps the header's sform and qform (and their codes) exactly as the reference has them.
    image = type(ref)(array, None, header=header)
    nib.save(image, str(tmp))


def _write_sitk(array: np.ndarray, geometry: Geometry, tmp: Path) -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.transpose(array, tuple(range(array.ndim - 1, -1, -1))))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(tmp), useCompression=True)
