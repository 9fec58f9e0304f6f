"""The game's patch scorer: CAM per patch, the position prior from slice labels, the slice gate, agent planes."""

from __future__ import annotations

import pytest
import torch

from medwss.detector.features import DetectorEncoder, agent_features
from medwss.detector.network import build_detector
from medwss.detector.scoring import PatchScorer, cam_patch_scores, gaussian_fit, position_prior, score_patches


@pytest.fixture
def detector():
    torch.manual_seed(0)
    return build_detector(in_channels=1, width=8, coord_channels=True, pooling="mean").eval()


@pytest.fixture
def slices():
    return torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))


def test_cam_patch_scores_lie_in_unit_range_with_max_one_and_zero_outside_the_region(detector, slices):
    region = torch.zeros(3, 32, 32, dtype=torch.bool)
    region[:, 8:24, 8:24] = True
    scores = cam_patch_scores(detector, slices, 4, region)
    assert scores.shape == (3, 4, 4)
    assert float(scores.min()) >= 0 and torch.allclose(scores.flatten(1).amax(1), torch.ones(3))
    outside = torch.ones(4, 4, dtype=torch.bool)
    outside[1:3, 1:3] = False
    assert float(scores[:, outside].abs().max()) == 0.0


def test_cam_patch_scores_are_patch_means_of_the_grad_cam_map(detector, slices):
    from medwss.detector.cam import cam_maps

    maps = cam_maps(detector, slices)
    means = maps.reshape(3, 4, 8, 4, 8).mean(dim=(2, 4))
    expected = means / means.flatten(1).amax(1)[:, None, None]
    assert torch.allclose(cam_patch_scores(detector, slices, 4), expected, atol=1e-6)


def test_cam_patch_scores_refuse_a_grid_that_does_not_divide_the_slice(detector, slices):
    with pytest.raises(ValueError, match="not divisible"):
        cam_patch_scores(detector, slices, 5)


def test_position_prior_contrasts_present_with_absent_slices():
    scores = torch.zeros(4, 3, 3)
    scores[:2, 1, 1] = 1.0  # present slices light up in the centre...
    scores[:, 0, 0] = 0.8  # ...and everywhere at a corner (not position evidence: absent slices light up too)
    presence = torch.tensor([1.0, 1.0, 0.0, 0.0])
    prior = position_prior(scores, presence)
    assert float(prior[1, 1]) == 1.0 and float(prior[0, 0]) == 0.0
    assert float(prior.min()) >= 0.0


def test_position_prior_ignores_unlabelled_slices_and_patches_outside_the_region():
    scores = torch.ones(3, 2, 2)
    scores[0, 0, 0] = 5.0
    presence = torch.tensor([1.0, 0.0, float("nan")])
    region = torch.ones(3, 2, 2, dtype=torch.bool)
    region[:, 1, 1] = False
    prior = position_prior(scores, presence, region)
    assert float(prior[0, 0]) == 1.0 and float(prior[1, 1]) == 0.0


def test_position_prior_needs_both_kinds_of_slices_and_some_contrast():
    with pytest.raises(ValueError, match="present and ROI-absent"):
        position_prior(torch.rand(2, 3, 3), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="no position prior"):
        position_prior(torch.ones(2, 3, 3), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="slice labels"):
        position_prior(torch.ones(2, 3, 3), torch.tensor([1.0, 0.0, 1.0]))


def test_gaussian_prior_keeps_where_the_roi_lies_and_drops_the_raggedness():
    torch.manual_seed(0)
    scores = torch.rand(40, 16, 16) * 0.2
    scores[:20, 4:9, 8:15] += 1.0  # present slices light up a 5 x 7 block off the centre...
    scores[:20, 6, 10] -= 0.9  # ...with a hole, as a seed's ragged map has
    presence = torch.tensor([1.0] * 20 + [0.0] * 20)
    ragged = position_prior(scores, presence)
    smooth = position_prior(scores, presence, shape="gaussian")
    assert smooth.shape == ragged.shape and float(smooth.max()) == pytest.approx(1.0)
    peak = divmod(int(smooth.argmax()), 16)
    assert peak == (6, 11)  # the block's centre
    assert float(smooth[6, 10]) > 0.9 > float(ragged[6, 10])  # the hole is filled
    assert float(smooth[4, 11]) > float(smooth[1, 11]) > float(smooth[0, 11])  # falls off with distance
    # the spread follows the block: wider along the columns (7) than along the rows (5)
    assert float(smooth[6, 11 + 3]) > float(smooth[6 + 3, 11])


def test_gaussian_prior_refuses_an_unknown_shape_and_fits_a_map_lit_along_one_line():
    presence = torch.tensor([1.0, 0.0])
    with pytest.raises(ValueError, match="prior shape"):
        position_prior(torch.rand(2, 3, 3), presence, shape="box")
    line = torch.zeros(2, 4, 4)
    line[0, 1, :] = 1.0  # one row: no spread across the rows but the cells' own
    prior = position_prior(line, presence, shape="gaussian")
    assert bool(torch.isfinite(prior).all()) and float(prior.max()) == pytest.approx(1.0)
    assert float(prior[1].min()) > 0.4 and 0.01 > float(prior[0].max()) > float(prior[3].max())  # narrow across rows
    with pytest.raises(ValueError, match="some weight"):
        gaussian_fit(torch.zeros(3, 3))


def test_plain_scorer_is_the_detectors_own_mil_pooling(detector, slices):
    scored = PatchScorer(detector, 4).score(slices)
    assert torch.equal(scored.scores, score_patches(detector, slices, 4))
    assert scored.gate is None and scored.region is None


def test_scorer_multiplies_local_scores_by_prior_and_gate(detector, slices):
    prior = torch.linspace(0, 1, 16).reshape(4, 4)
    region = torch.ones(3, 32, 32, dtype=torch.bool)
    scorer = PatchScorer(detector, 4, method="cam", gate=True, prior=prior)
    scored = scorer.score(slices, region)
    expected = scored.local * prior * scored.gate[:, None, None]
    assert torch.allclose(scored.scores, expected)
    assert scored.region.shape == (3, 4, 4) and bool(scored.region.all())
    assert torch.allclose(scorer(slices, region), scored.scores)


def test_scorer_reads_its_prior_from_a_file(tmp_path, detector, slices):
    prior = torch.rand(4, 4)
    torch.save(prior, tmp_path / "prior.pt")
    scorer = PatchScorer(detector, 4, method="mil", prior=str(tmp_path / "prior.pt"))
    assert torch.equal(scorer.prior, prior)


def test_scorer_refuses_unknown_methods_and_misshapen_priors(detector):
    with pytest.raises(ValueError, match="scoring method"):
        PatchScorer(detector, 4, method="occlusion")
    with pytest.raises(ValueError, match="position prior"):
        PatchScorer(detector, 4, prior=torch.ones(3, 3))


def test_agent_features_append_the_requested_planes_in_order(detector, slices):
    prior = torch.rand(4, 4)
    scorer = PatchScorer(detector, 4, method="cam", gate=True, prior=prior)
    scored = scorer.score(slices)
    encoder = DetectorEncoder(detector, 4)
    base = agent_features(encoder, slices, scored, ("prior", "gate", "scores"), prior)
    f = encoder.out_channels
    assert base.shape == (3, f + 3, 4, 4)
    assert torch.equal(base[:, :f], encoder(slices))
    assert torch.equal(base[:, f], prior.expand(3, 4, 4))
    assert torch.equal(base[:, f + 1], scored.gate[:, None, None].expand(3, 4, 4))
    assert torch.equal(base[:, f + 2], scored.scores)


def test_agent_features_refuse_planes_they_cannot_build(detector, slices):
    encoder = DetectorEncoder(detector, 4)
    ungated = PatchScorer(detector, 4).score(slices)
    with pytest.raises(ValueError, match="unknown agent planes"):
        agent_features(encoder, slices, ungated, ("depth",))
    with pytest.raises(ValueError, match="gated scorer"):
        agent_features(encoder, slices, ungated, ("gate",))
    with pytest.raises(ValueError, match="position prior"):
        agent_features(encoder, slices, ungated, ("prior",))


def test_ensemble_reads_as_the_mean_of_its_members(slices):
    from medwss.detector.cam import cam_maps, normalise_maps
    from medwss.detector.network import DetectorEnsemble, PresenceDetector, build_detector, detector_members

    torch.manual_seed(0)
    ensemble = build_detector(1, 1, 8, 0, True, "mean", members=3).eval()
    assert isinstance(ensemble, DetectorEnsemble) and len(detector_members(ensemble)) == 3
    assert isinstance(build_detector(1, 1, 8, members=1), PresenceDetector)
    members = detector_members(ensemble)
    assert not torch.equal(members[0].head.weight, members[1].head.weight)  # built from one stream: different inits
    with torch.no_grad():
        cells = torch.stack([m(slices) for m in members]).mean(0)
        assert torch.allclose(ensemble(slices), cells)
        logits = torch.stack([m.presence_logits(slices) for m in members]).mean(0)
        assert torch.allclose(ensemble.presence_logits(slices), logits)
    maps = torch.stack([cam_maps(m, slices) for m in members]).mean(0)
    assert torch.allclose(cam_maps(ensemble, slices), normalise_maps(maps.unsqueeze(1))[:, 0], atol=1e-6)
    assert ensemble.pooling == "mean" and ensemble.coord_channels is True
    assert DetectorEncoder(ensemble, 4)(slices).shape == (3, 16, 4, 4)  # the first member's trunk
    with pytest.raises(ValueError, match="at least 2"):
        DetectorEnsemble(1)
