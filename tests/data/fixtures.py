"""Tiny NIfTI writers for tests: real file I/O with scanner-like, non-identity geometry.

Arrays are given (x, y, z), the layout ``medwss.data.io`` returns; directions are ITK (LPS) 3 x 3 matrices whose
columns are the index axes' directions. Import the helpers; there is no conftest magic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# ITK directions. LPS: a DICOM-like scan whose x/y flip when reoriented to RAS.
LPS = np.eye(3)
# Already RAS (x runs to the right, y to anterior): reorientation changes nothing.
RAS = np.diag([-1.0, -1.0, 1.0])
# Slices stored superior to inferior: reorientation reverses the slice order.
Z_FLIP = np.diag([1.0, 1.0, -1.0])
# 18 degrees about x like the Prostate158 scans, and y flipped too: oblique, still closest to axial.
_t = np.deg2rad(18.0)
OBLIQUE = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(_t), -np.sin(_t)], [0.0, np.sin(_t), np.cos(_t)]]) @ np.diag(
    [1.0, -1.0, 1.0]
)
# Sagittal acquisition: index axes run A->P, S->I, L->R; axis 2 (the slice axis) is left-right.
SAGITTAL = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def write_volume(
    path: str | Path,
    array: np.ndarray,
    *,
    spacing: tuple[float, float, float] = (0.8, 0.7, 2.5),
    direction: np.ndarray = LPS,
    origin: tuple[float, float, float] = (-12.5, 30.0, -7.0),
) -> Path:
    """Write an (x, y, z) array as NIfTI with SimpleITK and the given geometry."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(array, (2, 1, 0))))
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in np.asarray(direction).reshape(-1)))
    image.SetOrigin(tuple(float(o) for o in origin))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def ellipsoid(shape: tuple[int, int, int], centre: tuple[float, ...], radii: tuple[float, ...]) -> np.ndarray:
    """uint8 ellipsoid mask; centre and radii in voxels."""
    grid = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")
    distance = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii, strict=True))
    return (distance <= 1.0).astype(np.uint8)


def slice_marker_ct(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """CT-like int16 HU volume whose slice z has mean about -500 + 50 z: a marker of the slice it came from."""
    rng = np.random.default_rng(seed)
    z = np.arange(shape[2], dtype=np.float64)[None, None, :]
    values = -500.0 + 50.0 * z + rng.normal(0.0, 5.0, size=shape)
    return np.round(values).astype(np.int16)


def write_case(
    folder: str | Path,
    name: str = "case0",
    shape: tuple[int, int, int] = (20, 16, 7),
    *,
    direction: np.ndarray = LPS,
    spacing: tuple[float, float, float] = (0.8, 0.7, 2.5),
    seed: int = 0,
) -> dict[str, object]:
    """Write image (HU, slice markers), label (an ellipsoid) and prior (a larger one) on one grid.

    Returns:
        A case dict {image, label, prior: Path, case, label_array, prior_array, image_array} (arrays x, y, z).
    """
    folder = Path(folder)
    image = slice_marker_ct(shape, seed)
    centre = tuple((n - 1) / 2 for n in shape)
    label = ellipsoid(shape, centre, (shape[0] / 3, shape[1] / 3.5, shape[2] / 3))
    prior = ellipsoid(shape, centre, (shape[0] / 2.2, shape[1] / 2.2, shape[2] / 2))
    geometry = {"spacing": spacing, "direction": direction}
    return {
        "image": write_volume(folder / f"{name}.nii.gz", image, **geometry),
        "label": write_volume(folder / f"{name}_label.nii.gz", label, **geometry),
        "prior": write_volume(folder / f"{name}_prior.nii.gz", prior, **geometry),
        "case": name,
        "image_array": image,
        "label_array": label,
        "prior_array": prior,
    }


def files_only(case: dict[str, object]) -> dict[str, object]:
    """The case dict without the arrays, as a pipeline input."""
    return {k: v for k, v in case.items() if not k.endswith("_array")}
