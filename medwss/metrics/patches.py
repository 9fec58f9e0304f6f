"""Patch-grid measures for the detector and game benchmarks: coverage, oracle masks, patch labels, ROC AUC.

The game cuts a slice into a G x G grid (paper Sec. 3), so a patch-based method can only output unions of
patches. These functions say how well any such method could do (the oracle) and how well the detector ranks
patches (AUC). Grid convention, shared with ``medwss.game``: patch ``(r, c)`` covers rows ``r*H/G:(r+1)*H/G``
and columns ``c*W/G:(c+1)*W/G``; flattened, its index is ``r*G + c`` (row-major). H and W must be divisible
by G, so every patch has the same size; otherwise a ValueError is raised.

Inputs are (H, W) or (B, H, W) numpy arrays or torch tensors; outputs keep the input's kind and leading shape.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import compute_roc_auc

from medwss.metrics.segmentation import as_bool_tensor


def _patch_size(height: int, width: int, grid: int) -> tuple[int, int]:
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 1:
        raise ValueError(f"grid must be a positive integer, got {grid!r}")
    if height % grid or width % grid:
        raise ValueError(f"image size {height}x{width} is not divisible by grid {grid}")
    return height // grid, width // grid


def _check_min_coverage(min_coverage: float) -> None:
    if not 0.0 <= min_coverage <= 1.0:
        raise ValueError(f"min_coverage must be in [0, 1], got {min_coverage}")


def patch_coverage(masks: np.ndarray | torch.Tensor, grid: int) -> np.ndarray | torch.Tensor:
    """Fraction of each patch's pixels inside the mask.

    Args:
        masks: binary masks (B, H, W) or one mask (H, W).
        grid: patches per side, G.

    Returns:
        (B, G, G) or (G, G) floats in [0, 1]; float64 for numpy input, float32 tensor for torch input.

    Raises:
        ValueError: H or W not divisible by G, or masks not binary / not 2D or 3D.
    """
    t = as_bool_tensor(masks, "masks")
    if t.ndim not in (2, 3):
        raise ValueError(f"masks must be (H, W) or (B, H, W), got shape {tuple(t.shape)}")
    height, width = t.shape[-2:]
    ph, pw = _patch_size(height, width, grid)
    blocks = t.reshape(*t.shape[:-2], grid, ph, grid, pw)
    if isinstance(masks, torch.Tensor):
        return blocks.float().mean(dim=(-3, -1))
    return blocks.numpy().mean(axis=(-3, -1), dtype=np.float64)


def patch_labels(masks: np.ndarray | torch.Tensor, grid: int, min_coverage: float = 0.5) -> np.ndarray | torch.Tensor:
    """Which patches count as ROI: coverage >= ``min_coverage`` and > 0.

    ``min_coverage=0`` labels every patch that touches the ROI (the detector's "patch contains ROI" target);
    0.5 labels the patches that are mostly ROI (the oracle's choice).

    Returns:
        bool (B, G, G) or (G, G), numpy or torch like ``masks``.
    """
    _check_min_coverage(min_coverage)
    cov = patch_coverage(masks, grid)
    return (cov >= min_coverage) & (cov > 0)


def patches_to_pixels(patch_mask: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """Paint patch decisions back onto pixels (nearest-neighbour upsampling on the same grid).

    Args:
        patch_mask: (B, G, G) or (G, G) per-patch values (bool decisions or scores); dtype is kept.
        size: (H, W) of the image, each divisible by G.

    Returns:
        (B, H, W) or (H, W), numpy or torch like ``patch_mask``.
    """
    if patch_mask.ndim not in (2, 3) or patch_mask.shape[-1] != patch_mask.shape[-2]:
        raise ValueError(f"patch_mask must be (G, G) or (B, G, G), got shape {tuple(patch_mask.shape)}")
    ph, pw = _patch_size(int(size[0]), int(size[1]), int(patch_mask.shape[-1]))
    if isinstance(patch_mask, torch.Tensor):
        return patch_mask.repeat_interleave(ph, dim=-2).repeat_interleave(pw, dim=-1)
    return np.repeat(np.repeat(np.asarray(patch_mask), ph, axis=-2), pw, axis=-1)


def oracle_patch_mask(
    masks: np.ndarray | torch.Tensor, grid: int, min_coverage: float = 0.5
) -> np.ndarray | torch.Tensor:
    """The pixel mask made of the patches with coverage >= ``min_coverage``: the ceiling of patch selection.

    At 0.5 it has the fewest wrong pixels (FP + FN) any union of grid patches can have, since a patch adds
    more right than wrong pixels exactly when it is at least half ROI. The Dice-best union is also a coverage
    threshold (the top-k patches by coverage) but its k depends on the mask; 0.5 is the usual reference.

    Returns:
        bool mask with the shape of ``masks``, numpy or torch like ``masks``.
    """
    labels = patch_labels(masks, grid, min_coverage)
    return patches_to_pixels(labels, (int(masks.shape[-2]), int(masks.shape[-1])))


def roc_auc(scores: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """Area under the ROC curve of detector scores against 0/1 labels (MONAI ``compute_roc_auc``), ties count half.

    Both inputs are flattened, so (B, G, G) patch scores and ``patch_labels`` can be passed as they are.

    Returns:
        AUC in [0, 1]; NaN when the labels hold only one class (AUC is undefined), without MONAI's warning.

    Raises:
        ValueError: sizes differ, labels not 0/1, or scores not finite.
    """
    s = torch.as_tensor(np.ascontiguousarray(scores) if isinstance(scores, np.ndarray) else scores)
    y = as_bool_tensor(labels, "labels")
    s, y = s.detach().reshape(-1).double().cpu(), y.reshape(-1).cpu()
    if s.numel() != y.numel():
        raise ValueError(f"scores and labels sizes differ: {s.numel()} vs {y.numel()}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError("scores must be finite")
    if bool(y.all()) or not bool(y.any()):
        return math.nan
    return float(compute_roc_auc(s, y.double()))
