"""Mask Dice of the baselines, and the synthetic task they are measured on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.game.rules import GameRules
from medwss.metrics.segmentation import case_metrics
from medwss.selfplay.baselines import oracle_dice, patch_mask_dice, slice_dice, threshold_baseline_dice
from medwss.selfplay.synthetic import bright_squares, synthetic_data


def test_slice_dice_matches_case_metrics_including_empty_masks() -> None:
    rng = np.random.default_rng(0)
    pred = torch.from_numpy(rng.random((6, 8, 8)) < 0.3)
    gt = torch.from_numpy(rng.random((6, 8, 8)) < 0.3)
    pred[0], gt[0] = False, False  # both empty: a correct "no ROI"
    pred[1] = False  # missed ROI
    gt[2] = False  # ROI where there is none
    dice = slice_dice(pred, gt)
    expected = [case_metrics(p, g)["dice"] for p, g in zip(pred, gt, strict=True)]
    assert dice.tolist() == pytest.approx(expected, abs=1e-6)
    assert dice[:3].tolist() == [1.0, 0.0, 0.0]
    assert slice_dice(torch.zeros(0, 4, 4), torch.zeros(0, 4, 4)).numel() == 0
    with pytest.raises(ValueError):
        slice_dice(pred[0], gt[0])


def test_patch_baselines_on_patch_aligned_squares() -> None:
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[0, :4, :4] = True  # exactly one 4 x 4 patch of a 2 x 2 grid
    scores = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]])
    rules = GameRules(grid_size=2)
    assert oracle_dice(gt, 2).tolist() == [1.0, 1.0]
    assert threshold_baseline_dice(scores, None, gt, rules).tolist() == [1.0, 1.0]
    weak = scores * 0.7  # below the 0.8 threshold: nothing taken
    assert threshold_baseline_dice(weak, None, gt, rules).tolist() == [0.0, 1.0]
    assert threshold_baseline_dice(weak, None, gt, rules, threshold=0.5).tolist() == [1.0, 1.0]
    assert patch_mask_dice(torch.ones(2, 2, 2, dtype=torch.bool), gt).tolist() == pytest.approx([0.4, 0.0])


def test_synthetic_task() -> None:
    images, masks = bright_squares(50, 16, np.random.default_rng(0), presence=0.6)
    assert images.shape == (50, 1, 16, 16) and masks.shape == (50, 16, 16)
    present = masks.flatten(1).any(1)
    assert 0.4 < present.float().mean() < 0.8
    assert images[:, 0][masks].mean() > images[:, 0][~masks].mean() + 0.4  # the ROI is the bright square
    data = synthetic_data(10, 4, 16, 4, seed=1)
    assert data.scores.shape == (10, 4, 4) and data.val_masks.shape == (4, 16, 16)
    assert float(data.scores.max()) <= 1.0 and data.region is None
    assert torch.equal(synthetic_data(10, 4, 16, 4, seed=1).images, data.images)
