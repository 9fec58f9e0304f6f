"""benchmarks/seed_ensemble.py: seeds' masks as `medwss segment` makes them, and their ensembles, from dumps."""

from __future__ import annotations

import pytest
import torch

from medwss.inference.volume_stop import VolumeStop
from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("seed_ensemble.py")


def _dump(order: torch.Tensor, stop_at: int, patients: list[str]) -> dict:
    """One seed's dump of 2 slices on a 2 x 2 grid (8 x 8 px): P(terminate) jumps at step ``stop_at``."""
    n, steps = order.shape
    p_stop = torch.zeros(n, steps)
    p_stop[:, stop_at:] = 1.0
    truth = torch.zeros(n, 8, 8, dtype=torch.bool)
    truth[:, :4, :4] = True  # patch 0
    return {"grid": 2, "order": order, "p_stop": p_stop, "gate": torch.ones(n), "truth": truth, "region": None,
            "patients": patients, "is_test": torch.ones(n, dtype=torch.bool)}


def test_ensembles_rank_by_mean_position_and_cut_at_the_seeds_counts(bench):
    pats = ["a", "a"]
    right = _dump(torch.tensor([[0, 1, 2, 3]] * 2), 1, pats)  # takes patch 0 only: Dice 1
    wrong = _dump(torch.tensor([[1, 0, 2, 3]] * 2), 1, pats)  # takes patch 1 only: Dice 0
    late = _dump(torch.tensor([[0, 2, 1, 3]] * 2), 1, pats)
    out = bench.fold_dice([right, wrong, late], 0.5, VolumeStop())
    assert out["seed0"] == {"a": 1.0} and out["seed1"] == {"a": 0.0}
    # Mean positions: patch 0 -> 1/3, patch 1 -> 5/3: one patch each, patch 0 first; two seeds of three vote for it.
    assert out["mean_count"] == out["median_count"] == out["vote"] == {"a": 1.0}


def test_dumps_of_other_slices_are_refused(bench):
    one = _dump(torch.tensor([[0, 1, 2, 3]]), 1, ["a"])
    other = _dump(torch.tensor([[0, 1, 2, 3]]), 1, ["b"])
    with pytest.raises(SystemExit, match="slices differ"):
        bench.fold_dice([one, other], 1.0, VolumeStop())
