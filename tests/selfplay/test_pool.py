"""Opponent sampling distributions (checked statistically) and the snapshot pool."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medwss.selfplay.pool import LEARNER, OpponentPool, sample_opponent_index

DRAWS = 20_000


def truncated_normal_cell_probs(size: int, mean: float, std: float) -> np.ndarray:
    """P(index = i) for x ~ N(mean, std) conditioned on [0, size), floored."""
    cdf = [0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2)))) for x in range(size + 1)]
    cells = np.diff(cdf)
    return cells / cells.sum()


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("size", [7, 20])
def test_prioritised_is_a_truncated_normal_centred_mid_pool(size: int) -> None:
    rng = np.random.default_rng(0)
    draws = sample_opponent_index(size, "prioritised", rng, 0.5, 0.25, size=DRAWS)
    assert draws.dtype == np.int64 and draws.min() >= 0 and draws.max() == size - 1
    probs = truncated_normal_cell_probs(size, 0.5 * size, 0.25 * size)
    idx = np.arange(size)
    mean = float((probs * idx).sum())
    std = float(np.sqrt((probs * (idx - mean) ** 2).sum()))
    assert mean == pytest.approx((size - 1) / 2, abs=1e-9)  # symmetric: the middle of the pool
    assert draws.mean() == pytest.approx(mean, abs=4 * std / math.sqrt(DRAWS))
    assert draws.std() == pytest.approx(std, rel=0.03)
    # chi-square with size - 1 degrees of freedom: mean df, std sqrt(2 df); 5 std is far beyond chance.
    df = size - 1
    assert chi_square(np.bincount(draws, minlength=size), probs) < df + 5 * math.sqrt(2 * df)
    # The shape really is peaked: the middle is drawn more than twice as often as the ends.
    counts = np.bincount(draws, minlength=size)
    assert counts[size // 2] > 2 * max(counts[0], counts[-1])


def test_prioritised_other_centre() -> None:
    draws = sample_opponent_index(40, "prioritised", np.random.default_rng(1), 0.75, 0.1, size=DRAWS)
    probs = truncated_normal_cell_probs(40, 30.0, 4.0)
    assert draws.mean() == pytest.approx(float((probs * np.arange(40)).sum()), abs=0.1)
    keep = probs > 1e-4  # cells the chi-square can judge
    df = int(keep.sum()) - 1
    statistic = chi_square(np.bincount(draws, minlength=40)[keep], probs[keep] / probs[keep].sum())
    assert statistic < df + 5 * math.sqrt(2 * df)


def test_uniform_and_vanilla() -> None:
    size = 12
    draws = sample_opponent_index(size, "uniform", np.random.default_rng(2), size=DRAWS)
    counts = np.bincount(draws, minlength=size)
    assert draws.min() == 0 and draws.max() == size - 1
    assert draws.mean() == pytest.approx((size - 1) / 2, abs=0.1)
    assert draws.std() == pytest.approx(math.sqrt((size**2 - 1) / 12), rel=0.03)
    df = size - 1
    assert chi_square(counts, np.full(size, 1 / size)) < df + 5 * math.sqrt(2 * df)
    vanilla = sample_opponent_index(size, "vanilla", np.random.default_rng(3), size=100)
    assert (vanilla == LEARNER).all()
    assert sample_opponent_index(0, "vanilla", np.random.default_rng(3)) == LEARNER  # needs no pool


def test_single_draws_are_ints_reproducible_and_errors() -> None:
    a = [sample_opponent_index(9, "prioritised", np.random.default_rng(5)) for _ in range(3)]
    assert all(isinstance(i, int) for i in a) and len(set(a)) == 1
    assert sample_opponent_index(1, "prioritised", np.random.default_rng(0)) == 0
    with pytest.raises(ValueError, match="empty"):
        sample_opponent_index(0, "uniform", np.random.default_rng(0))
    with pytest.raises(ValueError):
        sample_opponent_index(5, "league", np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        sample_opponent_index(5, "prioritised", np.random.default_rng(0), std_fraction=0.0)
    with pytest.raises(ValueError, match="hardly overlaps"):
        sample_opponent_index(5, "prioritised", np.random.default_rng(0), mean_fraction=100.0, std_fraction=0.01)


def test_pool_snapshots_are_frozen_copies_with_oldest_dropped() -> None:
    net = torch.nn.Linear(2, 1)
    pool = OpponentPool(max_size=3, snapshot_every=2)
    taken = [pool.maybe_add(net, it) for it in range(1, 9)]
    assert taken == [False, True] * 4 and len(pool) == 3 and pool.iterations == [4, 6, 8]
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not torch.equal(pool.snapshot(-1)["weight"], net.weight)  # a copy, not a view of the learner
    restored = OpponentPool(max_size=1)
    restored.load_state_dict(pool.state_dict())
    assert restored.max_size == 3 and restored.snapshot_every == 2 and restored.iterations == [4, 6, 8]
    assert all(torch.equal(restored.snapshot(i)["bias"], pool.snapshot(i)["bias"]) for i in range(3))
    with pytest.raises(ValueError):
        OpponentPool(max_size=0)
