from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medwss.metrics.semantic import confusion_matrix, dice_from_confusion, miou_from_confusion

# 4 classes; class 3 appears nowhere. The 255 pixel is not scored even though pred says 2 there.
GT = np.array([[0, 0, 1], [1, 255, 2]])
PRED = np.array([[0, 1, 1], [1, 2, 0]])
CM = np.array([[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]])  # rows gt, columns pred


def test_confusion_matrix_by_hand_with_ignore_label():
    cm = confusion_matrix(PRED, GT, num_classes=4)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, CM)


def test_confusion_matrices_accumulate_over_images():
    parts = [confusion_matrix(PRED[i], GT[i], num_classes=4) for i in range(2)]
    np.testing.assert_array_equal(parts[0] + parts[1], CM)
    np.testing.assert_array_equal(confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(GT), 4), CM)


def test_miou_excludes_absent_class_and_counts_background():
    iou, miou = miou_from_confusion(CM)
    # class 0: tp 1, union 2 + 2 - 1; class 1: tp 2, union 2 + 3 - 2; class 2: tp 0, union 1; class 3: 0/0
    np.testing.assert_allclose(iou, [1 / 3, 2 / 3, 0.0, np.nan])
    assert miou == pytest.approx(1 / 3)


def test_mean_dice_from_the_same_matrix():
    dice, mdice = dice_from_confusion(CM)
    np.testing.assert_allclose(dice, [2 / 4, 4 / 5, 0.0, np.nan])
    assert mdice == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_empty_matrix_gives_nan_not_a_warning():
    iou, miou = miou_from_confusion(np.zeros((3, 3)))
    assert np.isnan(iou).all() and math.isnan(miou)


BAD = [
    ("shape mismatch", np.zeros((2, 2), int), np.zeros((2, 3), int), {}, "shapes differ"),
    ("float labels", np.zeros((2, 2)), np.zeros((2, 2), int), {}, "integer"),
    ("gt out of range", np.zeros((2, 2), int), np.full((2, 2), 4), {}, "outside"),
    ("pred out of range at scored pixel", np.full((2, 2), 255), np.zeros((2, 2), int), {}, "outside"),
    ("255 scored when ignore is off", np.zeros((2, 2), int), np.full((2, 2), 255), {"ignore_index": None}, "outside"),
]


@pytest.mark.parametrize("name,pred,gt,kwargs,match", BAD, ids=[c[0] for c in BAD])
def test_bad_label_maps_raise(name, pred, gt, kwargs, match):
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, gt, num_classes=4, **kwargs)


def test_non_square_matrix_raises():
    with pytest.raises(ValueError, match="square"):
        miou_from_confusion(np.zeros((2, 3)))
