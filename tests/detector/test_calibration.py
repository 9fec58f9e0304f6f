"""The calibrated ROI threshold: a quantile of background scores, read from ROI-absent slices only."""

from __future__ import annotations

import math

import pytest
import torch

from medwss.bundle.selfplay_stage import calibrated_roi_threshold, game_rules
from medwss.detector.calibration import background_score_quantile
from medwss.errors import MedwssError


def scores_and_labels():
    """Absent slices score 0.0 .. 0.99 (100 patches each); the present slice scores 1 everywhere."""
    absent = torch.linspace(0.0, 0.99, 100).reshape(1, 10, 10).repeat(2, 1, 1)
    present = torch.ones(1, 10, 10)
    return torch.cat([absent, present]), torch.tensor([0.0, 0.0, 1.0])


@pytest.mark.parametrize("quantile", [0.5, 0.8, 0.95])
def test_threshold_is_the_quantile_of_absent_slices_only(quantile):
    scores, presence = scores_and_labels()
    got = background_score_quantile(scores, presence, quantile)
    assert got == pytest.approx(float(torch.quantile(torch.linspace(0.0, 0.99, 100), quantile)))
    assert got < 1.0  # the present slice (all 1) was not read


def test_unlabelled_slices_are_not_read_and_region_limits_the_patches():
    scores, presence = scores_and_labels()
    presence = torch.tensor([0.0, math.nan, 1.0])
    region = torch.zeros(3, 10, 10, dtype=torch.bool)
    region[0, :5] = True  # only scores 0.00 .. 0.49 are legal
    got = background_score_quantile(scores, presence, 0.99, region)
    assert got == pytest.approx(float(torch.quantile(torch.linspace(0.0, 0.49, 50), 0.99)))


def test_all_zero_background_gives_the_smallest_legal_threshold():
    assert background_score_quantile(torch.zeros(2, 4, 4), torch.zeros(2), 0.8) == pytest.approx(1e-6)


@pytest.mark.parametrize(
    ("presence", "quantile", "match"),
    [
        (torch.ones(3), 0.8, "no ROI-absent"),
        (torch.zeros(3), 1.0, "roi_quantile"),
        (torch.zeros(3), 0.0, "roi_quantile"),
    ],
)
def test_bad_calibration_requests_are_refused(presence, quantile, match):
    with pytest.raises(ValueError, match=match):
        background_score_quantile(torch.rand(3, 4, 4), presence, quantile)


def test_stage_resolves_auto_and_keeps_a_fixed_number():
    scores, presence = scores_and_labels()
    auto = {"grid_size": 10, "selfplay": {"rules": {"roi_threshold": "auto"}, "roi_quantile": 0.5}}
    threshold, note = calibrated_roi_threshold(auto, scores, presence, None)
    assert threshold == pytest.approx(0.495) and note == {"roi_threshold": "auto", "roi_quantile": 0.5,
                                                          "absent_slices": 2}
    assert game_rules(auto, roi_threshold=threshold).roi_threshold == threshold
    with pytest.raises(MedwssError, match="auto"):
        game_rules(auto)  # unresolved: refused rather than silently played at some default
    fixed = {"grid_size": 10, "selfplay": {"rules": {"roi_threshold": 0.6}}}
    assert calibrated_roi_threshold(fixed, scores, presence, None) == (0.6, {"roi_threshold": "fixed"})
    with pytest.raises(MedwssError, match="no ROI-absent"):
        calibrated_roi_threshold(auto, scores, torch.ones(3), None)
