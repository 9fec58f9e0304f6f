"""benchmarks/cohort.py: patient folds never split a patient, per-patient Dice, bootstrap intervals, the report."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("cohort.py")


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


def test_fold_rows_give_each_side_its_slices_and_each_val_test_slice_its_patient(bench):
    patients = ["a", "a", "b", "c", "c", "d"]
    (train, val, test), pats = bench.fold_rows(patients, {"train": ["a"], "val": ["b", "c"], "test": ["d"]})
    assert train.tolist() == [True, True, False, False, False, False]
    assert val.tolist() == [False, False, True, True, True, False] and test.tolist() == [False] * 5 + [True]
    assert pats == {"val": ["b", "c", "c"], "test": ["d"]}  # one entry per row, in row order (per-patient Dice)


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
    assert "| grid=8 | 0.500 |" in text and "fold 0:" in text and "overridden" not in text
    result["meta"]["overrides"] = {"scoring#method": "mil"}
    assert "Bundle settings overridden: {'scoring#method': 'mil'}." in bench.markdown(result)


def test_set_overrides_the_bundles_config_as_medwss_train_does(bench, tmp_path):
    parser = bench.task_parser("prostate", tmp_path, bench.parse_overrides(["scoring#method=mil", "seed=3"]))
    assert parser["scoring"]["method"] == "mil" and parser["seed"] == 3 and parser["scoring"]["gate"] is True
    assert bench.task_parser("prostate", tmp_path)["scoring"]["method"] == "cam"


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


def _refine_toy(n_per_patient: int = 4, size: int = 32):
    """Six patients of slices with a bright square; the 'agent' marks an 8-pixel-aligned block around it."""
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(0)
    patients = [f"p{i}" for i in range(6) for _ in range(n_per_patient)]
    images = 0.2 + 0.05 * torch.randn(len(patients), 1, size, size, generator=g)
    masks = torch.zeros(len(patients), 1, size, size, dtype=torch.bool)
    blocks = torch.zeros(len(patients), size, size, dtype=torch.bool)
    for i in range(len(patients)):
        y, x = torch.randint(0, size - 10, (2,), generator=g).tolist()
        masks[i, 0, y : y + 10, x : x + 10] = True
        blocks[i, y // 8 * 8 : (y + 10 + 7) // 8 * 8, x // 8 * 8 : (x + 10 + 7) // 8 * 8] = True
    images[masks] += 0.6
    return SimpleNamespace(images=images, masks=masks), patients, blocks


def test_refined_rlsp_choices_come_from_validation_only(bench):
    torch.set_num_threads(1)
    data, patients, blocks = _refine_toy()
    folds = {"train": ["p0", "p1", "p2"], "val": ["p3"], "test": ["p4", "p5"]}
    rows = tuple(bench.rows_of(patients, folds[k]) for k in ("train", "val", "test"))
    pats = {k: [p for p in patients if p in folds[k]] for k in ("val", "test")}
    gate = torch.linspace(0, 1, len(patients))
    calls = []

    def agent(r):
        calls.append(r)
        return blocks[r]

    res = bench.refine_rlsp(data, None, gate, agent, rows, pats, epochs=2, every=1)
    assert torch.equal(calls[0], rows[0])  # the refiner learns the agent's masks of the training patients
    assert set(res["test_dice"]) == {"p4", "p5"}
    assert res["chosen"]["epochs"] in (1, 2) and set(res["val"]["refined_per_epoch"]) == {1, 2}
    assert res["val"]["refined"] == max(res["val"]["refined_per_epoch"].values())
    # Every candidate's Dice per patient is kept (for one setting chosen on all folds' validation patients), among
    # them masks only on the slices the agent marked; the chosen one's test Dice is the row's.
    cands = {(c["epochs"], c["threshold"], c["gate"], c["largest_component"]): c for c in res["candidates"]}
    assert len(cands) == 2 * len(bench.REFINE_THRESHOLDS) * (len(bench.GATES) + 1) * 2
    assert {c["gate"] for c in res["candidates"]} == {*bench.GATES, "rlsp"}
    chosen = cands[tuple(res["chosen"][k] for k in ("epochs", "threshold", "gate", "largest_component"))]
    assert chosen["test"] == res["test_dice"] and set(chosen["val"]) == {"p3"}
    # Changing the test patients' masks changes their scores, never what was chosen.
    flipped = type(data)(images=data.images, masks=data.masks.clone())
    flipped.masks[rows[2]] = ~flipped.masks[rows[2]]
    again = bench.refine_rlsp(flipped, None, gate, agent, rows, pats, epochs=2, every=1)
    assert again["chosen"] == res["chosen"] and again["val"] == res["val"]
    assert again["test_dice"] != res["test_dice"]


def test_refined_masks_gate_and_region_and_area(bench):
    prob = torch.tensor([[[0.9, 0.4]], [[0.9, 0.9]]])
    region = torch.tensor([[[True, True]], [[False, True]]])
    px = bench.refined_masks(prob, 0.5, torch.tensor([0.8, 0.2]), 0.5, region)
    assert px.tolist() == [[[True, False]], [[False, False]]]
    agents = bench.refined_masks(prob, 0.5, torch.tensor([0.8, 0.2]), "rlsp", None, torch.tensor([False, True]))
    assert agents.tolist() == [[[False, False]], [[True, True]]]  # the slices the agent marked, whatever the gate
    area = bench.mask_area(px, torch.ones_like(px))
    assert area == pytest.approx({"pixels_per_slice": 0.5, "vs_reference": 0.25})


def test_refinement_report(bench):
    refinement = {"val": {"rlsp": 0.4, "refined": 0.5, "refined_per_epoch": {"20": 0.45, "40": 0.5}},
                  "chosen": {"epochs": 40, "threshold": 0.5, "gate": 0.3, "largest_component": True,
                             "trained_epochs": 40},
                  "area_test": {m: {"pixels_per_slice": 100.0, "vs_reference": 1.0}
                                for m in ("rlsp", "refined", "reference")},
                  "timing": {"train_s": 12.0, "select_s": 1.0, "slices": {"train": 10, "val": 3, "test": 4}}}
    folds = [{"fold": 0, "dice": {"rlsp": {"a": 0.6}, "rlsp_refined": {"a": 0.7}}, "refinement": refinement},
             {"fold": 1, "dice": {"rlsp": {"b": 0.4}, "rlsp_refined": {"b": 0.3}},
              "refinement": dict(refinement, val={**refinement["val"], "refined": 0.3})}]
    result = {"tasks": {"prostate": {"folds": folds}},
              "meta": {"git": {"commit": "abc", "dirty": False}, "torch": "2", "cpu_count": 2, "load": [1.0, 1.0],
                       "n_val": 1, "refine_epochs": 40, "refine_every": 20}}
    text = bench.refinement_markdown(result)
    assert "| 0 | 0.400 | 0.500 | 0.600 | 0.700 | 40 / 0.5 / 0.3 / True |" in text
    assert "validation patients of 1 of 2 folds" in text
    assert "| RLSP refined (UNet trained on RLSP's masks of the training patients) | 0.500 |" in text


def test_largest_component_keeps_each_patients_largest_3d_blob(bench):
    pred = torch.zeros(7, 8, 8, dtype=torch.bool)
    pred[0:3, 1:4, 1:4] = True  # patient a: the gland over three slices
    pred[3, 6, 6] = True  # patient a: a stray patch on its last slice, apart from the gland
    pred[4:7, 0, 0] = True  # patient b: its only blob, smaller than a's: kept (components are per patient)
    patients = ["a"] * 4 + ["b"] * 3
    out = bench.largest_component(pred, patients)
    assert torch.equal(out[:3], pred[:3]) and not out[3].any()
    assert torch.equal(out[4:], pred[4:])
    with pytest.raises(ValueError, match="not consecutive"):
        bench.largest_component(pred, ["a", "b", "a", "b", "a", "b", "a"])


def test_top_k_per_slice_takes_each_slices_best_legal_patches(bench):
    scores = torch.tensor([[[0.9, 0.1], [0.5, 0.7]], [[0.2, 0.8], [0.6, 0.4]]])
    legal = torch.tensor([[[False, True], [True, True]], [[True, True], [True, True]]])
    out = bench.top_k_per_slice(scores, legal, torch.tensor([2, 0]))
    assert out.tolist() == [[[False, False], [True, True]], [[False, False], [False, False]]]  # 0.9 is not legal
    out = bench.top_k_per_slice(scores, legal, torch.tensor([9, 1]))  # more than there are: every legal patch
    assert torch.equal(out[0], legal[0]) and out[1].tolist() == [[False, True], [False, False]]


def test_detector_training_starts_from_the_seed_whatever_ran_before(bench):
    """The cohort's detectors must not depend on the process's global RNG (three runs once differed by 0.1 Dice)."""
    from types import SimpleNamespace

    from monai.bundle import ConfigParser

    config = {"detector": {
        "network_def": {"_target_": "medwss.detector.network.build_detector", "width": 4, "members": 2},
        "training": {"epochs": 1, "batch_size": 4, "augment": False}}}
    gen = torch.Generator().manual_seed(0)
    data = SimpleNamespace(images=torch.rand(8, 1, 32, 32, generator=gen),
                           presence=torch.tensor([[1.0], [0.0]]).repeat(4, 1))
    weights = []
    for noise in (1, 2):
        torch.manual_seed(noise)  # whatever the process drew before
        torch.rand(noise)
        net = bench.train_detector(ConfigParser(config), data, None, torch.ones(8, dtype=torch.bool), None)
        weights.append(torch.cat([p.detach().flatten() for p in net.parameters()]))
    assert torch.equal(weights[0], weights[1])
    # --seed: another seed trains other detectors (on the same folds)
    net = bench.train_detector(ConfigParser(config), data, None, torch.ones(8, dtype=torch.bool), None, seed=1)
    assert not torch.equal(weights[0], torch.cat([p.detach().flatten() for p in net.parameters()]))


def test_mean_rank_order_keeps_what_the_agents_agree_on(bench):
    # Two agents on a 4-patch board where patch 3 is outside the region (never ranked).
    first = torch.tensor([[0, 1, 2, -1]])
    second = torch.tensor([[1, 2, 0, -1]])
    merged = bench.mean_rank_order([first, second], 4)
    assert merged.tolist() == [[1, 0, 2, -1]]  # mean positions 1, 0.5, 1.5; patch 3 stays last and unranked
    assert torch.equal(bench.mean_rank_order([first], 4), first)  # one agent: its own ranking
