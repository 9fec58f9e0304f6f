"""benchmarks/smooth_study.py: the agent's masks smoothed by every candidate, one picked on validation patients."""

from __future__ import annotations

import pytest
import torch

from medwss.inference.mask_smoothing import MaskSmoothing
from medwss.inference.volume_stop import VolumeStop
from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("smooth_study.py")


def _dump() -> dict:
    """Two patients of 5 slices on a 4 x 4 grid of 32 px (8 px patches): the agent takes the central 2 x 2 cells on
    every slice (P(terminate) jumps at step 4); the reference is a disk of radius 9 px on the middle 3 slices.
    Patient "a" is a validation patient, "b" a test patient."""
    n = 10
    centre = [5, 6, 9, 10]
    order = torch.tensor([centre + [c for c in range(16) if c not in centre]] * n)
    p_stop = torch.zeros(n, 16)
    p_stop[:, 4:] = 1.0
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    disk = (yy - 15.5) ** 2 + (xx - 15.5) ** 2 <= 81
    truth = torch.zeros(n, 32, 32, dtype=torch.bool)
    truth[[1, 2, 3, 6, 7, 8]] = disk
    return {"grid": 4, "order": order, "p_stop": p_stop, "gate": torch.ones(n), "truth": truth, "region": None,
            "patients": ["a"] * 5 + ["b"] * 5, "is_test": torch.tensor([False] * 5 + [True] * 5)}


def test_every_candidate_is_scored_and_the_unsmoothed_one_is_the_agents_mask(bench):
    plain, rounded = MaskSmoothing(), MaskSmoothing(sigma=0.5, sigma_slices=1.0, threshold=0.5)
    out = bench.fold_dice(_dump(), 0.5, VolumeStop(), candidates=[plain, rounded])
    disk = _dump()["truth"][2]
    square = 5 * 16 * 16  # the agent's 16 x 16 px square on 5 slices
    expected = 2 * 3 * int(disk[8:24, 8:24].sum()) / (square + 3 * int(disk.sum()))
    assert out["test"][bench.key(plain)] == {"b": pytest.approx(expected)}
    assert out["val"][bench.key(plain)] == {"a": pytest.approx(expected)}
    # Rounding the square's corners and its square ends along the scan fits the disk better.
    assert out["test"][bench.key(rounded)]["b"] > expected
    assert set(out["box"]) == {bench.key(plain), bench.key(rounded)}


def test_the_pick_reads_validation_dice_only(bench):
    val = {"a": {"p": 0.7, "q": 0.7}, "b": {"p": 0.9, "q": 0.6}, "c": {"p": 0.8, "q": 0.7}}
    assert bench.pick(val) == "b"  # mean 0.75, above a (0.70) and c (0.75, later on the tie)
    assert bench.pick({"x": {"p": 0.5}, "y": {"p": 0.5}}) == "x"


def test_the_gated_box_takes_its_gate_from_validation(bench):
    """The gated box keeps the slices at or above the gate picked on the validation patient: here the gate that
    drops the validation patient's two reference-free end slices (presence 0.2) while its middle slices (0.95) stay."""
    dump = _dump()
    dump["gate"] = torch.tensor([0.2, 0.95, 0.95, 0.95, 0.2] * 2)
    plain = bench.gated_box_dice(dump, MaskSmoothing())["plain"]
    box = bench.central_cells(1, 4)[0].repeat_interleave(8, 0).repeat_interleave(8, 1)
    disk = dump["truth"][2]
    assert plain == {"b": pytest.approx(2 * int((box & disk).sum()) / (int(box.sum()) + int(disk.sum())))}
    smoothed = bench.gated_box_dice(dump, MaskSmoothing(sigma=0.5, threshold=0.5))
    assert smoothed["plain"] == plain and set(smoothed["smoothed"]) == {"b"}


def test_the_mask_volume_is_reported_over_the_reference(bench):
    out = bench.fold_dice(_dump(), 0.5, VolumeStop(), candidates=[MaskSmoothing()])
    disk = _dump()["truth"][2]
    assert out["volume"][bench.key(MaskSmoothing())] == {"b": pytest.approx(5 * 256 / (3 * int(disk.sum())))}
