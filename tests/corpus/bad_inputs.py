"""A corpus of bad inputs, generated (no committed binaries): every way a scan or mask file can be wrong.

Each ``BadFile`` is written under a folder by ``write_corpus``; the tests run ``segment``, ``check`` and ``eval`` on
each and hold them to the promise: one line ``error: <file>: <problem>``, exit 2, no traceback, nothing written,
the input unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

SHAPE = (32, 32, 10)  # x, y, z
AFFINE = np.diag([0.9, 0.8, 3.0, 1.0])


def mr_array() -> np.ndarray:
    """An MR-like scan: body ellipse of magnitude values (no negatives)."""
    rng = np.random.default_rng(0)
    x, y = np.mgrid[: SHAPE[0], : SHAPE[1]]
    body = ((x - 16) ** 2 / 14**2 + (y - 16) ** 2 / 12**2) <= 1
    return (body[..., None] * (300 + 40 * rng.standard_normal(SHAPE))).clip(0).astype(np.int16)


def ct_array() -> np.ndarray:
    """A CT-like scan in Hounsfield units: air -1000 around a soft-tissue body."""
    rng = np.random.default_rng(1)
    x, y = np.mgrid[: SHAPE[0], : SHAPE[1]]
    body = ((x - 16) ** 2 / 14**2 + (y - 16) ** 2 / 12**2) <= 1
    return np.where(body[..., None], 40 + 20 * rng.standard_normal(SHAPE), -1000).astype(np.int16)


def mask_array() -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    m[10:20, 12:22, 3:7] = 1
    return m


def save_nifti(array: np.ndarray, path: Path, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def short_nii(array: np.ndarray, path: Path) -> Path:
    """An uncompressed .nii missing the last half of its voxel data: ITK reads it with zeros."""
    return truncate(save_nifti(array, path), 0.6)


def truncated_gz(array: np.ndarray, path: Path) -> Path:
    """A .nii.gz cut in the middle of its gzip stream (an interrupted download)."""
    save_nifti(array, path)
    return truncate(path, 0.6)


def sitk_file(array: np.ndarray, path: Path, compress: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)).copy())
    image.SetSpacing((0.9, 0.8, 3.0))
    sitk.WriteImage(image, str(path), useCompression=compress)
    return path


def negative_pixdim_nifti(array: np.ndarray, path: Path) -> Path:
    """A valid .nii whose pixdim[1] is negative (some converters write it; ITK reads it as a flipped x axis)."""
    save_nifti(array, path)
    data = bytearray(path.read_bytes())
    data[80:84] = struct.pack("<f", -0.9)
    path.write_bytes(bytes(data))
    return path


def dicom_series(array: np.ndarray, folder: Path, *, drop: int | None = None, shift: int | None = None,
                 corrupt: int | None = None, modality: str = "MR") -> Path:  # fmt: skip
    """One file per slice; ``drop`` leaves a slice out, ``shift`` moves one off its place, ``corrupt`` cuts one."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.transpose(array, (2, 1, 0)).copy())
    image.SetSpacing((0.9, 0.8, 3.0))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    tags = {"0008|0060": modality, "0020|000d": "1.2.3.4", "0020|000e": "1.2.3.4.5", "0020|0037": "1\\0\\0\\0\\1\\0",
            "0028|0030": "0.8\\0.9", "0018|0050": "3.0"}  # fmt: skip
    for z in range(array.shape[2]):
        if z == drop:
            continue
        slice_ = image[:, :, z]
        for key, value in tags.items():
            slice_.SetMetaData(key, value)
        position = z * 3.0 + (1.3 if z == shift else 0.0)
        slice_.SetMetaData("0020|0032", f"0\\0\\{position}")
        slice_.SetMetaData("0020|0013", str(z + 1))
        name = folder / f"im{z:03d}.dcm"
        writer.SetFileName(str(name))
        writer.Execute(slice_)
        if z == corrupt:
            truncate(name, 0.3)
    return folder


@dataclass(frozen=True)
class BadFile:
    """A bad input: how to write it, and words its error message must hold."""

    name: str
    write: Callable[[Path], Path]
    words: str


def _one_voxel(path: Path) -> Path:
    return save_nifti(np.ones((1, 1, 1), np.int16), path)


def _complex(path: Path) -> Path:
    return save_nifti((mr_array() + 1j * mr_array()).astype(np.complex64), path)


def _nan(path: Path) -> Path:
    a = mr_array().astype(np.float32)
    a[3, 3, 3] = np.nan
    return save_nifti(a, path)


def _vector(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(np.zeros((10, 32, 32, 3), np.uint8) + 5, isVector=True)
    sitk.WriteImage(image, str(path))
    return path


def _text(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not an image\n")
    return path


def _empty_gzip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb"):
        pass
    return path


# Scans every command refuses. Masks reuse most of them (see MASKS).
SCANS: list[BadFile] = [
    BadFile("truncated_int16", lambda p: truncated_gz(mr_array(), p / "scan.nii.gz"), "truncated"),
    BadFile("truncated_float32", lambda p: truncated_gz(mr_array().astype(np.float32), p / "scan.nii.gz"), "truncated"),
    BadFile("truncated_uint8", lambda p: truncated_gz(mr_array().astype(np.uint8), p / "scan.nii.gz"), "truncated"),
    BadFile("short_nii_int16", lambda p: short_nii(mr_array(), p / "scan.nii"), "truncated"),
    BadFile("short_nii_float64", lambda p: short_nii(mr_array().astype(np.float64), p / "scan.nii"), "truncated"),
    BadFile("truncated_mha", lambda p: truncate(sitk_file(mr_array(), p / "scan.mha")), "truncated"),
    BadFile("truncated_mha_gz", lambda p: truncate(sitk_file(mr_array(), p / "scan.mha", True)), "truncated"),
    BadFile("truncated_nrrd", lambda p: truncate(sitk_file(mr_array(), p / "scan.nrrd")), "truncated"),
    BadFile("constant", lambda p: save_nifti(np.full(SHAPE, 100, np.int16), p / "scan.nii.gz"), "constant"),
    BadFile("all_zero", lambda p: save_nifti(np.zeros(SHAPE, np.float32), p / "scan.nii.gz"), "constant"),
    BadFile("one_voxel", lambda p: _one_voxel(p / "scan.nii.gz"), "single voxel"),
    BadFile("complex", lambda p: _complex(p / "scan.nii.gz"), "complex"),
    BadFile("nan", lambda p: _nan(p / "scan.nii.gz"), "NaN"),
    BadFile("two_d", lambda p: save_nifti(mr_array()[..., 0], p / "scan.nii.gz"), "2D image"),
    BadFile("four_d", lambda p: save_nifti(np.stack([mr_array()] * 3, -1), p / "scan.nii.gz"), "4D image"),
    BadFile("vector", lambda p: _vector(p / "scan.mha"), "components per voxel"),
    BadFile("text", lambda p: _text(p / "scan.nii.gz"), "unreadable"),
    BadFile("empty_gzip", lambda p: _empty_gzip(p / "scan.nii.gz"), "unreadable"),
    BadFile("dicom_missing_slice", lambda p: dicom_series(mr_array(), p / "series", drop=4), "missing slice"),
    BadFile("dicom_uneven", lambda p: dicom_series(mr_array(), p / "series", shift=5), "uneven spacing"),
    BadFile("dicom_corrupt_file", lambda p: dicom_series(mr_array(), p / "series", corrupt=6), "im006.dcm"),
]
SCAN_NAMES = [c.name for c in SCANS]
# Mask files eval refuses (a mask may be all zero or constant: those are fine there).
MASKS: list[BadFile] = [
    BadFile("truncated_uint8_mask", lambda p: truncated_gz(mask_array(), p / "mask.nii.gz"), "truncated"),
    BadFile("short_nii_mask", lambda p: short_nii(mask_array(), p / "mask.nii"), "truncated"),
    BadFile("truncated_float_mask", lambda p: truncated_gz(mask_array().astype(np.float32), p / "mask.nii.gz"),
            "truncated"),  # fmt: skip
    BadFile("complex_mask", lambda p: save_nifti(mask_array().astype(np.complex64), p / "mask.nii.gz"), "complex"),
    BadFile("one_voxel_mask", lambda p: _one_voxel(p / "mask.nii.gz"), "single voxel"),
    BadFile("fractional_mask", lambda p: save_nifti(mask_array() * 0.5, p / "mask.nii.gz"), "non-integer"),
    BadFile("off_grid_mask", lambda p: save_nifti(mask_array(), p / "mask.nii.gz", np.diag([1.0, 1.0, 1.0, 1.0])),
            "not on the grid"),  # fmt: skip
    BadFile("text_mask", lambda p: _text(p / "mask.nii.gz"), "unreadable"),
]
MASK_NAMES = [c.name for c in MASKS]


def tree_state(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with its SHA-256: compared before and after a command."""
    state = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            state[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            state[str(path.relative_to(root)) + "/"] = ""
    return state
