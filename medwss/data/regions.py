"""Where an ROI may lie: a body mask from the image alone (on the game grid: ``metrics.patches.patch_labels``).

Prostate MRI comes without an organ mask, yet most of a slice is air or coil background that can never hold the
gland; a body mask lets the detector, the game and the benchmarks ignore it. The rule (``body_mask``) needs no
labels, so it is as available at inference as at training:

1. threshold = ``otsu_fraction`` (0.5) x Otsu's threshold (scikit-image ``threshold_otsu``) of the volume's
   non-background voxels (value > ``background``, 0.02): Otsu splits tissue from the dark air/fat, half of it keeps
   dark tissue (e.g. fat, muscle on T2) inside the body;
2. per slice: binary closing (``closing_iterations`` = 3 px, on a zero-padded slice so edges are not eroded), fill
   holes (the rectum, bladder or bowel gas inside the body), keep the largest connected component (drops the coil,
   the table and noise specks).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from skimage.filters import threshold_otsu


def _slice_body(above: np.ndarray, closing_iterations: int) -> np.ndarray:
    """Closing, hole filling and largest component of one thresholded slice (H, W)."""
    pad = closing_iterations
    mask = np.pad(above, pad) if pad else above
    if closing_iterations:
        mask = ndimage.binary_closing(mask, iterations=closing_iterations)[pad:-pad, pad:-pad]
    mask = ndimage.binary_fill_holes(mask)
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = ndimage.sum_labels(mask, labels, index=np.arange(1, count + 1))
    return labels == 1 + int(np.argmax(sizes))


def body_mask(
    images: np.ndarray | torch.Tensor,
    *,
    otsu_fraction: float = 0.5,
    background: float = 0.02,
    closing_iterations: int = 3,
) -> np.ndarray | torch.Tensor:
    """Body mask of one scan's slices (rule in the module docstring).

    Args:
        images: (..., H, W) intensities in [0, 1] of ONE volume (e.g. (Z, H, W) or (Z, 1, H, W)): the threshold is
            computed over all of them, the morphology per slice.
        otsu_fraction: fraction of Otsu's threshold used as the body threshold.
        background: values at or below it are background and left out of Otsu's histogram.
        closing_iterations: closing radius in pixels (0: no closing).

    Returns:
        bool mask with the shape of ``images``, numpy or torch like ``images``; all False when no voxel is above
        ``background``.
    """
    array = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=np.float32)
    if array.ndim < 2:
        raise ValueError(f"images must be (..., H, W), got shape {array.shape}")
    out = np.zeros(array.shape, dtype=bool)
    foreground = array[array > background]
    if foreground.size and foreground.min() < foreground.max():
        threshold = otsu_fraction * float(threshold_otsu(foreground))
        flat_in, flat_out = array.reshape(-1, *array.shape[-2:]), out.reshape(-1, *array.shape[-2:])
        for i, image in enumerate(flat_in):
            flat_out[i] = _slice_body(image > threshold, closing_iterations)
    elif foreground.size:  # a constant non-background volume: all of it is body
        out = array > background
    return torch.from_numpy(out) if isinstance(images, torch.Tensor) else out
