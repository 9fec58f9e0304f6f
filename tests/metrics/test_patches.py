from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch

from medwss.metrics.patches import oracle_patch_mask, patch_coverage, patch_labels, patches_to_pixels, roc_auc

# Hand-made 4x4 mask (7 pixels); on a 2x2 grid its patch coverage is [[1, .5], [.25, 0]].
MASK = np.array(
    [
        [1, 1, 1, 0],
        [1, 1, 1, 0],
        [0, 1, 0, 0],
        [0, 0, 0, 0],
    ],
    dtype=bool,
)


@pytest.mark.parametrize(
    "grid,expected",
    [
        (1, [[7 / 16]]),
        (2, [[1.0, 0.5], [0.25, 0.0]]),
        (4, MASK.astype(float).tolist()),
    ],
)
def test_patch_coverage_by_hand(grid, expected):
    cov = patch_coverage(MASK[None], grid)
    assert cov.shape == (1, grid, grid)
    np.testing.assert_allclose(cov[0], expected)


def test_patch_coverage_batches_and_keeps_tensor_kind():
    batch = np.stack([MASK, ~MASK])
    cov = patch_coverage(torch.from_numpy(batch), 2)
    assert isinstance(cov, torch.Tensor) and cov.shape == (2, 2, 2)
    torch.testing.assert_close(cov, torch.tensor([[[1.0, 0.5], [0.25, 0.0]], [[0.0, 0.5], [0.75, 1.0]]]))
    np.testing.assert_allclose(patch_coverage(MASK, 2), [[1.0, 0.5], [0.25, 0.0]])  # single (H, W) mask too


@pytest.mark.parametrize(
    "shape,grid",
    [((1, 5, 4), 2), ((1, 4, 6), 4), ((1, 4, 4), 0), ((4,), 2)],
    ids=["height", "width", "zero grid", "1-D"],
)
def test_patch_coverage_rejects_bad_grids(shape, grid):
    with pytest.raises(ValueError):
        patch_coverage(np.zeros(shape, dtype=bool), grid)


TOP = [[1, 1, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
ORACLE_CASES = [
    (0.5, TOP),  # the full and the half patch
    (0.0, [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]),  # every patch touching the mask
    (0.75, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
    (1.0, [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),
]


@pytest.mark.parametrize("min_coverage,expected", ORACLE_CASES)
def test_oracle_patch_mask_by_hand(min_coverage, expected):
    oracle = oracle_patch_mask(MASK, 2, min_coverage=min_coverage)
    assert oracle.dtype == bool
    np.testing.assert_array_equal(oracle, np.asarray(expected, dtype=bool))


def test_oracle_has_fewest_wrong_pixels_of_all_patch_unions():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 8, 8)) < 0.4
    oracle = oracle_patch_mask(masks, 2)
    for mask, best in zip(masks, oracle, strict=True):
        errors = [
            int((patches_to_pixels(np.array(bits, dtype=bool).reshape(2, 2), (8, 8)) ^ mask).sum())
            for bits in itertools.product([0, 1], repeat=4)
        ]
        assert int((best ^ mask).sum()) == min(errors)


def test_oracle_of_empty_mask_is_empty_torch():
    oracle = oracle_patch_mask(torch.zeros(2, 8, 8, dtype=torch.bool), 4, min_coverage=0.0)
    assert isinstance(oracle, torch.Tensor) and oracle.shape == (2, 8, 8) and not oracle.any()


def test_patch_labels_and_bad_threshold():
    np.testing.assert_array_equal(patch_labels(MASK[None], 2, min_coverage=0.25), [[[True, True], [True, False]]])
    with pytest.raises(ValueError, match="min_coverage"):
        patch_labels(MASK, 2, min_coverage=1.5)


def test_patches_to_pixels_nearest_blocks_numpy_and_torch():
    patches = np.array([[1, 0], [0, 1]], dtype=bool)
    expected = np.zeros((4, 6), dtype=bool)
    expected[:2, :3] = expected[2:, 3:] = True
    np.testing.assert_array_equal(patches_to_pixels(patches, (4, 6)), expected)
    scores = torch.tensor([[[0.9, 0.1], [0.2, 0.8]]])
    up = patches_to_pixels(scores, (4, 6))
    assert up.shape == (1, 4, 6) and up.dtype == torch.float32
    assert up[0, 3, 5] == pytest.approx(0.8) and up[0, 0, 4] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="divisible"):
        patches_to_pixels(patches, (5, 6))


AUC_CASES = [
    ("perfect", [0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1], 1.0),
    ("inverted", [0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1], 0.0),
    ("all tied", [0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1], 0.5),
    ("one swap", [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1], 0.75),
    ("only positives", [0.1, 0.4], [1, 1], math.nan),
    ("only negatives", [0.1, 0.4], [0, 0], math.nan),
]


@pytest.mark.parametrize("name,scores,labels,expected", AUC_CASES, ids=[c[0] for c in AUC_CASES])
def test_roc_auc(name, scores, labels, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc = roc_auc(np.array(scores), np.array(labels))
    assert auc == pytest.approx(expected, nan_ok=True)


def test_roc_auc_takes_patch_grids_as_they_are():
    scores = torch.tensor([[[0.9, 0.6], [0.4, 0.1]]])
    labels = patch_labels(MASK[None], 2)  # [[1, 1], [0, 0]]
    assert roc_auc(scores, labels) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="sizes differ"):
        roc_auc(scores, labels[..., :1])
    with pytest.raises(ValueError, match="binary"):
        roc_auc([0.1, 0.2], np.array([0, 2]))
