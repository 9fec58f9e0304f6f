"""benchmarks/selfplay.py: its Dice summary, its target verdicts and its speed loop on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch

from tests.agents.conftest import one_torch_thread  # noqa: F401  (autouse fixture, shared)
from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("selfplay.py")  # the script imports its sibling game_speed.py


def patches(*rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


# 2 x 2 grid on 4 x 4 pixels: slice 0 has ROI in the top-left patch, slice 1 has none.
GT = torch.zeros(2, 4, 4, dtype=torch.bool)
GT[0, :2, :2] = True


@pytest.mark.parametrize(
    ("pred", "mean", "roi", "pooled", "empty", "per_slice"),
    [
        (patches([[1, 0], [0, 0]], [[0, 0], [0, 0]]), 1.0, 1.0, 1.0, 0.5, 0.5),  # exact
        (patches([[0, 0], [0, 0]], [[0, 0], [0, 0]]), 0.5, 0.0, 0.0, 1.0, 0.0),  # empty: only the ROI-free slice
        (patches([[1, 1], [0, 0]], [[0, 0], [0, 0]]), 5 / 6, 2 / 3, 2 / 3, 0.5, 1.0),  # one wrong patch
        (patches([[1, 0], [0, 0]], [[0, 1], [0, 0]]), 0.5, 1.0, 2 / 3, 0.0, 1.0),  # a patch on the empty slice
    ],
)
def test_mask_scores(bench, pred, mean, roi, pooled, empty, per_slice) -> None:
    s = bench.mask_scores(pred, GT)
    assert (s["dice_mean"], s["dice_roi_slices"], s["dice_pooled"]) == pytest.approx((mean, roi, pooled))
    assert (s["empty_predictions"], s["patches_per_slice"]) == pytest.approx((empty, per_slice))


def test_mask_scores_without_roi_slices(bench) -> None:
    s = bench.mask_scores(patches([[0, 0], [0, 0]]), torch.zeros(1, 4, 4, dtype=torch.bool))
    assert s["dice_mean"] == 1.0 and s["dice_pooled"] == 1.0 and math.isnan(s["dice_roi_slices"])


def dice(value: float) -> dict:
    return {"dice_mean": value, "dice_pooled": value}


@pytest.mark.parametrize(
    ("engine", "stage_s", "agent", "verdicts"),
    [
        (150_000.0, 300.0, 0.9, [True, True, True, True]),
        (60_000.0, 2400.0, 0.5, [False, False, False, False]),
        (100_000.0, 1799.0, 0.6, [True, True, False, False]),  # a tie with the baseline is not a win
    ],
)
def test_targets(bench, engine, stage_s, agent, verdicts) -> None:
    result = {
        "game_speed": [{"name": "engine", "batch": 64, "threads": 1, "steps_per_s": engine},
                       {"name": "engine", "batch": 64, "threads": 2, "steps_per_s": engine / 2},
                       {"name": "pettingzoo", "batch": 1, "threads": 1, "steps_per_s": 1e6}],
        "bundles": {"prostate": {"stage": {"wall_seconds": stage_s, "iterations": 120, "num_threads": 1},
                                 "dice": {"held_out": True, "scores": {"agent": dice(agent),
                                                                       "threshold_0.8": dice(0.6)}}}},
        "synthetic": {"references": {"threshold_0.8": dice(0.6)},
                      "sampling": {"prioritised": {"median": agent, "seeds": [0, 1, 2]}}},
    }  # fmt: skip
    rows = bench.targets(result)
    assert [r["met"] for r in rows] == verdicts
    assert rows[0]["by"] == pytest.approx(engine / 100_000) and rows[2]["by"] == pytest.approx(agent - 0.6)


def test_game_speed_rows(bench) -> None:
    rows = bench.game_speed([1, 3], [1], repeats=1, env_games=1, min_seconds=0.0)
    assert [(r["name"], r["batch"], r["threads"]) for r in rows] == [("engine", 1, 1), ("engine", 3, 1),
                                                                    ("pettingzoo", 1, 1)]  # fmt: skip
    assert all(r["steps_per_s"] > 0 and len(r["runs"]) == 1 for r in rows)


def test_sampling_summary(bench) -> None:
    runs = [{"sampling": "prioritised", "seed": s, "dice_mean": d} for s, d in ((0, 0.9), (1, 0.7), (2, 0.8))]
    runs.append({"sampling": "vanilla", "seed": 0, "dice_mean": 0.5})
    summary = bench.sampling_summary(runs, threshold=0.75)
    assert list(summary) == ["prioritised", "vanilla"]
    assert summary["prioritised"] | {"dice": None} == {"seeds": [0, 1, 2], "dice": None, "median": 0.8, "min": 0.7,
                                                      "max": 0.9, "beats_threshold": 2}  # fmt: skip
