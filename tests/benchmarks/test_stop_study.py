"""benchmarks/stop_study.py: one game played to the end of the board gives the agent's ranking, and cutting it at
the stopping rule's count gives exactly the mask the agent takes alone; the cuts and the smoothing along slices."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.encoders import PatchStatsEncoder
from medwss.agents.inputs import observation_base
from medwss.agents.policy import AgentPolicy
from medwss.game.rules import GameRules
from medwss.selfplay.rollout import play_alone
from tests.benchmarks import load_benchmark

G = 4


@pytest.fixture(scope="module")
def study():
    return load_benchmark("stop_study.py")


@pytest.mark.parametrize("quantile", [0.3, 0.5, 0.8])
def test_the_cut_ranking_is_the_agents_own_mask(study, quantile):
    torch.manual_seed(0)
    images = torch.rand(10, 1, 16, 16)
    base = observation_base(images, "features", G, encoder=PatchStatsEncoder(G), pixels_per_patch=2)
    policy = AgentPolicy("features", G, base.shape[1], channels=8, num_res_units=1, pixels_per_patch=2,
                         termination_prob=0.15, termination_floor=0.0).eval()  # fmt: skip
    region = torch.rand(10, G, G) < 0.8
    scores = torch.rand(10, G, G)
    rules = GameRules(grid_size=G)
    order, p_stop = study.pick_order(policy, base, scores, region, rules, batch_size=4)
    # Every legal patch once, in some order, then -1: the whole board was played.
    assert torch.equal((order >= 0).sum(1), region.flatten(1).sum(1))
    counts = study.quantile_counts(p_stop, order, quantile)
    alone = play_alone(policy, None, scores, region, rules, base=base, stopping="quantile", stop_quantile=quantile)
    assert torch.equal(study.cut(order, counts, G), alone)
    assert 0 < int(counts.sum()) < int(region.sum())  # the test stops somewhere in between, not at an edge


def test_cut_takes_the_first_picks_and_skips_empty_steps(study):
    order = torch.tensor([[5, 2, 7, -1], [3, -1, -1, -1]])
    taken = study.cut(order, torch.tensor([2, 4]), 3)
    assert taken.flatten(1).nonzero().tolist() == [[0, 2], [0, 5], [1, 3]]


def test_counts_are_smoothed_within_each_patient_only(study):
    counts = torch.tensor([0, 10, 2, 12, 11, 50, 50, 50])
    patients = ["a"] * 5 + ["b"] * 3
    smoothed = study.smooth_along_patient(counts, patients, 3)
    assert smoothed.tolist() == [0, 2, 10, 11, 11, 50, 50, 50]
    assert torch.equal(study.smooth_along_patient(counts, patients, 1), counts)


def test_ranking_puts_illegal_patches_last_as_empty_steps(study):
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    legal = torch.tensor([[True, False, True, True]])
    assert study.ranking(scores, legal).tolist() == [[3, 2, 0, -1]]


def test_the_bundles_volume_stop_is_read_from_its_inference_config(study):
    from medwss.inference.volume_stop import VolumeStop
    from tests.benchmarks import BENCHMARKS

    quantile, stop = study.bundle_volume_stop(BENCHMARKS.parent / "bundles" / "prostate")
    assert quantile == 0.8 and stop == VolumeStop(count_width=5, gate=0.3, one_run=True)
    assert stop in study.VOLUME_STOPS  # the study's picked row may find the shipped setting
