"""Read scans, validate them, and write masks with exactly the input's geometry.

Every format goes through SimpleITK (NIfTI, MetaImage, NRRD, DICOM series), wrapped as a MONAI ``ImageReader`` so
that ``LoadImage(d)`` pipelines and ``load_volume`` share one code path. Volumes come back as ``MetaTensor``s
laid out (x, y, z) with a RAS affine, as MONAI's own ITK reader does. Masks are written next to nothing: through a
temporary file and a rename, NIfTI references keep their header byte for byte (nnU-Net ``SimpleITKIO.write_seg``
does the same by copying the geometry).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.dicom import dicom_series_files, dicom_series_ids
from medwss.errors import MedwssError
from medwss.runtime.atomic import atomic_output

logger = logging.getLogger(__name__)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
NIFTI_SUFFIXES = (".nii.gz", ".nii")
DICOM_SUFFIXES = (".dcm", ".ima", "")


def plain(values: Any, digits: int = 4) -> str:
    """Numbers for a message: '(0.9, 0.8, 3)', never numpy's 'np.float64(0.9)' reprs."""
    flat = [float(v) for v in np.asarray(values, dtype=float).reshape(-1)]
    return "(" + ", ".join(f"{round(v, digits):g}" for v in flat) + ")"


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
        """Inverse of ``to_meta``; accepts a Geometry unchanged.

        Values are cast back to int/float: after MONAI's collation they may be 0-d tensors, which SimpleITK's
        setters refuse.
        """
        if isinstance(meta, Geometry):
            return meta
        return cls(
            tuple(int(v) for v in meta["size"]),
            *(tuple(float(v) for v in meta[k]) for k in ("spacing", "origin", "direction")),
        )

    def mismatch(self, other: Geometry, atol: float = 1e-4) -> str | None:
        """The first difference to ``other`` in words, or None when the grids agree."""
        if self.size != other.size:
            return f"size {other.size} differs from {self.size}"
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, atol=atol, rtol=1e-5):
                return f"{name} {plain(b)} differs from {plain(a)}"
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
# Reading
# ---------------------------------------------------------------------------------------------------------------


def read_sitk(path: str | Path, series_uid: str | None = None) -> Any:
    """Read a volume file or DICOM series folder as a SimpleITK image.

    Before ITK reads a file, its size is checked against its header (``check_data_size``): ITK zero-fills a short
    NIfTI and would hand back a scan with black slices. C-library diagnostics are kept off the terminal
    (``medwss.runtime.quiet``) and the last of them goes into the one-line error.

    Raises:
        MedwssError: missing, truncated, unreadable, complex-valued, or not an image.
    """
    import SimpleITK as sitk

    from medwss.runtime.quiet import is_verbose, native_stderr

    p = Path(path)
    if not p.exists():
        raise MedwssError(p, "file not found")
    sitk.ProcessObject.SetGlobalWarningDisplay(is_verbose())
    if p.is_dir():
        from medwss.data.dicom import check_dicom_series

        files = dicom_series_files(p, series_uid)
        check_dicom_series(p, files)
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        reader.LoadPrivateTagsOff()
        with native_stderr() as said:
            try:
                image = reader.Execute()
            except RuntimeError as err:
                raise MedwssError(p, f"cannot read DICOM series: {_first_line(err, said.last_line())}") from None
        modality = reader.GetMetaData(0, "0008|0060").strip() if reader.HasMetaDataKey(0, "0008|0060") else ""
        if modality:
            image.SetMetaData("0008|0060", modality)
        return _refuse_complex(image, p)
    if not p.is_file():
        raise MedwssError(p, "not a regular file")
    if not volume_suffix(p) and p.suffix.lower() not in (".dcm", ".ima"):
        raise MedwssError(p, f"not a volume file (expected one of {', '.join(VOLUME_SUFFIXES)} or a DICOM folder)")
    check_data_size(p)
    with native_stderr() as said:
        try:
            image = _drop_single_time_point(sitk.ReadImage(str(p)))
        except RuntimeError as err:
            problem = _first_line(err, said.last_line())
            raise MedwssError(p, f"unreadable, truncated or not an image: {problem}") from None
    image = _refuse_complex(image, p)
    if volume_suffix(p) in NIFTI_SUFFIXES and image.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        _check_nifti_finite(p)
    return image


def _refuse_complex(image: Any, path: Path) -> Any:
    """Complex voxels (raw k-space, phase data) have no one intensity; casting them to real would drop half."""
    if "complex" in image.GetPixelIDTypeAsString().lower():
        raise MedwssError(path, f"complex-valued voxels ({image.GetPixelIDTypeAsString()}); expected a real scan")
    return image


def check_data_size(path: Path) -> None:
    """Refuse a NIfTI whose voxel data is shorter than its header says (a truncated download or copy).

    ITK reads a short ``.nii`` or a truncated ``.nii.gz`` without a word and fills the rest with zeros; nibabel reads
    the header alone, so the expected byte count costs nothing; a ``.nii.gz`` is decompressed once, in chunks.
    MetaImage and NRRD readers report short data themselves.

    Raises:
        MedwssError: short data, a broken gzip stream, or an unreadable header.
    """
    if volume_suffix(path) not in NIFTI_SUFFIXES:
        return
    import gzip
    import zlib

    import nibabel as nib

    try:
        header = nib.load(str(path)).header
        shape = header.get_data_shape()
        voxels = int(np.prod(shape, dtype=np.int64))
        expected = int(header.get_data_offset()) + voxels * header.get_data_dtype().itemsize
    except (nib.filebasedimages.ImageFileError, OSError, ValueError, EOFError, zlib.error, TypeError) as err:
        raise MedwssError(path, f"unreadable or not an image: {_plain(err, path)}") from None
    try:
        if volume_suffix(path) == ".nii":
            actual = path.stat().st_size
        else:
            actual = 0
            with gzip.open(path, "rb") as f:
                while chunk := f.read(1 << 22):
                    actual += len(chunk)
    except (OSError, EOFError, zlib.error) as err:
        raise MedwssError(path, f"truncated or corrupt gzip data: {_plain(err, path)}") from None
    if actual < expected:
        raise MedwssError(path, f"truncated: {actual} bytes where the header needs {expected}")


def _plain(err: BaseException, path: Path | None = None) -> str:
    """An exception as one short line, without the file name the error line already starts with."""
    text = str(err)
    if path is not None:
        text = text.replace(f"File {path} ", "").replace(str(path), "the file")
    return (" ".join(text.split()) or type(err).__name__)[:200]


def _check_nifti_finite(path: Path) -> None:
    """ITK 5's NIfTI reader silently turns NaN and Inf voxels into 0 (fixed in ITK 6, ITK pull request #6683), so
    ``validate_array`` never sees them; nibabel reads the stored values as they are.

    Raises:
        MedwssError: NaN/Inf voxels, or data nibabel cannot read.
    """
    import zlib

    import nibabel as nib

    try:
        image = nib.load(str(path))
        if image.get_data_dtype().kind not in "fc":
            return  # integers on disk (with or without a float scale) cannot hold NaN
        bad = int((~np.isfinite(np.asanyarray(image.dataobj))).sum())
    except (nib.filebasedimages.ImageFileError, OSError, ValueError, EOFError, zlib.error) as err:
        raise MedwssError(path, f"unreadable voxel data: {_plain(err, path)}") from None
    if bad:
        raise MedwssError(path, f"{bad} NaN/Inf voxels")


def _drop_single_time_point(image: Any) -> Any:
    """A 4D image with one time point is a 3D volume.

    ITK's NIfTI reader drops that axis itself; its MetaImage and NRRD readers do not, and a 4D grid would give a
    5 x 5 affine and masks that cannot be written back. The 3 x 3 spatial block of the direction is kept as is.
    """
    import SimpleITK as sitk

    if image.GetDimension() != 4 or image.GetSize()[3] != 1:
        return image
    extract = sitk.ExtractImageFilter()
    extract.SetSize([*image.GetSize()[:3], 0])
    extract.SetIndex([0, 0, 0, 0])
    extract.SetDirectionCollapseToStrategy(sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    return extract.Execute(image)


def _first_line(err: Exception, native: str = "") -> str:
    """The line of an ITK error that says what went wrong (they start with a file:line location), one line."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    # "Reason: No such file or directory" is ITK's errno left over from an unrelated call: not the cause.
    lines = [ln for ln in lines if not ln.startswith("Reason:")]
    text = native or (lines[-1] if lines else type(err).__name__)
    return " ".join(text.split())[:200]


def scalar_array(image: Any, path: str | Path, dtype: Any = None) -> np.ndarray:
    """The (x, y, z) voxel array of a one-component image (converted to ``dtype`` in the same copy, if given).

    Raises:
        MedwssError: a vector or RGB image (several components per voxel).
    """
    components = image.GetNumberOfComponentsPerPixel()
    if components != 1:
        raise MedwssError(path, f"{components} components per voxel; expected a scalar image")
    return sitk_to_array(image, dtype)


def sitk_to_array(image: Any, dtype: Any = None) -> np.ndarray:
    """Voxel array laid out (x, y, z), the index order of the affine (SimpleITK gives (z, y, x)).

    With ``dtype`` the voxels are converted while copying out of the ITK buffer: one copy of the volume instead of
    three (ITK's array, the reordered one, the converted one), which on a 600-slice CT is 1.2 GB less at the peak.
    """
    import SimpleITK as sitk

    view = sitk.GetArrayViewFromImage(image)  # no copy: valid while ``image`` lives
    reordered = np.transpose(view, tuple(range(view.ndim - 1, -1, -1)))
    return np.array(reordered, dtype=dtype or view.dtype, order="C", copy=True)


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
    if array.size == 1:
        raise MedwssError(path, "a single voxel, not a volume")
    if np.iscomplexobj(array):
        raise MedwssError(path, "complex-valued voxels; expected a real scan")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise MedwssError(path, f"{bad} NaN/Inf voxels")
    if not allow_constant and array.min() == array.max():
        raise MedwssError(path, f"constant image (every voxel is {array.flat[0].item():g})")


def read_volume_array(
    path: str | Path, *, series_uid: str | None = None, allow_constant: bool = False
) -> tuple[np.ndarray, Geometry, str]:
    """Read and validate a 3D scan as a plain (x, y, z) array, its grid and modality; MONAI is not imported.

    Raises:
        MedwssError: any problem ``read_sitk`` or ``validate_array`` reports.
    """
    image = read_sitk(path, series_uid)
    array = scalar_array(image, path)
    validate_array(array, path, allow_constant=allow_constant)
    return array, Geometry.of(image), modality_of(image)


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
    array, geometry, modality = read_volume_array(path, series_uid=series_uid, allow_constant=allow_constant)
    return to_metatensor(array.astype(dtype, copy=False), geometry, path, modality)


def ct_range_problem(lo: float, hi: float, min_range: float = 50.0) -> str | None:
    """Why values ``lo..hi`` cannot be CT Hounsfield units, or None.

    A CT of a body spans at least fat or air to soft tissue, hundreds of HU, so a range under ``min_range`` HU or all
    values in [0, 1] (an already normalised export) is not HU, nor is anything beyond any scanner's range. A scan
    with no value below 0 is allowed (a tightly cropped scan may hold no air); callers may warn about it.
    """
    if hi - lo < min_range or (lo >= 0.0 and hi <= 1.0):
        return f"values {lo:g}..{hi:g} do not look like CT Hounsfield units"
    if lo < -4000 or hi > 40000:
        return f"values {lo:g}..{hi:g} are outside any CT Hounsfield range"
    return None


def read_mask_array(path: str | Path, reference: Any = None) -> tuple[np.ndarray, Geometry]:
    """Read a label map (integers, may be all zero) as a plain (x, y, z) array and its grid; MONAI is not imported.

    Args:
        reference: the image's grid: a volume loaded by this module, a ``Geometry``, or the image's path.

    Raises:
        MedwssError: unreadable, not 3D, non-integer values, or a grid that differs from the reference.
    """
    image = read_sitk(path)
    array = scalar_array(image, path)
    validate_array(array, path, allow_constant=True)
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise MedwssError(path, "label map holds non-integer values")
        array = array.astype(np.int32)
    elif array.dtype in (np.uint16, np.uint32, np.uint64):
        # torch cannot compare or reduce these ("gt_cpu" not implemented for 'UInt16'), so `mask > 0` would fail.
        array = array.astype(np.int32 if array.dtype == np.uint16 else np.int64)
    geometry = Geometry.of(image)
    if reference is not None:
        problem = reference_geometry(reference)[0].mismatch(geometry)
        if problem:
            raise MedwssError(path, f"label does not match its image: {problem}")
    return array, geometry


def load_mask(path: str | Path, reference: Any = None):
    """``read_mask_array`` as a ``MetaTensor`` with its RAS affine.

    Raises:
        MedwssError: as ``read_mask_array``.
    """
    array, geometry = read_mask_array(path, reference)
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
        return header_geometry(reference), Path(reference)
    meta = getattr(reference, "meta", {})
    if "geometry" not in meta:
        raise ValueError("reference has no 'geometry' in its meta; load it with medwss.data.io")
    source = meta.get("filename_or_obj")
    return Geometry.from_meta(meta["geometry"]), Path(source) if source else None


def header_geometry(path: str | Path) -> Geometry:
    """The grid of a volume file from its header alone (no voxels read: a 600-slice CT costs no memory here); a
    DICOM folder or a 4D file with one time point is read whole, as ``read_sitk`` does.

    Raises:
        MedwssError: as ``read_sitk``.
    """
    import SimpleITK as sitk

    from medwss.runtime.quiet import native_stderr

    p = Path(path)
    if p.is_file() and volume_suffix(p):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        with native_stderr() as said:
            try:
                reader.ReadImageInformation()
            except RuntimeError as err:
                raise MedwssError(p, f"unreadable or not an image: {_first_line(err, said.last_line())}") from None
        if reader.GetDimension() == 3:
            return Geometry(
                tuple(int(v) for v in reader.GetSize()),
                tuple(float(v) for v in reader.GetSpacing()),
                tuple(float(v) for v in reader.GetOrigin()),
                tuple(float(v) for v in reader.GetDirection()),
            )
    return Geometry.of(read_sitk(p))


def write_mask(mask: Any, reference: Any, out_path: str | Path, dtype: Any = np.uint8) -> Path:
    """Write an (x, y, z) mask as NIfTI on exactly the reference's grid, atomically.

    A NIfTI reference lends its header (sform, qform, units) unchanged, so the output's geometry is the input's byte
    for byte; any other reference (MetaImage, NRRD, DICOM) lends its ITK origin, spacing and direction.

    Raises:
        MedwssError: the output would overwrite an input, has a non-NIfTI suffix, is a folder, or the mask's shape
            differs.
        ValueError: mask values that ``dtype`` cannot hold.
    """
    out = Path(out_path)
    geometry, source = reference_geometry(reference)
    if source is not None and out.resolve() == source.resolve():
        raise MedwssError(out, "refusing to overwrite an input scan")
    if volume_suffix(out) not in NIFTI_SUFFIXES:
        raise MedwssError(out, "masks are written as NIfTI: use a .nii.gz or .nii file name")
    if out.is_dir():
        raise MedwssError(out, "is a folder; give a file name for the mask")
    array = np.asarray(mask.detach().cpu() if hasattr(mask, "detach") else mask)
    if array.ndim == len(geometry.size) + 1 and array.shape[0] == 1:
        array = array[0]
    if tuple(array.shape) != geometry.size:
        raise MedwssError(out, f"mask shape {tuple(array.shape)} differs from the scan's {geometry.size}")
    if np.issubdtype(dtype, np.integer) and array.size:
        # A silent wrap-around (label 256 written as 0 in uint8) would corrupt the mask without a trace.
        info, low, high = np.iinfo(dtype), array.min(), array.max()
        if low < info.min or high > info.max:
            raise ValueError(f"mask values {low}..{high} do not fit {np.dtype(dtype).name}; pass a wider dtype")
    array = array.astype(dtype)
    tag = source_tag(source) if source is not None else ""
    with atomic_output(out) as tmp:
        if source is not None and volume_suffix(source) in NIFTI_SUFFIXES:
            _write_nifti_like(array, source, tmp, tag)
        else:
            _write_sitk(array, geometry, tmp, tag)
    return out


SOURCE_TAG = "medwss mask of "


def source_tag(scan: str | Path) -> str:
    """What a mask's NIfTI ``descrip`` says about its scan: a short hash of the scan's absolute path.

    Two scans that share a file name (``p1/t2.nii.gz``, ``p2/t2.nii.gz``) give masks with the same name; the tag
    lets ``medwss segment`` refuse to replace one scan's mask with another's (see ``mask_source``).
    """
    import hashlib

    try:
        where = str(Path(scan).resolve())
    except (OSError, RuntimeError):
        where = str(Path(scan).absolute())
    return SOURCE_TAG + hashlib.sha256(where.encode()).hexdigest()[:16]


def mask_source(path: str | Path) -> str | None:
    """The source tag of an existing medwss mask at ``path``; None when it is no such mask (or unreadable)."""
    import nibabel as nib

    try:
        descrip = bytes(nib.load(str(path)).header["descrip"]).split(b"\0")[0].decode("ascii", "replace")
    except Exception:  # noqa: BLE001 - anything that is not a readable NIfTI header carries no tag
        return None
    return descrip if descrip.startswith(SOURCE_TAG) else None


def _write_nifti_like(array: np.ndarray, source: Path, tmp: Path, tag: str = "") -> None:
    import nibabel as nib

    ref = nib.load(str(source))
    header = ref.header.copy()
    header["descrip"] = tag.encode()[:79]
    header.set_data_dtype(array.dtype)
    header.set_slope_inter(1.0, 0.0)
    header["cal_min"], header["cal_max"] = 0, 0
    # affine=None: nibabel keeps the header's sform and qform (and their codes) exactly as the reference has them.
    image = type(ref)(array, None, header=header)
    nib.save(image, str(tmp))
    raw = _raw_header(source)
    if raw is not None and np.any(np.asarray(raw["pixdim"][1:4]) < 0):
        _restore_geometry_fields(raw, tmp)


# The header fields ITK builds the grid from; nibabel rewrites a negative pixdim as its absolute value on saving,
# and ITK reads a negative pixdim as a flipped axis, so a copied header would give the mask another direction.
_GEOMETRY_FIELDS = ("pixdim", "qform_code", "sform_code", "quatern_b", "quatern_c", "quatern_d",
                    "qoffset_x", "qoffset_y", "qoffset_z", "srow_x", "srow_y", "srow_z")  # fmt: skip


def _raw_header(source: Path) -> Any:
    """The NIfTI-1 header of ``source`` as stored (nibabel's loader repairs a negative pixdim), or None."""
    import gzip

    import nibabel as nib

    opener = gzip.open if source.name.endswith(".gz") else open
    with opener(source, "rb") as f:
        block = f.read(348)
    for order in "<>":
        dtype = nib.nifti1.header_dtype.newbyteorder(order)
        if len(block) == 348 and int(np.frombuffer(block[:4], dtype=f"{order}i4")[0]) == 348:
            return np.frombuffer(block, dtype=dtype)[0]
    return None  # NIfTI-2 or not a header: nibabel's copy is all there is


def _restore_geometry_fields(raw_header: Any, written: Path) -> None:
    """Copy the reference's geometry fields byte for byte into the NIfTI header just written at ``written``."""
    import gzip

    ref_block = raw_header.tobytes()
    fields = raw_header.dtype.fields
    opener = gzip.open if written.name.endswith(".gz") else open
    with opener(written, "rb") as f:
        data = bytearray(f.read())
    if data[:4] != ref_block[:4]:  # another byte order than the reference's: nothing to copy field by field
        return
    for name in _GEOMETRY_FIELDS:
        dtype, offset = fields[name][:2]
        data[offset : offset + dtype.itemsize] = ref_block[offset : offset + dtype.itemsize]
    with opener(written, "wb") as f:
        f.write(bytes(data))


def _write_sitk(array: np.ndarray, geometry: Geometry, tmp: Path, tag: str = "") -> None:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.transpose(array, tuple(range(array.ndim - 1, -1, -1))))
    if tag:
        image.SetMetaData("ITK_FileNotes", tag)  # ITK's NIfTI writer puts it in descrip
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    sitk.WriteImage(image, str(tmp), useCompression=True)
