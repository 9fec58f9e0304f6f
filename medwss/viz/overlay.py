"""Overlay PNGs: a mask drawn on its scan, so a person can judge a segmentation at a glance (nnU-Net
``overlay_plots``)."""

from __future__ import annotations

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


CT_SOFT_TISSUE = (-160.0, 240.0)
"""CT display window in HU: the soft-tissue window, level 40, width 400."""


def display_range(image: np.ndarray, modality: str = "") -> tuple[float, float]:
    """Grey-level range to show a scan with: the soft-tissue window for CT (HU), else the 1st-99th percentile."""
    if modality.upper() == "CT":
        return CT_SOFT_TISSUE
    lo, hi = np.percentile(np.asarray(image, dtype=np.float32), [1, 99])
    return float(lo), (float(hi) if hi > lo else float(lo) + 1.0)


def draw_overlay(
    image: np.ndarray,
    mask: np.ndarray,
    out: str | Path,
    *,
    count: int = 6,
    title: str = "",
    reference: np.ndarray | None = None,
    modality: str = "",
) -> Path:
    """Draw ``count`` axial slices of ``image`` (x, y, z) with ``mask`` filled in red and, when given, a
    ``reference`` mask outlined in green; write the PNG atomically.

    Slices are shown as a radiologist reads them: rows = y, columns = x, intensity in the soft-tissue window for CT
    (``modality`` ``CT``), else clipped to the 1st-99th percentile of the volume.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = np.asarray(image, dtype=np.float32)
    mask = np.asarray(mask) > 0
    lo, hi = display_range(image, modality)
    zs = pick_slices(mask if mask.any() or reference is None else np.asarray(reference) > 0, count)
    fig, axes = plt.subplots(1, len(zs), figsize=(2.6 * len(zs), 2.9), squeeze=False)
    for ax, z in zip(axes[0], zs, strict=True):
        ax.imshow(image[..., z].T, cmap="gray", vmin=lo, vmax=hi, origin="upper")
        ax.imshow(np.ma.masked_where(~mask[..., z].T, mask[..., z].T), cmap="autumn", alpha=0.45, origin="upper")
        if reference is not None:
            ref = np.asarray(reference)[..., z].T > 0
            if ref.any():
                ax.contour(ref, levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"z={z}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out, dpi=100)
