"""A tiny prostate-like data set and a copy of a shipped bundle, so bundle stages run in seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import SimpleITK as sitk

REPO = Path(__file__).resolve().parents[2]
SHAPE = (32, 32, 10)  # x, y, z
GLAND_SLICES = range(2, 8)


def _write(array_xyz: np.ndarray, path: Path, spacing=(0.9, 0.8, 3.0), origin=(-14.0, 12.0, 5.0)) -> Path:
    image = sitk.GetImageFromArray(np.transpose(array_xyz, (2, 1, 0)))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))  # LPS-flipped, as scanner NIfTIs often are
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def write_tiny_prostate(root: Path, patients: int = 4) -> Path:
    """``patients`` folders ``p<i>/t2.nii.gz`` + ``p<i>/t2_anatomy_reader1.nii.gz``: a bright ellipse is the gland."""
    x, y = np.mgrid[: SHAPE[0], : SHAPE[1]]
    for i in range(patients):
        rng = np.random.default_rng(i)
        cx, cy = 16 + rng.integers(-3, 4), 16 + rng.integers(-3, 4)
        body = ((x - 16) ** 2 / 14**2 + (y - 16) ** 2 / 12**2) <= 1
        image = np.zeros(SHAPE, np.float32)
        labels = np.zeros(SHAPE, np.uint8)
        for z in range(SHAPE[2]):
            image[..., z] = body * (200 + 30 * rng.standard_normal(SHAPE[:2]))
            if z in GLAND_SLICES:
                gland = ((x - cx) ** 2 / 5**2 + (y - cy) ** 2 / 4**2) <= 1
                image[..., z] += gland * 400
                labels[..., z] = gland * (1 + (x > cx))
        _write(np.clip(image, 0, None), root / f"p{i}" / "t2.nii.gz")
        _write(labels, root / f"p{i}" / "t2_anatomy_reader1.nii.gz")
    return root


def tiny_bundle(tmp_path: Path, name: str = "prostate") -> Path:
    """A copy of ``bundles/<name>`` (configs only) in ``tmp_path``, so tests never touch the shipped weights."""
    bundle = tmp_path / name
    shutil.copytree(REPO / "bundles" / name / "configs", bundle / "configs")
    return bundle


def tiny_overrides(data_root: Path, **extra) -> dict:
    """Overrides that shrink the prostate bundle to the tiny data set: 32 px slices, a 4 x 4 grid, 2 epochs."""
    spec = {
        "name": "tiny",
        "modality": "MR",
        "image": "{case}/t2.nii.gz",
        "classes": {"gland": {"files": ["{case}/t2_anatomy_reader1.nii.gz"], "test": "> 0"}},
    }
    return {
        "data#sources": [{"root": str(data_root), "spec": spec}],
        "data#working_size": 32,
        "grid_size": 4,
        "detector#training#epochs": 2,
        "detector#training#batch_size": 4,
        **extra,
    }
