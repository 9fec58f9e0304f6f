"""Overlay PNGs: a mask drawn on its scan, so a person can judge a segmentation at a glance (nnU-Net
``overlay_plots``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medwss.viz.figures import save_figure


def pick_slices(mask: np.ndarray, count: int) -> list[int]:
    """``count`` slice indices (z of an (x, y, z) mask): spread over the slices the mask covers, else the stack."""
    depth = mask.shape[-1]
    covered = np.flatnonzero(mask.reshape(-1, depth).any(axis=0))
    pool = covered if covered.size else np.arange(depth)
    picks = np.unique(np.linspace(0, pool.size - 1, min(count, pool.size)).round().astype(int))
    return [int(pool[i]) for i in picks]


RAS = ("R", "A", "S")
"""Axis codes of MONAI's working grid (``Orientationd`` to RAS): the index grows toward the patient's right,
anterior, superior."""


def axis_codes(direction: Sequence[float]) -> tuple[str, str, str]:
    """Where each array axis points, from an ITK (LPS) direction matrix (row-major 3 x 3): ``("L", "P", "S")`` for
    the identity, ``("R", "A", "S")`` for a NIfTI stored in RAS."""
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    codes = []
    for k in range(3):
        column = matrix[:, k]
        m = int(np.argmax(np.abs(column)))
        codes.append(("LR", "PA", "SI")[m][0 if column[m] > 0 else 1])
    return tuple(codes)  # type: ignore[return-value]


def display_slice(plane: np.ndarray, codes: Sequence[str] = ("L", "P")) -> np.ndarray:
    """An axial plane (array axes 0, 1 with their axis codes) as a radiologist views it: the patient's left on the
    image's right, anterior at the top. Planes that are not axial are shown with rows = axis 1, columns = axis 0.

    Every PNG medwss draws (``segment`` overlays, ``replay`` strips, eval reports) goes through here, so they show a
    scan the same way round whatever the file's orientation.
    """
    a, b = codes[0], codes[1]
    if {a, b} & {"L", "R"} and {a, b} & {"A", "P"}:
        view = plane.T if a in "LR" else plane  # rows: anterior-posterior axis, columns: left-right axis
        lr, ap = (a, b) if a in "LR" else (b, a)
        if lr == "R":
            view = view[:, ::-1]
        if ap == "A":
            view = view[::-1, :]
        return view
    return plane.T


CT_SOFT_TISSUE = (-160.0, 240.0)
"""CT display window in HU: the soft-tissue window, level 40, width 400."""


def display_range(image: np.ndarray, modality: str = "") -> tuple[float, float]:
    """Grey-level range to show a scan with: the soft-tissue window for CT (HU), else the 1st-99th percentile."""
    if modality.upper() == "CT":
        return CT_SOFT_TISSUE
    lo, hi = np.percentile(np.asarray(image, dtype=np.float32), [1, 99])
    return float(lo), (float(hi) if hi > lo else float(lo) + 1.0)


def method_free_slices(depth: int, region: np.ndarray | None = None, count: int = 6) -> list[int]:
    """Slices to draw that do not depend on the mask, so the overlays of every method of a scan show the same ones:
    spread over the organ prior when there is one, else over the central half of the stack."""
    if region is not None and np.asarray(region).any():
        return pick_slices(np.asarray(region) > 0, count)
    lo, hi = depth // 4, max(depth // 4 + 1, (3 * depth + 3) // 4)
    pool = np.arange(lo, min(hi, depth))
    picks = np.unique(np.linspace(0, pool.size - 1, min(count, pool.size)).round().astype(int))
    return [int(pool[i]) for i in picks]


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    out: str | Path,
    *,
    count: int = 6,
    title: str = "",
    reference: np.ndarray | None = None,
    modality: str = "",
    codes: Sequence[str] = ("L", "P", "S"),
    slices: Sequence[int] | None = None,
) -> Path:
    """Draw ``count`` axial slices of ``image`` (x, y, z) with ``mask`` filled in red and, when given, a
    ``reference`` mask outlined in green; write the PNG atomically.

    Slices are shown as a radiologist reads them (``display_slice``, ``codes`` from ``axis_codes`` of the scan's
    direction), intensity in the soft-tissue window for CT (``modality`` ``CT``), else clipped to the 1st-99th
    percentile of the volume. ``slices`` fixes the slices drawn (the same for every method of a comparison);
    by default they spread over the reference (when given) or the mask.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask) > 0
    lo, hi = display_range(image, modality)
    if slices is not None:
        zs = [int(z) for z in slices]
    elif reference is not None and np.asarray(reference).any():
        zs = pick_slices(np.asarray(reference) > 0, count)
    else:
        zs = pick_slices(mask, count)
    fig, axes = plt.subplots(1, len(zs), figsize=(2.6 * len(zs), 2.9), squeeze=False)
    for ax, z in zip(axes[0], zs, strict=True):
        shown = display_slice(mask[..., z], codes)
        ax.imshow(display_slice(image[..., z], codes), cmap="gray", vmin=lo, vmax=hi, origin="upper")
        ax.imshow(np.ma.masked_where(~shown, shown), cmap="autumn", alpha=0.45, origin="upper")
        if reference is not None:
            ref = display_slice(np.asarray(reference)[..., z] > 0, codes)
            if ref.any():
                ax.contour(ref, levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"z={z}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
