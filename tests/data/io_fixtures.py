"""Writers of tiny volumes in every format medwss reads, each with a known, deliberately awkward geometry.

The geometry is set here in LPS (ITK's world) from plain numbers, so the tests compare medwss's output against values
computed independently of ``medwss.data.io.Geometry``. Oblique directions, axis flips, anisotropic spacing and a
non-zero origin make any transposed axis, dropped sign or swapped spacing visible.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

#: Every way a volume can reach medwss; the names are parametrize ids.
FORMATS = ("nii", "nii.gz", "nii-qform", "mha", "mhd", "nrrd", "nhdr", "dicom")
NIFTI_FORMATS = ("nii", "nii.gz", "nii-qform")
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
CT_STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
CT_SERIES_UID = "1.2.826.0.1.3680043.8.498.1.1"
MR_SERIES_UID = "1.2.826.0.1.3680043.8.498.1.2"


def rotation(axis: int, degrees: float) -> np.ndarray:
    """3 x 3 rotation about x (0), y (1) or z (2)."""
    t = np.deg2rad(degrees)
    c, s = np.cos(t), np.sin(t)
    i, j = [k for k in range(3) if k != axis]
    m = np.eye(3)
    m[i, i], m[i, j], m[j, i], m[j, j] = c, -s, s, c
    return m


@dataclass(frozen=True)
class Volume:
    """An (x, y, z) voxel array and where it lies, in LPS: origin, spacing and direction (columns = index axes)."""

    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray

    def lps_affine(self) -> np.ndarray:
        affine = np.eye(4)
        affine[:3, :3] = self.direction @ np.diag(self.spacing)
        affine[:3, 3] = self.origin
        return affine

    def ras_affine(self) -> np.ndarray:
        return RAS_FROM_LPS @ self.lps_affine()

    def to_sitk(self) -> sitk.Image:
        image = sitk.GetImageFromArray(np.ascontiguousarray(self.array.transpose(2, 1, 0)))
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction.ravel().tolist())
        return image


def oblique_volume(
    shape: tuple[int, int, int] = (7, 6, 5), *, right_handed: bool = False, dtype: type = np.int16
) -> Volume:
    """A volume whose every voxel value is distinct, on an oblique, flipped, anisotropic grid.

    ``right_handed`` gives a direction with determinant +1 (two flipped axes), the only kind a DICOM series can hold
    (its slice axis is the cross product of the in-plane ones); otherwise one axis is flipped (determinant -1).
    """
    flips = np.diag([-1.0, -1.0, 1.0]) if right_handed else np.diag([-1.0, 1.0, 1.0])
    direction = rotation(0, 20.0) @ rotation(2, -15.0) @ flips
    array = (np.arange(int(np.prod(shape))).reshape(shape) * 7 - 300).astype(dtype)
    return Volume(array, (0.7, 0.9, 2.5), (-12.5, 30.25, 101.0), direction)


# ---------------------------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------------------------


def write_nifti(volume: Volume, path: Path, *, qform_only: bool = False) -> Path:
    """NIfTI through nibabel, the way scanners' converters write it: qform code 1 (scanner), sform code 2 (aligned).

    ``qform_only`` leaves the sform unset (code 0), as some data sets (PROMISE12) do.
    """
    image = nib.Nifti1Image(volume.array, volume.ras_affine())
    image.set_qform(volume.ras_affine(), code=1)
    image.set_sform(volume.ras_affine(), code=0 if qform_only else 2)
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, str(path))
    return path


def write_nifti_array(array: np.ndarray, path: Path, affine: np.ndarray | None = None) -> Path:
    """Any array (4D, NaN, constant, non-integer labels) as NIfTI, for the bad-input cases."""
    affine = oblique_volume().ras_affine() if affine is None else affine
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def write_sitk(volume: Volume, path: Path) -> Path:
    """MetaImage (.mha, .mhd + .raw), NRRD (.nrrd, .nhdr + .raw) or NIfTI through SimpleITK."""
    sitk.WriteImage(volume.to_sitk(), str(path))
    return path


def dicom_tags(volume: Volume, series_uid: str, modality: str) -> dict[str, str]:
    """Series-level tags; IOP holds the first two direction columns (DICOM row and column cosines)."""
    d = volume.direction
    tags = {
        "0008|0060": modality,
        "0020|000d": CT_STUDY_UID,
        "0020|000e": series_uid,
        "0020|0037": "\\".join(f"{v:.8f}" for v in (*d[:, 0], *d[:, 1])),
        # PixelSpacing is row spacing (between rows, along y) then column spacing (along x).
        "0028|0030": f"{volume.spacing[1]}\\{volume.spacing[0]}",
        "0018|0050": str(volume.spacing[2]),
    }
    if modality == "CT":
        tags.update({"0028|1053": "1", "0028|1052": "-1024"})
    return tags


def write_dicom_series(
    volume: Volume,
    folder: Path,
    *,
    series_uid: str = CT_SERIES_UID,
    modality: str = "CT",
    prefix: str = "im",
    seed: int = 0,
) -> list[Path]:
    """One file per slice, in a shuffled file order, so a reader that trusts file names stacks them wrongly.

    Follows SimpleITK's ``DicomSeriesFromArray`` example: slice geometry in ImagePositionPatient (0020|0032) and
    ImageOrientationPatient (0020|0037). For CT the stored values are shifted by the rescale intercept, so a reader
    that ignores RescaleSlope/Intercept returns the wrong numbers.

    Returns:
        The files in slice (z) order.
    """
    if np.linalg.det(volume.direction) < 0:
        raise ValueError("a DICOM series needs a right-handed direction (slice axis = row x column cosines)")
    folder.mkdir(parents=True, exist_ok=True)
    image = volume.to_sitk()
    tags = dicom_tags(volume, series_uid, modality)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    order = list(range(volume.array.shape[2]))
    random.Random(seed).shuffle(order)
    files: dict[int, Path] = {}
    for n, z in enumerate(order):
        slice_ = image[:, :, z]
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        position = image.TransformIndexToPhysicalPoint((0, 0, z))
        slice_.SetMetaData("0020|0032", "\\".join(f"{v:.8f}" for v in position))
        slice_.SetMetaData("0020|0013", str(z + 1))
        files[z] = folder / f"{prefix}{n:03d}.dcm"
        writer.SetFileName(str(files[z]))
        writer.Execute(slice_)
    return [files[z] for z in sorted(files)]


def write_volume(volume: Volume, tmp_path: Path, fmt: str) -> Path:
    """Write ``volume`` as ``fmt`` (one of FORMATS) under ``tmp_path``; returns what to pass to ``load_volume``."""
    if fmt == "dicom":
        folder = tmp_path / "series"
        write_dicom_series(volume, folder)
        return folder
    if fmt == "nii-qform":
        return write_nifti(volume, tmp_path / "scan.nii.gz", qform_only=True)
    path = tmp_path / f"scan.{fmt}"
    if fmt in NIFTI_FORMATS:
        return write_nifti(volume, path)
    return write_sitk(volume, path)


def volume_for(fmt: str) -> Volume:
    """The test volume for ``fmt``: DICOM needs a right-handed grid, the others get a flipped one."""
    return oblique_volume(right_handed=fmt == "dicom")


def mr_volume() -> Volume:
    """A second, smaller series (3 slices) on another grid, to share a folder with the CT series."""
    ct = oblique_volume(right_handed=True)
    return replace(ct, array=ct.array[:, :, :3] + 1000, origin=(40.0, -20.0, 7.5), spacing=(0.7, 0.9, 4.0))
