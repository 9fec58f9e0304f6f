"""The volume stop (``medwss.inference.volume_stop``): the agent's ranking cut at counts agreed along the volume.

Cut at each slice's own quantile count, the ranking is exactly the mask the agent takes alone (so the volume stop
changes the counts, never the picks); the median, the gate and the longest run never mix two patients' slices."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.encoders import PatchStatsEncoder
from medwss.agents.inputs import observation_base
from medwss.agents.policy import AgentPolicy
from medwss.game.rules import GameRules
from medwss.inference.volume_stop import (
    VolumeStop,
    cut_ranking,
    longest_run,
    median_along_slices,
    play_volume_stop,
    quantile_counts,
    threshold_counts,
)
from medwss.selfplay.rollout import agent_ranking, play_alone

G = 4


@pytest.fixture(scope="module")
def game():
    torch.manual_seed(0)
    images = torch.rand(12, 1, 16, 16)
    base = observation_base(images, "features", G, encoder=PatchStatsEncoder(G), pixels_per_patch=2)
    policy = AgentPolicy("features", G, base.shape[1], channels=8, num_res_units=1, pixels_per_patch=2,
                         termination_prob=0.15, termination_floor=0.0).eval()  # fmt: skip
    region = torch.rand(12, G, G) < 0.8
    return policy, base, torch.rand(12, G, G), region, GameRules(grid_size=G)


@pytest.mark.parametrize("quantile", [0.3, 0.6, 0.9])
def test_ranking_cut_at_the_quantile_count_is_the_agents_own_mask(game, quantile):
    policy, base, scores, region, rules = game
    order, p_stop = agent_ranking(policy, base, scores, region, rules, stop_quantile=quantile, batch_size=5)
    counts = quantile_counts(p_stop, order, quantile)
    alone = play_alone(policy, None, scores, region, rules, base=base, stopping="quantile", stop_quantile=quantile)
    assert torch.equal(cut_ranking(order, counts, G), alone)
    assert 0 < int(counts.sum()) < int(region.sum())  # stops somewhere in between, not at an edge
    full, _ = agent_ranking(policy, base, scores, region, rules)
    assert torch.equal((full >= 0).sum(1), region.flatten(1).sum(1))  # every legal patch once: the whole board
    played = order >= 0
    assert torch.equal(order[played], full[played])  # stopping early changes how far, never which picks


def test_an_inactive_volume_stop_is_each_slices_own_stop(game):
    policy, base, scores, region, rules = game
    assert not VolumeStop().active
    patches = play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.6, volume_stop=VolumeStop(),
                               gate=None)  # fmt: skip
    alone = play_alone(policy, None, scores, region, rules, base=base, stopping="quantile", stop_quantile=0.6)
    assert torch.equal(patches, alone)


def test_several_batches_play_as_far_as_the_longest_stop_of_the_volume(game):
    """A median may ask a slice for more patches than its own batch played: the batches are played again to the
    volume's longest stop, so the mask does not depend on the batch size."""
    policy, base, scores, region, rules = game
    stop = VolumeStop(count_width=5)
    one = play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.6, volume_stop=stop, gate=None)
    many = play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.6, volume_stop=stop, gate=None,
                            batch_size=3)  # fmt: skip
    assert torch.equal(one, many)
    order, p_stop = agent_ranking(policy, base, scores, region, rules)
    agreed = median_along_slices(quantile_counts(p_stop, order, 0.6), 5)
    assert torch.equal(one.flatten(1).sum(1), agreed)


@pytest.mark.parametrize("level", [0.5, 1.0, 1.5])
def test_ranking_cut_at_the_threshold_count_is_the_agents_own_mask(game, level):
    """The "threshold" rule at a level is a cut of the same ranking, and a ranking stopped by that rule records
    every pick the cut reads."""
    policy, base, scores, region, rules = game
    rules = GameRules(grid_size=G, roi_threshold=0.4)
    alone = play_alone(policy, None, scores, region, rules, base=base, stopping="threshold", stop_level=level)
    full, _ = agent_ranking(policy, base, scores, region, rules)
    counts = threshold_counts(full, scores.flatten(1), level * 0.4)
    assert torch.equal(cut_ranking(full, counts, G), alone)
    order, _ = agent_ranking(policy, base, scores, region, rules, stop_threshold=level * 0.4, batch_size=5)
    assert torch.equal(threshold_counts(order, scores.flatten(1), level * 0.4), counts)
    assert int((order >= 0).sum()) < int((full >= 0).sum())  # it stopped before the end of the board


def test_a_volume_stop_agrees_the_threshold_rules_counts(game):
    policy, base, scores, region, rules = game
    rules = GameRules(grid_size=G, roi_threshold=0.4)
    stop = VolumeStop(count_width=3)
    one = play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.5, volume_stop=stop, gate=None,
                           stopping="threshold", stop_level=0.8)  # fmt: skip
    many = play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.5, volume_stop=stop, gate=None,
                            stopping="threshold", stop_level=0.8, batch_size=3)  # fmt: skip
    assert torch.equal(one, many)
    full, _ = agent_ranking(policy, base, scores, region, rules)
    agreed = median_along_slices(threshold_counts(full, scores.flatten(1), 0.32), 3)
    assert torch.equal(one, cut_ranking(full, agreed, G))
    median = play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.9, volume_stop=stop, gate=None,
                              stopping="median")  # fmt: skip
    assert torch.equal(median, play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.5,
                                                volume_stop=stop, gate=None))  # "median" is quantile 0.5, as alone
    with pytest.raises(ValueError, match="'quantile' or 'threshold'"):
        play_volume_stop(policy, base, scores, region, rules, stop_quantile=0.5, volume_stop=stop, gate=None,
                         stopping="step")  # fmt: skip


def test_median_along_slices_repeats_the_edge_slices():
    counts = torch.tensor([0, 10, 2, 12, 11])
    assert median_along_slices(counts, 3).tolist() == [0, 2, 10, 11, 11]
    assert median_along_slices(counts, 5).tolist() == [0, 2, 10, 11, 11]
    assert torch.equal(median_along_slices(counts, 1), counts)
    assert median_along_slices(torch.zeros(0, dtype=torch.int64), 3).numel() == 0


def test_longest_run_keeps_the_first_of_equally_long_runs():
    on = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1, 1, 0], dtype=torch.bool)
    assert longest_run(on).nonzero().squeeze(1).tolist() == [3, 4, 5]
    assert not longest_run(torch.zeros(4, dtype=torch.bool)).any()


def test_counts_are_agreed_within_each_volume_behind_the_gate():
    counts = torch.tensor([9, 10, 2, 12, 11, 50, 40, 50])
    gate = torch.tensor([0.9, 0.1, 0.9, 0.9, 0.9, 0.9, 0.9, 0.2])
    groups = ["a"] * 5 + ["b"] * 3
    agreed = VolumeStop(count_width=3).counts(counts, None, groups)
    assert agreed.tolist() == [9, 9, 10, 11, 11, 50, 50, 50]  # patient b's 50s never reach patient a
    gated = VolumeStop(count_width=3, gate=0.3).counts(counts, gate, groups)
    assert gated.tolist() == [9, 0, 10, 11, 11, 50, 50, 0]
    one = VolumeStop(count_width=3, gate=0.3, one_run=True).counts(counts, gate, groups)
    assert one.tolist() == [0, 0, 10, 11, 11, 50, 50, 0]  # a's lone first slice is off the gland's run
    with pytest.raises(ValueError, match="slice gate"):
        VolumeStop(gate=0.3).counts(counts, None, groups)
    with pytest.raises(ValueError, match="2 volume names"):
        VolumeStop(count_width=3).counts(counts, None, ["a", "b"])


@pytest.mark.parametrize("settings, message", [({"count_width": 4}, "odd"), ({"count_width": 0}, "odd"),
                                               ({"gate": 1.0}, "gate"), ({"gate": -0.1}, "gate")])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        VolumeStop(**settings)
