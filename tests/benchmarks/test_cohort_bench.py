"""benchmarks/cohort.py: patient folds never split a patient, per-patient Dice, bootstrap intervals, the report."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("cohort_benchmark", BENCHMARKS / "cohort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_folds_hold_every_patient_out_once_and_never_split_one(bench):
    patients = [f"p{i:02d}" for i in range(26) for _ in range(3)]  # three slices per patient
    folds = bench.patient_folds(patients, 3, 4)
    tests = [p for f in folds for p in f["test"]]
    assert sorted(tests) == sorted(set(patients))  # each patient is a test patient exactly once
    for f in folds:
        train, val, test = set(f["train"]), set(f["val"]), set(f["test"])
        assert not (train & val or train & test or val & test)
        assert train | val | test == set(patients) and len(val) == 4
        rows = {k: bench.rows_of(patients, f[k]) for k in ("train", "val", "test")}
        assert int(sum(r.long() for r in rows.values()).max()) == 1  # a slice is on exactly one side
    assert folds == bench.patient_folds(patients, 3, 4)  # seeded


def test_folds_refuse_more_folds_than_patients(bench):
    with pytest.raises(ValueError, match="folds"):
        bench.patient_folds(["a", "b"], 3, 0)


def test_dice_per_patient_stacks_each_patients_slices(bench):
    truth = torch.zeros(4, 2, 2, dtype=torch.bool)
    truth[0, 0, 0] = truth[1, 0, 0] = True  # patient a: 2 voxels, over two slices
    pred = torch.zeros_like(truth)
    pred[0, 0, 0] = True  # a: 1 of 2 found -> 2*1/(1+2)
    pred[3, 1, 1] = True  # b: nothing true, one false positive -> 0
    dice = bench.dice_per_patient(pred, truth, ["a", "a", "b", "b"])
    assert dice == pytest.approx({"a": 2 / 3, "b": 0.0})
    assert bench.dice_per_patient(torch.zeros_like(truth), torch.zeros_like(truth), ["c"] * 4) == {"c": 1.0}


def test_bootstrap_interval_contains_the_mean_and_shrinks_to_a_point(bench):
    lo, hi = bench.bootstrap_ci([0.2, 0.4, 0.6, 0.8])
    assert lo < 0.5 < hi
    assert bench.bootstrap_ci([0.3] * 5) == pytest.approx((0.3, 0.3))


def test_summary_and_report_from_fold_results(bench):
    folds = [
        {"fold": 0, "patients": {"train": ["x"], "val": ["y"], "test": ["a"]},
         "dice": {"rlsp": {"a": 0.7}, "score_rule": {"a": 0.6}}, "ablations": {"grid=8": {"a": 0.5}},
         "auc": {"mil": 0.8, "cam": 0.85, "game_score": 0.9, "slice": 0.95},
         "chosen": {"roi_quantile": 0.99, "roi_threshold": 0.1}, "rlsp_patches_per_slice": 5.0,
         "rule_patches_per_slice": 4.0},
        {"fold": 1, "patients": {"train": ["x"], "val": ["y"], "test": ["b"]},
         "dice": {"rlsp": {"b": 0.5}, "score_rule": {"b": 0.4}}, "ablations": {},
         "auc": {"mil": 0.7, "cam": 0.75, "game_score": 0.8, "slice": 0.9},
         "chosen": {"roi_quantile": 0.98, "roi_threshold": 0.05}, "rlsp_patches_per_slice": 6.0,
         "rule_patches_per_slice": 5.0},
    ]
    summary = bench.summarise(folds)
    assert summary["rlsp"]["mean"] == pytest.approx(0.6) and summary["rlsp"]["n"] == 2
    result = {"tasks": {"prostate": {"folds": folds, "summary": summary, "patients": 2, "slices": 2,
                                     "ablations": bench.summarise(folds, "ablations")}},
              "meta": {"git": {"commit": "abc", "dirty": False}, "torch": "2", "cpu_count": 2, "load": [1.0, 1.0],
                       "minutes": 1.0, "folds": 2, "n_val": 1, "iterations": None, "unet_epochs": 0}}
    text = bench.markdown(result)
    assert "| RLSP (agent a alone, as `medwss segment`) | 0.600 |" in text
    assert "| grid=8 | 0.500 |" in text and "fold 0:" in text


def test_borrowed_rows_fill_only_what_a_fold_lacks_and_must_match_its_patients(bench):
    fold = {"fold": 0, "patients": {"test": ["a", "b"]}, "dice": {"rlsp": {"a": 0.5}}, "ablations": {}}
    other = {"fold": 0, "patients": {"test": ["b", "a"]}, "dice": {"rlsp": {"a": 0.4}, "score_rule": {"a": 0.3},
             "supervised_unet": {"a": 0.8}}, "ablations": {"grid=8": {"a": 0.2}}}
    merged = bench.with_borrowed(fold, other, Path("other.json"))
    assert merged["dice"]["rlsp"] == {"a": 0.5} and merged["dice"]["supervised_unet"] == {"a": 0.8}
    assert merged["ablations"] == {"grid=8": {"a": 0.2}}
    assert merged["ablation_baseline"] == {"rlsp": {"a": 0.4}, "score_rule": {"a": 0.3}}
    assert merged["borrowed"] == ["supervised_unet", "ablations"] and "supervised_unet" not in fold["dice"]
    with pytest.raises(ValueError, match="other test patients"):
        bench.with_borrowed(fold, dict(other, patients={"test": ["c"]}), Path("other.json"))


def test_rows_per_source_kind_in_summary_and_report(bench):
    summary = {"rlsp": {"mean": 0.5, "ci95": [0.1, 0.9], "n": 3,
                        "per_patient": {"ircad1": 0.9, "lits1": 0.2, "lits2": 0.4}},
               "organ_prior": {"mean": 0.1, "ci95": [0.0, 0.2], "n": 3,
                               "per_patient": {"ircad1": 0.15, "lits1": 0.05, "lits2": 0.1}}}
    kinds = {"ircad1": "ircadb", "lits1": "lits_slices", "lits2": "lits_slices"}
    by_kind = bench.summarise_by_kind(summary, kinds)
    assert by_kind["ircadb"]["rlsp"] == {"mean": pytest.approx(0.9), "ci95": [pytest.approx(0.9)] * 2, "n": 1}
    assert by_kind["lits_slices"]["rlsp"]["mean"] == pytest.approx(0.3) and by_kind["lits_slices"]["rlsp"]["n"] == 2
    assert by_kind["lits_slices"]["organ_prior"]["mean"] == pytest.approx(0.075)


def test_liver_task_knows_its_patient_kinds(bench):
    from tests.data.test_slice_folder import LITS

    if not (LITS / "slices.csv").is_file():
        pytest.skip("shared data not present")
    kinds = bench.patient_kinds(bench.task_parser("liver_tumour", LITS.parents[1]))
    assert sorted(set(kinds.values())) == ["ircadb", "lits_slices"] and len(kinds) == 16
