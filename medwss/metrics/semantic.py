"""Dataset-level semantic segmentation metrics in the PASCAL VOC convention (one confusion matrix, then mIoU).

VOC scores a method by summing one confusion matrix over all images and taking IoU per class from it, not by
averaging per-image IoU; background (label 0) is a class like any other and label 255 marks pixels not scored
(object borders). MONAI's confusion-matrix helpers are per-class binary (TP/FP/TN/FN per channel), not the
K x K count matrix this needs, hence ``np.bincount`` as in the VOC devkit and torchvision's reference scripts.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch


def _to_numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def confusion_matrix(
    pred: np.ndarray | torch.Tensor, gt: np.ndarray | torch.Tensor, num_classes: int, ignore_index: int | None = 255
) -> np.ndarray:
    """Pixel counts ``cm[true, predicted]`` of one image (or batch); sum the matrices of many images to accumulate.

    Args:
        pred: predicted label map, any shape, integer or bool.
        gt: reference label map, same shape.
        num_classes: number of classes including background.
        ignore_index: ``gt`` value whose pixels are not scored (whatever ``pred`` says there); None scores all.

    Returns:
        int64 array (num_classes, num_classes); rows are ground truth, columns prediction.

    Raises:
        ValueError: shapes differ, labels are not integers, or a scored label is outside [0, num_classes).
    """
    p, g = _to_numpy(pred), _to_numpy(gt)
    if p.shape != g.shape:
        raise ValueError(f"pred and gt shapes differ: {p.shape} vs {g.shape}")
    for name, arr in (("pred", p), ("gt", g)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
            raise ValueError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    p, g = p.reshape(-1).astype(np.int64), g.reshape(-1).astype(np.int64)
    if ignore_index is not None:
        keep = g != ignore_index
        p, g = p[keep], g[keep]
    for name, arr in (("pred", p), ("gt", g)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} has labels outside [0, {num_classes}) at scored pixels")
    counts = np.bincount(num_classes * g + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _check_cm(cm: np.ndarray | torch.Tensor) -> np.ndarray:
    m = _to_numpy(cm).astype(np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    return m


def _nanmean(values: np.ndarray) -> float:
    with warnings.catch_warnings():  # all-NaN (no class present at all) is a legitimate NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values)) if values.size else float("nan")


def miou_from_confusion(cm: np.ndarray | torch.Tensor) -> tuple[np.ndarray, float]:
    """Per-class IoU and their mean (mIoU) from an accumulated confusion matrix.

    A class absent from both prediction and ground truth over the whole set has no IoU (0/0): it is NaN and left
    out of the mean, rather than counted as 1 (which would reward a set that lacks the class) or 0.

    Returns:
        (IoU per class as float64 with NaN for absent classes, mIoU over the present classes; NaN if none).
    """
    m = _check_cm(cm)
    tp = np.diag(m)
    union = m.sum(axis=0) + m.sum(axis=1) - tp
    iou = np.full(tp.shape, np.nan)
    present = union > 0
    iou[present] = tp[present] / union[present]
    return iou, _nanmean(iou)


def dice_from_confusion(cm: np.ndarray | torch.Tensor) -> tuple[np.ndarray, float]:
    """Per-class Dice 2TP / (2TP + FP + FN) and their mean (mDSC), with the same absent-class rule as the mIoU.

    Returns:
        (Dice per class as float64 with NaN for absent classes, mean Dice over the present classes; NaN if none).
    """
    m = _check_cm(cm)
    tp = np.diag(m)
    denom = m.sum(axis=0) + m.sum(axis=1)
    dice = np.full(tp.shape, np.nan)
    present = denom > 0
    dice[present] = 2.0 * tp[present] / denom[present]
    return dice, _nanmean(dice)
