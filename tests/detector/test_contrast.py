"""Organ-contrast patch scores: a dark blob inside a bright organ scores high, the organ's border and outside do not."""

from __future__ import annotations

import pytest
import torch

from medwss.detector.contrast import OrganContrast, contrast_patch_scores, erode, smooth_inside
from medwss.detector.network import build_detector
from medwss.detector.scoring import PatchScorer


def organ_with_lesion(lesion: float = 0.2, organ: float = 0.6, background: float = 0.0):
    """One 32 x 32 slice: an organ (rows/cols 4-27) of value ``organ`` with a 8 x 8 lesion at rows/cols 12-19."""
    image = torch.full((1, 1, 32, 32), background)
    region = torch.zeros(1, 32, 32, dtype=torch.bool)
    region[:, 4:28, 4:28] = True
    image[:, :, 4:28, 4:28] = organ
    image[:, :, 12:20, 12:20] = lesion
    return image, region


def test_a_dark_lesion_scores_highest_and_patches_outside_the_eroded_organ_score_zero():
    image, region = organ_with_lesion()
    scores = contrast_patch_scores(image, 8, region, OrganContrast(sigma=0.0, erosion=2, span=0.5))
    assert scores.shape == (1, 8, 8)
    lesion = torch.zeros(8, 8, dtype=torch.bool)
    lesion[3:5, 3:5] = True  # patches of 4 x 4 px covering rows/cols 12-19
    assert torch.allclose(scores[0, lesion], torch.full((4,), 0.8))  # (0.6 - 0.2) / 0.5
    assert float(scores[0, ~lesion].max()) == 0.0  # organ at its median, border eroded, outside scores 0


def test_the_border_of_the_organ_is_not_taken_for_a_lesion():
    """Without erosion, smoothing still keeps the dark outside out of the organ's border pixels (normalised)."""
    image, region = organ_with_lesion(lesion=0.6)  # no lesion: a uniform organ on a black background
    scores = contrast_patch_scores(image, 8, region, OrganContrast(sigma=2.0, erosion=0))
    assert float(scores.max()) < 1e-5


def test_brighter_polarity_scores_hyperdense_lesions():
    image, region = organ_with_lesion(lesion=0.9, organ=0.5)
    darker = contrast_patch_scores(image, 8, region, OrganContrast(polarity="darker", sigma=0.0))
    brighter = contrast_patch_scores(image, 8, region, OrganContrast(polarity="brighter", sigma=0.0))
    assert float(darker.max()) == 0.0
    assert float(brighter[0, 3, 3]) == pytest.approx(0.8)


def test_scores_are_clipped_to_the_unit_range():
    image, region = organ_with_lesion(lesion=0.0, organ=1.0)
    scores = contrast_patch_scores(image, 8, region, OrganContrast(sigma=0.0, span=0.25))
    assert float(scores.max()) == 1.0 and float(scores.min()) == 0.0


def test_the_centre_channel_is_scored_when_neighbours_are_stacked():
    image, region = organ_with_lesion()
    flat, _ = organ_with_lesion(lesion=0.6)
    stacked = torch.cat([flat, image, flat], dim=1)
    assert torch.equal(contrast_patch_scores(stacked, 8, region), contrast_patch_scores(image, 8, region))


def test_erode_and_smooth_inside():
    region = torch.zeros(1, 9, 9, dtype=torch.bool)
    region[:, 2:7, 2:7] = True
    assert int(erode(region, 1).sum()) == 9 and int(erode(region, 0).sum()) == 25
    image = torch.where(region, torch.tensor(0.5), torch.tensor(0.0))
    smoothed = smooth_inside(image, region, 1.5)
    assert torch.allclose(smoothed[region], torch.full((25,), 0.5), atol=1e-5)


def test_bad_settings_and_a_missing_region_are_refused():
    image, region = organ_with_lesion()
    with pytest.raises(ValueError, match="organ region"):
        contrast_patch_scores(image, 8, None)
    with pytest.raises(ValueError, match="not divisible"):
        contrast_patch_scores(image, 5, region)
    with pytest.raises(ValueError, match="polarity"):
        OrganContrast(polarity="sideways")
    with pytest.raises(ValueError, match="span"):
        OrganContrast(span=0.0)


def test_patch_scorer_plays_contrast_scores_and_takes_its_settings_as_a_dict():
    image, region = organ_with_lesion()
    detector = build_detector(in_channels=1, width=8).eval()
    scorer = PatchScorer(detector, 8, "contrast", contrast={"sigma": 0.0, "erosion": 2, "span": 0.5})
    scored = scorer.score(image, region)
    assert torch.equal(scored.scores, contrast_patch_scores(image, 8, region, OrganContrast(sigma=0.0)))
    assert scored.gate is None and bool(scored.region[0, 3, 3])
