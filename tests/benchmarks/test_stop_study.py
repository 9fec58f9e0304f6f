"""benchmarks/stop_study.py: the cuts, the rankings and the smoothing along slices. That the agent's ranking cut at
the stopping rule's count is exactly its own mask is tested with the library: tests/inference/test_volume_stop.py."""

from __future__ import annotations

import pytest
import torch

from tests.benchmarks import load_benchmark

G = 4


@pytest.fixture(scope="module")
def study():
    return load_benchmark("stop_study.py")


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


def test_threshold_counts_stop_at_the_first_pick_below_the_level(study):
    scores = torch.tensor([[0.9, 0.2, 0.6, 0.4], [0.1, 0.1, 0.1, 0.1]])
    order = torch.tensor([[0, 2, 3, 1], [2, 0, -1, -1]])
    assert study.threshold_counts(order, scores, 0.5).tolist() == [2, 0]
    assert study.threshold_counts(order, scores, 0.3).tolist() == [3, 0]
    assert study.threshold_counts(order, scores, 0.05).tolist() == [4, 2]  # the board's end stops the second


def _threshold_fold(solo_counts=None):
    """Two patients (validation, test) of 3 slices each; the ROI is exactly the patches scoring >= 0.5."""
    torch.manual_seed(0)
    scores = torch.rand(6, G, G) * 0.4
    scores[1:3, 1, 1:3] = 0.8
    scores[4:6, 2, 0:2] = 0.7
    truth = (scores >= 0.5).repeat_interleave(2, 1).repeat_interleave(2, 2)
    legal = torch.ones(6, G, G, dtype=torch.bool)
    order = study_ranking(scores.flatten(1), legal.flatten(1))
    return {"grid": G, "order": order, "p_stop": torch.zeros(6, G * G), "gate": torch.ones(6), "legal": legal,
            "scores": scores, "region": None, "truth": truth, "patients": ["v"] * 3 + ["t"] * 3,
            "is_test": torch.tensor([False] * 3 + [True] * 3), "solo_counts": solo_counts, "stop_quantile": 0.5,
            "prior": None, "extra_scores": {}, "stopping": "threshold", "roi_threshold": 0.5}


def study_ranking(scores, legal):
    return torch.where(legal, scores, -torch.inf).argsort(dim=1, descending=True, stable=True)


def test_threshold_study_finds_an_roi_that_the_score_draws(study):
    res = study.analyse_threshold(_threshold_fold(torch.tensor([0, 2, 2])))
    assert res["dice"]["stop: the game's ROI threshold (level 1)"] == {"t": 1.0}
    assert res["dice"]["oracle count: agent a (RLSP)"] == {"t": 1.0}
    assert res["dice"]["stop: threshold level, picked"] == {"t": 1.0}
    assert res["fixed_volume"]["level 0.5, width 1"]["test"]["t"] < 1.0  # half the threshold takes background too


def test_threshold_study_refuses_a_cut_that_is_not_the_played_game(study):
    with pytest.raises(ValueError, match="differs from the played games on 1 test slices"):
        study.analyse_threshold(_threshold_fold(torch.tensor([0, 2, 1])))


def test_hysteresis_takes_a_lower_pick_only_beside_a_taken_patch(study):
    # 3 x 3 board: picks 4 (centre, 0.9), 5 (right of it, 0.4), 0 (corner, 0.4)
    scores = torch.tensor([[0.4, 0.0, 0.0, 0.0, 0.9, 0.4, 0.0, 0.0, 0.0]] * 2)
    order = torch.tensor([[4, 5, 0, 1, 2, 3, 6, 7, 8], [4, 0, 5, 1, 2, 3, 6, 7, 8]])
    assert study.hysteresis_counts(order, scores, 3, 0.5, 0.3).tolist() == [2, 1]  # the corner touches nothing
    assert study.hysteresis_counts(order, scores, 3, 0.5, 0.5).tolist() == [1, 1]  # low = high: the plain rule
