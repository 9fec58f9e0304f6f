"""The multi-class step: which games are played, how their masks merge, and the one inferer's methods with it."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.policy import AgentPolicy
from medwss.detector.network import build_detector
from medwss.game.rules import GameRules
from medwss.inference.inferer import SelfPlayInferer
from medwss.inference.multiclass import (
    class_games,
    class_scores,
    gate,
    merge_class_masks,
    merge_games,
)

T, F = True, False
MERGES = [
    # name, masks (M, 1, 3), scores (M, 1, 3), labels (M,), expected (1, 3)
    ("disjoint", [[[T, F, F]], [[F, F, T]]], [[[0.9, 0.9, 0.9]], [[0.2, 0.2, 0.2]]], [3, 5], [[3, 0, 5]]),
    ("overlap: higher score wins", [[[T, T, F]], [[F, T, T]]], [[[0.6, 0.6, 0.6]], [[0.5, 0.7, 0.5]]], [2, 4],
     [[2, 4, 4]]),
    ("tie: lower label wins whatever the order", [[[T, T, F]], [[T, T, F]]], [[[0.5, 0.5, 0]], [[0.5, 0.5, 0]]],
     [7, 1], [[1, 1, 0]]),
    ("a score outside the mask claims nothing", [[[F, F, F]], [[F, T, F]]], [[[1.0, 1.0, 1.0]], [[0.1, 0.1, 0.1]]],
     [1, 2], [[0, 2, 0]]),
    ("no game: background", [], [], [], [[0, 0, 0]]),
]  # fmt: skip


@pytest.mark.parametrize("name,masks,scores,labels,expected", MERGES, ids=[c[0] for c in MERGES])
def test_merge_class_masks(name, masks, scores, labels, expected):
    m = torch.tensor(masks, dtype=torch.bool).reshape(-1, 1, 3)
    s = torch.tensor(scores, dtype=torch.float32).reshape(-1, 1, 3)
    out = merge_class_masks(m, s, torch.tensor(labels, dtype=torch.int64))
    assert out.dtype == torch.int64
    assert out.tolist() == expected


def test_merge_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="expected masks"):
        merge_class_masks(torch.zeros(2, 3, 3, dtype=torch.bool), torch.zeros(2, 3, 4), torch.tensor([1, 2]))


def test_one_game_per_present_class_image_major_and_merge_back_per_image():
    present = torch.tensor([[F, T, T], [F, F, F], [T, F, F]])
    probs = torch.arange(3 * 3 * 2 * 2, dtype=torch.float32).reshape(3, 3, 2, 2)
    trunk = torch.ones(3, 5, 2, 2)
    games = class_games(present, probs, trunk)
    assert games.image_index.tolist() == [0, 0, 2] and games.class_index.tolist() == [1, 2, 0]
    torch.testing.assert_close(games.scores[1], probs[0, 2])
    assert games.features.shape == (3, 6, 2, 2)
    torch.testing.assert_close(games.features[:, -1], games.scores)  # the class cue is the last plane
    masks = torch.ones(3, 2, 2, dtype=torch.bool)
    labels = merge_games(games, masks, games.scores, num_images=3)
    assert [labels[n].unique().tolist() for n in range(3)] == [[3], [0], [1]]


def test_gate_keeps_classes_at_or_above_the_threshold():
    assert gate(torch.tensor([[0.5, 0.49, 0.9]]), 0.5).tolist() == [[T, F, T]]


def PhotoInferer(detector, rules, method="rlsp", **options):  # noqa: N802 (the inferer photo bundles build)
    return SelfPlayInferer(detector, rules, method, region="none", multiclass=True, **options)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    detector = build_detector(in_channels=3, num_classes=3, width=4, coord_channels=False).eval()
    policy = AgentPolicy("features", 4, in_channels=2 * 4 + 1, channels=4)
    return detector, policy, GameRules(grid_size=4), torch.randn(2, 3, 32, 32)


def test_class_scores_shapes_and_one_pass_equals_per_class_scoring(tiny):
    from medwss.detector.scoring import score_patches

    detector, _, rules, images = tiny
    image_probs, patch_probs = class_scores(detector, images, rules.grid_size)
    assert image_probs.shape == (2, 3) and patch_probs.shape == (2, 3, 4, 4)
    torch.testing.assert_close(patch_probs[:, 2], score_patches(detector, images, 4, class_index=2))


@pytest.mark.parametrize("method", ["rlsp", "single-agent", "cam"])
def test_inferer_labels_only_the_classes_given(tiny, method):
    detector, policy, rules, images = tiny
    inferer = PhotoInferer(detector, rules, method=method, threshold=0.0, cam_threshold=0.0)
    present = torch.tensor([[F, T, F], [F, F, F]])
    out = inferer(images, policy, present=present)
    assert out.shape == (2, 1, 32, 32) and out.dtype == torch.uint8
    assert set(out[0].unique().tolist()) <= {0, 2} and out[1].unique().tolist() == [0]
    if method != "rlsp":  # threshold 0 takes every patch / pixel: the only class claims the whole image
        assert out[0].unique().tolist() == [2]


def test_inferer_gates_by_the_detector_and_rejects_a_pixels_policy(tiny):
    detector, _, rules, images = tiny
    nothing = PhotoInferer(detector, rules, method="single-agent", gate_threshold=1.01, threshold=0.0)
    assert nothing(images).unique().tolist() == [0]
    with pytest.raises(ValueError, match="features"):
        PhotoInferer(detector, rules, gate_threshold=0.0)(images, AgentPolicy("pixels", 4, in_channels=3))
    with pytest.raises(ValueError, match="method"):
        PhotoInferer(detector, rules, method="oracle")


def test_inferer_stops_the_agent_by_its_stopping_rule(tiny):
    from medwss.detector.features import DetectorEncoder
    from medwss.selfplay.rollout import play_alone

    detector, policy, rules, images = tiny
    present = torch.tensor([[T, T, F], [F, F, T]])
    games = class_games(present, class_scores(detector, images, rules.grid_size)[1],
                        DetectorEncoder(detector, rules.grid_size)(images))  # fmt: skip
    taken = {}
    for stopping in ("step", "median"):
        inferer = PhotoInferer(detector, rules, stopping=stopping)
        taken[stopping] = inferer.play(None, games.scores, None, policy, lambda agent: games.features)
        expected = play_alone(policy, None, games.scores, None, rules, base=games.features, stopping=stopping)
        assert torch.equal(taken[stopping], expected)
    # an untrained agent (P(terminate) ~0.05 per step) never passes 0.5 at one step, but its median stop comes early
    assert taken["median"].sum() < taken["step"].sum()
    # the "quantile" rule: the inferer passes its stop_quantile on; later quantiles take at least as many patches
    later = PhotoInferer(detector, rules, stopping="quantile", stop_quantile=0.8)
    late = later.play(None, games.scores, None, policy, lambda agent: games.features)
    assert torch.equal(late, play_alone(policy, None, games.scores, None, rules, base=games.features,
                                        stopping="quantile", stop_quantile=0.8))
    assert late.sum() >= taken["median"].sum()
    with pytest.raises(ValueError, match="stopping"):
        PhotoInferer(detector, rules, stopping="never")
    with pytest.raises(ValueError, match="stop_quantile"):
        PhotoInferer(detector, rules, stopping="quantile", stop_quantile=0.0)


def test_centre_prior_is_symmetric_and_highest_in_the_middle():
    from medwss.inference.multiclass import centre_prior, named_prior

    prior = centre_prior(4)
    assert prior.shape == (4, 4) and float(prior.max()) <= 1.0
    torch.testing.assert_close(prior, prior.flip(0))
    torch.testing.assert_close(prior, prior.T)
    assert float(prior[1:3, 1:3].min()) > float(prior[0].max())  # the central patches above every border patch
    assert named_prior("none", 4) is None
    with pytest.raises(ValueError, match="position_prior"):
        named_prior("corner", 4)


def test_inferer_plays_on_scores_times_the_position_prior(tiny):
    from medwss.inference.multiclass import centre_prior

    detector, _, rules, images = tiny
    present = torch.tensor([[T, F, F], [F, F, F]])
    scores = class_scores(detector, images, rules.grid_size)[1][0, 0] * centre_prior(4)
    threshold = float(scores.flatten().sort().values[8])  # the score rule then takes the top half of the patches
    out = PhotoInferer(detector, rules, "single-agent", threshold=threshold, position_prior="centre").class_labels(
        images, None, present
    )
    expected = (scores >= threshold).repeat_interleave(8, 0).repeat_interleave(8, 1)
    assert torch.equal(out[0] == 1, expected) and out[1].unique().tolist() == [0]
    plain = PhotoInferer(detector, rules, "single-agent", threshold=threshold).class_labels(images, None, present)
    assert not torch.equal(plain, out)  # without the prior the same threshold takes other patches


def test_a_photo_is_a_one_slice_volume_of_the_same_inferer(tiny):
    detector, policy, rules, images = tiny
    inferer = PhotoInferer(detector, rules, gate_threshold=0.0)
    photos = inferer(images, policy)
    volume = inferer(images[:1].permute(1, 2, 3, 0)[None], policy)  # (1, C, H, W, Z=1)
    assert torch.equal(volume[0, ..., 0], photos[0])
    assert torch.equal(photos[:, 0].long(), inferer.class_labels(images, policy))
