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
