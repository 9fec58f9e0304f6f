"""benchmarks/refine_study.py: one refiner setting chosen on pooled validation Dice, reported on held-out Dice."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def study():
    return load_benchmark("refine_study.py")


def _fold(fold: int, val: dict, test: dict, shift: float) -> dict:
    """A cohort fold with two refiner settings: ``good`` wins on validation by ``shift``, ``bad`` on test."""
    good = {"epochs": 20, "threshold": 0.5, "gate": "rlsp", "largest_component": False}
    bad = {"epochs": 40, "threshold": 0.3, "gate": 0.5, "largest_component": True}
    rows = {r: {p: 0.5 for p in test} for r in ("rlsp", "rlsp_refined", "box_gated", "cam", "box_all")}
    return {"fold": fold, "dice": rows,
            "refinement": {"val": {"rlsp": 0.6}, "chosen": good,
                           "candidates": [{**good, "val": {p: v + shift for p, v in val.items()},
                                           "test": {p: 0.7 for p in test}},
                                          {**bad, "val": val, "test": {p: 0.9 for p in test}}]}}  # fmt: skip


def test_the_setting_is_picked_on_pooled_validation_and_reported_on_test(tmp_path, study, monkeypatch):
    seeds = []
    for s, shift in ((0, 0.1), (1, -0.02)):  # seed 1 prefers `bad` a little, seed 0 prefers `good` a lot
        folds = {f"prostate/{f}": _fold(f, {f"v{f}": 0.5}, {f"t{f}": 0.0, f"u{f}": 0.0}, shift) for f in (0, 1)}
        path = tmp_path / f"seed{s}.json"
        path.write_text(json.dumps(folds))
        seeds.append(path)
    monkeypatch.setattr(study, "RESULTS", tmp_path)
    assert study.main([str(p) for p in seeds] + ["--name", "r"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    best = result["settings"][0]
    assert best["key"] == [20, 0.5, "rlsp", False] and best["val"] == pytest.approx(0.54)
    assert best["test"] == {"seed0": pytest.approx(0.7), "seed1": pytest.approx(0.7)}  # not the test winner
    assert result["rows"]["box_all"] == {"seed0": 0.5, "seed1": 0.5}
    text = (tmp_path / "r.md").read_text()
    row = "| **RLSP refined, one setting: epoch 20, p > 0.5, the agent's slices** | 0.700 | 0.700 | 0.700 | +0.200 |"
    assert row in text


def test_runs_without_refinement_candidates_are_refused(tmp_path, study):
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"prostate/0": {"fold": 0, "dice": {}}}))
    with pytest.raises(SystemExit, match="no refinement candidates"):
        study.main([str(path)])
