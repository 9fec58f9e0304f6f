from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

from medwss.metrics.segmentation import METRICS, case_metrics, multiclass_case_metrics, summarise


def _arr(rows: list[list[int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.uint8)


# (pred, gt, dice, iou), counted by hand: dice = 2|P&G| / (|P|+|G|), iou = |P&G| / |P|G|.
OVERLAP_CASES = [
    ("one of two", _arr([[1, 1, 0, 0]]), _arr([[1, 0, 0, 0]]), 2 / 3, 1 / 2),
    ("4 vs 6, overlap 2", _arr([[1, 1, 0], [1, 1, 0], [0, 0, 0]]), _arr([[0, 1, 1], [0, 1, 1], [0, 1, 1]]), 0.4, 0.25),
    ("pred inside gt", _arr([[0, 0, 0], [0, 1, 0], [0, 0, 0]]), _arr([[1, 1, 0], [1, 1, 0], [0, 0, 0]]), 0.4, 0.25),
    ("identical", _arr([[0, 1, 1], [0, 1, 1]]), _arr([[0, 1, 1], [0, 1, 1]]), 1.0, 1.0),
    ("disjoint", _arr([[1, 0, 0], [0, 0, 0]]), _arr([[0, 0, 0], [0, 0, 1]]), 0.0, 0.0),
]


@pytest.mark.parametrize("name,pred,gt,dice,iou", OVERLAP_CASES, ids=[c[0] for c in OVERLAP_CASES])
def test_dice_iou_by_hand(name, pred, gt, dice, iou):
    row = case_metrics(pred, gt)
    assert set(row) == set(METRICS)
    assert row["dice"] == pytest.approx(dice)
    assert row["iou"] == pytest.approx(iou)


def test_dice_iou_3d_and_torch_input_agree_with_numpy():
    gt = np.zeros((6, 6, 6), dtype=bool)
    gt[1:3, 1:3, 1:5] = True  # 16 voxels
    pred = np.zeros_like(gt)
    pred[1:3, 1:3, 1:3] = True  # 8 voxels, all inside gt
    row = case_metrics(pred, gt)
    assert row["dice"] == pytest.approx(16 / 24)
    assert row["iou"] == pytest.approx(8 / 16)
    assert case_metrics(torch.from_numpy(pred), torch.from_numpy(gt).int()) == pytest.approx(row)


def _cube(shape: tuple[int, int, int], start: tuple[int, int, int], side: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + side) for s in start)] = True
    return mask


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_distances_of_cubes_shifted_past_each_other(axis):
    # Side-4 cubes, the second shifted by 5 voxels along `axis`. Each cube's surface has 16 + 12 + 12 + 16 voxels in
    # its 4 layers across `axis`; every one lies (5, 4, 3, 2) * s from the other cube's facing face, which spans the
    # same lateral positions. Per direction the 95th percentile falls in the top group (5 s), and the mean is
    # (16*5 + 12*4 + 12*3 + 16*2) / 56 * s = 3.5 s; both directions are alike.
    spacing = (2.0, 0.7, 1.3)
    start = [5, 5, 5]
    shifted = list(start)
    shifted[axis] += 5
    a, b = _cube((18, 18, 18), tuple(start), 4), _cube((18, 18, 18), tuple(shifted), 4)
    s = spacing[axis]
    for pred, gt in ((a, b), (b, a)):
        row = case_metrics(pred, gt, spacing=spacing)
        assert row["hd95"] == pytest.approx(5 * s, rel=1e-5)
        assert row["msd"] == pytest.approx(3.5 * s, rel=1e-5)
        assert row["dice"] == 0.0


def test_distances_of_small_cubes_shifted_diagonally_with_anisotropic_spacing():
    # Side-2 cubes are all surface. The second is shifted by (2, 3, 0) voxels, so a voxel at offset (i, j) in
    # {0,1}^2 of its cube is sqrt(((2-i)*s0)^2 + ((3-j)*s1)^2) from the nearest voxel of the other cube.
    spacing = (2.0, 0.5, 3.0)
    a = _cube((10, 10, 10), (2, 2, 3), 2)
    b = _cube((10, 10, 10), (4, 5, 3), 2)
    dists = [math.hypot((2 - i) * spacing[0], (3 - j) * spacing[1]) for i in (0, 1) for j in (0, 1)]
    row = case_metrics(a, b, spacing=spacing)
    assert row["hd95"] == pytest.approx(max(dists), rel=1e-5)  # = sqrt(18.25): top two of eight per direction
    assert row["msd"] == pytest.approx(sum(dists) / 4, rel=1e-5)
    # the same mask with the spacing reversed must give another answer, or the axis order is being ignored
    assert case_metrics(a, b, spacing=spacing[::-1])["hd95"] != pytest.approx(row["hd95"])


def test_hd95_ignores_a_lone_outlier_that_msd_sees():
    # 2D: a 40-pixel line and the same line plus one pixel. The outlier is one of 41 pred->gt distances (the rest
    # 0), below the 95th percentile, so hd95 = 0 while the mean over all 81 surface pixels carries it.
    spacing = (2.0, 0.5)
    gt = np.zeros((14, 60), dtype=bool)
    gt[5, 2:42] = True
    pred = gt.copy()
    pred[11, 52] = True
    outlier = math.hypot(6 * spacing[0], 11 * spacing[1])  # to the line's end (5, 41)
    row = case_metrics(pred, gt, spacing=spacing)
    assert row["hd95"] == pytest.approx(0.0, abs=1e-6)
    assert row["msd"] == pytest.approx(outlier / 81, rel=1e-5)


def test_distances_in_voxels_without_spacing():
    a = _cube((12, 12, 12), (2, 2, 2), 4)
    b = _cube((12, 12, 12), (2, 2, 7), 4)
    row = case_metrics(a, b)
    assert (row["hd95"], row["msd"]) == pytest.approx((5.0, 3.5), rel=1e-5)


NAN = math.nan
EMPTY_CASES = [
    ("both empty", np.zeros((4, 4, 4)), np.zeros((4, 4, 4)), (1.0, 1.0, 0.0, 0.0)),
    ("pred empty", np.zeros((4, 4, 4)), _cube((4, 4, 4), (1, 1, 1), 2), (0.0, 0.0, NAN, NAN)),
    ("gt empty", _cube((4, 4, 4), (1, 1, 1), 2), np.zeros((4, 4, 4)), (0.0, 0.0, NAN, NAN)),
]


@pytest.mark.parametrize("name,pred,gt,expected", EMPTY_CASES, ids=[c[0] for c in EMPTY_CASES])
def test_empty_mask_conventions_without_warnings(name, pred, gt, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = case_metrics(pred, gt, spacing=(1.0, 2.0, 3.0))
    assert [row[k] for k in METRICS] == pytest.approx(list(expected), nan_ok=True)


BAD_INPUTS = [
    ("shape mismatch", np.zeros((3, 3)), np.zeros((3, 4)), None, "shapes differ"),
    ("label map", np.array([[0, 2], [1, 0]]), np.zeros((2, 2)), None, "binary"),
    ("1-D", np.zeros(5), np.zeros(5), None, "2D or 3D"),
    ("spacing length", np.zeros((3, 3)), np.zeros((3, 3)), (1.0, 1.0, 1.0), "spacing"),
    ("negative spacing", np.zeros((3, 3)), np.zeros((3, 3)), (1.0, -1.0), "spacing"),
]


@pytest.mark.parametrize("name,pred,gt,spacing,match", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs_raise(name, pred, gt, spacing, match):
    with pytest.raises(ValueError, match=match):
        case_metrics(pred, gt, spacing=spacing)


def test_multiclass_is_one_vs_rest_per_named_class():
    pred = np.array([[1, 1, 2, 0]])
    gt = np.array([[1, 2, 2, 0]])
    rows = multiclass_case_metrics(pred, gt, {"a": 1, "b": 2, "absent": 3})
    assert (rows["a"]["dice"], rows["a"]["iou"]) == pytest.approx((2 / 3, 1 / 2))
    assert (rows["b"]["dice"], rows["b"]["iou"]) == pytest.approx((2 / 3, 1 / 2))
    assert rows["absent"] == {"dice": 1.0, "iou": 1.0, "hd95": 0.0, "msd": 0.0}


def test_summarise_skips_and_counts_nan_and_missing_values():
    rows = [
        {"case": "p0", "dice": 0.5, "hd95": 2.0},
        {"case": "p1", "dice": 1.0, "hd95": NAN},
        {"case": "p2", "dice": 0.0, "hd95": 4.0},
        {"case": "p3", "dice": 0.5},
    ]
    summary = summarise(rows)
    assert set(summary) == {"dice", "hd95"}
    assert summary["dice"] == pytest.approx(
        {"mean": 0.5, "median": 0.5, "std": math.sqrt(0.125), "count": 4, "skipped": 0}
    )
    assert summary["hd95"] == pytest.approx({"mean": 3.0, "median": 3.0, "std": 1.0, "count": 2, "skipped": 2})


def test_summarise_of_all_nan_column_is_nan_with_counts():
    summary = summarise(iter([{"msd": NAN}, {"msd": math.inf}]))
    assert summary["msd"] == pytest.approx(
        {"mean": NAN, "median": NAN, "std": NAN, "count": 0, "skipped": 2}, nan_ok=True
    )
    assert summarise([]) == {}
