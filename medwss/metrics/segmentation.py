"""Per-case binary segmentation metrics (Dice, IoU, HD95, mean surface distance) and NaN-aware summaries.

MONAI computes the numbers; this module fixes what MONAI leaves open (empty masks, spacing order, units), so
``medwss eval`` and every benchmark report the same values for the same masks.

Conventions (one place, cited by the report writers):
    * Masks are bool or 0/1 arrays of shape (H, W) or (D, H, W); numpy arrays and torch tensors both work.
    * ``spacing`` lists the voxel size in the *array's* axis order (for a SimpleITK image read with
      ``GetArrayFromImage`` that is ``image.GetSpacing()[::-1]``). With spacing, hd95 and msd are in mm;
      without, in voxels.
    * Surfaces are the inner boundary voxels (mask XOR its erosion), distances are between voxel centres,
      Euclidean (MONAI ``get_mask_edges`` / ``get_surface_distance``).
    * hd95 = max of the two directed 95th percentiles (linear interpolation, ``torch.quantile``).
    * msd = mean over the union of both directed distance sets (the average symmetric surface distance, ASSD).
    * Both masks empty: dice 1, iou 1, hd95 0, msd 0 (a correct "no ROI" answer).
    * Exactly one mask empty: dice 0, iou 0, hd95 NaN, msd NaN (no surface to measure to; NaN rather than inf
      so a summary can skip and count it instead of returning inf).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch
from monai.metrics import compute_average_surface_distance, compute_dice, compute_hausdorff_distance, compute_iou

logger = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("dice", "iou", "hd95", "msd")
"""Keys of a ``case_metrics`` row, in report order."""


def as_bool_tensor(mask: np.ndarray | torch.Tensor, name: str) -> torch.Tensor:
    """Binary mask as a bool tensor; refuses label maps so a multi-class map is never silently binarised.

    Raises:
        ValueError: when ``mask`` holds values other than 0 and 1.
    """
    if isinstance(mask, np.ndarray):
        mask = np.ascontiguousarray(mask)
    t = torch.as_tensor(mask)
    if t.dtype == torch.bool:
        return t
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError(f"{name} must be binary (bool or 0/1); use multiclass_case_metrics for label maps")
    return t != 0


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> list[float] | None:
    """Spacing as a list of Python floats, the form MONAI's ``prepare_spacing`` accepts (it rejects np.float32)."""
    if spacing is None:
        return None
    values = [float(s) for s in spacing]
    if len(values) != ndim:
        raise ValueError(f"spacing has {len(values)} values for a {ndim}-D mask")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(f"spacing must be positive and finite, got {values}")
    return values


def case_metrics(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, spacing: Sequence[float] | None = None
) -> dict[str, float]:
    """Dice, IoU, HD95 and mean symmetric surface distance of one binary 2D or 3D prediction.

    Args:
        pred: predicted mask, (H, W) or (D, H, W), bool or 0/1.
        gt: reference mask, same shape.
        spacing: voxel size per array axis (mm); None measures distances in voxels.

    Returns:
        ``{"dice", "iou", "hd95", "msd"}`` as floats; see the module docstring for empty-mask values.

    Raises:
        ValueError: shapes differ, masks are not 2D/3D or not binary, or spacing does not fit.
    """
    p = as_bool_tensor(pred, "pred")
    g = as_bool_tensor(gt, "gt")
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
    if p.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got shape {tuple(p.shape)}")
    sp = _check_spacing(spacing, p.ndim)

    # Empty masks are decided here, not by MONAI: it returns NaN for two empty masks and warns on each call.
    p_any, g_any = bool(p.any()), bool(g.any())
    if not p_any and not g_any:
        return {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "msd": 0.0}
    if not (p_any and g_any):
        logger.debug("one mask empty (pred=%s, gt=%s): surface distances are NaN", p_any, g_any)
        return {"dice": 0.0, "iou": 0.0, "hd95": math.nan, "msd": math.nan}

    # MONAI wants (batch, channel, *spatial); a single foreground channel, so background must be included.
    y_pred, y = p[None, None].float(), g[None, None].float()
    dice = compute_dice(y_pred, y, include_background=True, ignore_empty=False)
    iou = compute_iou(y_pred, y, include_background=True, ignore_empty=False)
    with warnings.catch_warnings():
        # MONAI 1.5-1.6 passes its own deprecated argument internally; the warning is not ours to act on.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy", category=FutureWarning)
        hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=sp)
        msd = compute_average_surface_distance(y_pred, y, include_background=True, symmetric=True, spacing=sp)
    return {"dice": float(dice.item()), "iou": float(iou.item()), "hd95": float(hd95.item()), "msd": float(msd.item())}


def multiclass_case_metrics(
    pred_labels: np.ndarray | torch.Tensor,
    gt_labels: np.ndarray | torch.Tensor,
    classes: Mapping[str, int],
    spacing: Sequence[float] | None = None,
) -> dict[str, dict[str, float]]:
    """``case_metrics`` for each named label of two integer label maps (one-vs-rest per class).

    Args:
        pred_labels: predicted label map, (H, W) or (D, H, W).
        gt_labels: reference label map, same shape.
        classes: class name -> label value, e.g. ``{"peripheral_zone": 1, "transition_zone": 2}``.
        spacing: voxel size per array axis (mm).

    Returns:
        class name -> ``case_metrics`` row.
    """
    p = torch.as_tensor(np.ascontiguousarray(pred_labels) if isinstance(pred_labels, np.ndarray) else pred_labels)
    g = torch.as_tensor(np.ascontiguousarray(gt_labels) if isinstance(gt_labels, np.ndarray) else gt_labels)
    if p.shape != g.shape:
        raise ValueError(f"pred_labels and gt_labels shapes differ: {tuple(p.shape)} vs {tuple(g.shape)}")
    return {name: case_metrics(p == label, g == label, spacing) for name, label in classes.items()}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def summarise(rows: Iterable[Mapping[str, object]]) -> dict[str, dict[str, float | int]]:
    """Mean, median and std of every numeric column over cases, skipping NaN and counting what was skipped.

    ``summary["dice"]["mean"]`` is the mDSC and ``summary["iou"]["mean"]`` the mIoU of the reports. Non-numeric
    columns (a case id) are ignored. A value that is NaN or inf, or a row that lacks the column, is skipped and
    counted in ``skipped``, so "HD95 over 38 of 40 cases" can be stated next to the number.

    Returns:
        column -> ``{"mean", "median", "std", "count", "skipped"}``; std is the population std (ddof=0);
        mean/median/std are NaN when ``count`` is 0.
    """
    columns: dict[str, list[float]] = {}
    n_rows = 0
    for row in rows:
        n_rows += 1
        for key, value in row.items():
            if _is_number(value):
                columns.setdefault(key, []).append(float(value))  # type: ignore[arg-type]

    summary: dict[str, dict[str, float | int]] = {}
    for key, values in columns.items():
        arr = np.asarray(values, dtype=np.float64)
        arr = arr[np.isfinite(arr)]
        count = int(arr.size)
        if count == 0:
            mean = median = std = math.nan
        else:
            mean, median, std = float(arr.mean()), float(np.median(arr)), float(arr.std())
        summary[key] = {"mean": mean, "median": median, "std": std, "count": count, "skipped": n_rows - count}
        if count < n_rows:
            logger.info("%s: %d of %d cases skipped (NaN, inf or missing)", key, n_rows - count, n_rows)
    return summary
