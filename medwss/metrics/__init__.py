"""Metrics: per-case segmentation scores, VOC-style semantic scores, and patch-grid measures for the game."""

from __future__ import annotations

from medwss.metrics.patches import oracle_patch_mask, patch_coverage, patch_labels, patches_to_pixels, roc_auc
from medwss.metrics.segmentation import METRICS, case_metrics, multiclass_case_metrics, summarise
from medwss.metrics.semantic import confusion_matrix, dice_from_confusion, miou_from_confusion

__all__ = [
    "METRICS",
    "case_metrics",
    "confusion_matrix",
    "dice_from_confusion",
    "miou_from_confusion",
    "multiclass_case_metrics",
    "oracle_patch_mask",
    "patch_coverage",
    "patch_labels",
    "patches_to_pixels",
    "roc_auc",
    "summarise",
]
