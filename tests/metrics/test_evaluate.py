"""``medwss.metrics.evaluate``: pairing, label rules, grid checks, per-case values and summaries of hand-made masks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medwss import api
from medwss.errors import MedwssError
from medwss.metrics.evaluate import (
    COLUMNS,
    class_rules,
    evaluate_cases,
    match_cases,
    write_report,
)
from tests.data.dataset_fixtures import DIRECTION, ORIGIN, write_nifti

SHAPE = (10, 9, 8)
SPACING = (0.8, 0.6, 2.5)  # a different size per axis: a swapped spacing changes every distance below


def write_mask(path: Path, array: np.ndarray, **geometry) -> Path:
    """A label map on an oblique, flipped, anisotropic grid (non-identity affine)."""
    geometry = {"spacing": SPACING, "origin": ORIGIN, "direction": DIRECTION} | geometry
    return write_nifti(path, np.asarray(array, dtype=np.uint8), **geometry)


def slab(axis: int, start: int, thickness: int) -> np.ndarray:
    """A plate ``thickness`` voxels thick across ``axis``, 2 voxels in from the other faces."""
    mask = np.zeros(SHAPE, dtype=np.uint8)
    index = [slice(2, n - 2) for n in SHAPE]
    index[axis] = slice(start, start + thickness)
    mask[tuple(index)] = 1
    return mask


# (axis, thickness, shift, dice, iou, hd95 / spacing, msd / spacing). Every voxel of a plate 1 or 2 voxels thick is a
# surface voxel. Thickness 2, shift 1: half of each plate's voxels lie on the other plate (distance 0), half one
# spacing away; the 95th percentile is 1 spacing, the mean half of one. Thickness 1, shift 3: all at 3 spacings.
SLABS = [
    (0, 2, 1, 0.5, 1 / 3, 1.0, 0.5),
    (1, 2, 1, 0.5, 1 / 3, 1.0, 0.5),
    (2, 2, 1, 0.5, 1 / 3, 1.0, 0.5),
    (0, 1, 3, 0.0, 0.0, 3.0, 3.0),
    (2, 1, 3, 0.0, 0.0, 3.0, 3.0),
]


@pytest.mark.parametrize(("axis", "thickness", "shift", "dice", "iou", "hd95", "msd"), SLABS)
def test_shifted_plates_measure_in_mm_along_each_axis(tmp_path, axis, thickness, shift, dice, iou, hd95, msd):
    gt = write_mask(tmp_path / "gt" / "c1.nii.gz", slab(axis, 2, thickness))
    pred = write_mask(tmp_path / "pred" / "c1.nii.gz", slab(axis, 2 + shift, thickness))
    report = api.evaluate(pred, gt, tmp_path / "out")
    [row] = report.rows
    assert row["case"] == "c1" and row["class"] == "roi"
    assert row["dice"] == pytest.approx(dice) and row["iou"] == pytest.approx(iou)
    assert row["hd95"] == pytest.approx(hd95 * SPACING[axis], rel=1e-5)
    assert row["msd"] == pytest.approx(msd * SPACING[axis], rel=1e-5)
    assert row["pred_voxels"] == row["gt_voxels"] == int(slab(axis, 2, thickness).sum())


def _three_cases(tmp_path: Path) -> tuple[Path, Path]:
    """a: perfect; b: plates shifted one voxel along x (Dice 1/2, HD95 0.8 mm); c: empty prediction (HD95 NaN)."""
    plate = slab(0, 2, 2)
    for case, pred in (("a", plate), ("b", slab(0, 3, 2)), ("c", np.zeros(SHAPE))):
        write_mask(tmp_path / "gt" / f"{case}.nii.gz", plate)
        write_mask(tmp_path / "pred" / f"{case}.nii.gz", pred)
    return tmp_path / "pred", tmp_path / "gt"


def test_summary_means_skip_nan_and_count(tmp_path):
    pred, gt = _three_cases(tmp_path)
    steps = []
    report = evaluate_cases(match_cases(pred, gt), class_rules(), progress=steps.append)
    assert steps == [1, 1, 1] and report.num_cases == 3
    assert [r["case"] for r in report.rows] == ["a", "b", "c"]
    assert [r["dice"] for r in report.rows] == pytest.approx([1.0, 0.5, 0.0])
    assert math.isnan(report.rows[2]["hd95"]) and report.rows[2]["pred_voxels"] == 0
    stats = report.summary["roi"]
    assert stats["dice"]["mean"] == pytest.approx(0.5)  # mDSC
    assert stats["iou"]["mean"] == pytest.approx((1 + 1 / 3 + 0) / 3)  # mIoU
    assert stats["hd95"]["mean"] == pytest.approx((0.0 + 0.8) / 2, rel=1e-5)
    assert (stats["hd95"]["count"], stats["hd95"]["skipped"]) == (2, 1)
    assert stats["msd"]["mean"] == pytest.approx((0.0 + 0.4) / 2, rel=1e-5)
    assert set(stats) == {"dice", "iou", "hd95", "msd"}


def test_written_csv_and_json(tmp_path):
    pred, gt = _three_cases(tmp_path)
    report = write_report(evaluate_cases(match_cases(pred, gt), class_rules()), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cases.csv", "summary.json"]  # no temp left
    with report.cases_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    assert [(r["case"], r["class"], float(r["dice"])) for r in rows] == [("a", "roi", 1.0), ("b", "roi", 0.5),
                                                                           ("c", "roi", 0.0)]
    assert rows[2]["hd95"] == "nan" and rows[1]["pred"] == str(pred / "b.nii.gz")
    assert int(rows[1]["gt_voxels"]) == int(slab(0, 2, 2).sum())
    summary = json.loads(report.summary_json.read_text())  # strict JSON: NaN would not parse in other readers
    assert summary["cases"] == 3
    assert summary["mDSC"]["roi"] == pytest.approx(0.5)
    assert summary["mIoU"]["roi"] == pytest.approx(4 / 9)
    assert summary["classes"] == {"roi": {"gt_rule": "> 0", "pred_rule": "> 0"}}
    assert summary["metrics"]["roi"]["hd95"]["count"] == 2
    assert summary["unmatched_predictions"] == summary["unmatched_ground_truths"] == []
    assert "NaN" not in report.summary_json.read_text()


def test_nan_summary_is_null_in_json(tmp_path):
    gt = write_mask(tmp_path / "gt.nii.gz", slab(0, 2, 2))
    pred = write_mask(tmp_path / "p.nii.gz", np.zeros(SHAPE))
    summary = json.loads(api.evaluate(pred, gt, tmp_path / "o").summary_json.read_text())
    assert summary["metrics"]["roi"]["hd95"] == {"mean": None, "median": None, "std": None, "count": 0, "skipped": 1}


def test_folders_pair_by_case_id_and_report_the_rest(tmp_path):
    plate = slab(2, 2, 2)
    for case in ("a", "b", "only_pred"):
        write_mask(tmp_path / "pred" / f"{case}.nii.gz", plate)
    for case in ("a", "b", "only_gt"):
        write_mask(tmp_path / "gt" / f"{case}.nii", plate)  # another suffix: the case id is what pairs them
    (tmp_path / "pred" / "notes.txt").write_text("not a mask")
    (tmp_path / "pred" / "sub").mkdir()
    matching = match_cases(tmp_path / "pred", tmp_path / "gt")
    assert [(p.case, p.pred.name, p.gt.name) for p in matching.pairs] == [("a", "a.nii.gz", "a.nii"),
                                                                          ("b", "b.nii.gz", "b.nii")]
    assert matching.unmatched_predictions == [tmp_path / "pred" / "only_pred.nii.gz"]
    assert matching.unmatched_ground_truths == [tmp_path / "gt" / "only_gt.nii"]
    # One prediction file against a folder: its case only, the other ground truths are not "unmatched".
    one = match_cases(tmp_path / "pred" / "b.nii.gz", tmp_path / "gt")
    assert [p.gt.name for p in one.pairs] == ["b.nii"] and one.unmatched_ground_truths == []


def test_gt_pattern_for_one_folder_per_case(tmp_path):
    for case in ("001", "020"):
        write_mask(tmp_path / "data" / case / "gland_reader1.nii.gz", slab(1, 2, 2))
        write_mask(tmp_path / "data" / case / "gland_reader2.nii.gz", slab(1, 3, 2))
        write_mask(tmp_path / "pred" / f"{case}.nii.gz", slab(1, 3, 2))
    matching = match_cases(tmp_path / "pred", tmp_path / "data", "{case}/gland_reader1.nii.gz")
    assert [(p.case, p.gt) for p in matching.pairs] == [
        (c, tmp_path / "data" / c / "gland_reader1.nii.gz") for c in ("001", "020")
    ]
    report = api.evaluate(tmp_path / "pred", tmp_path / "data", gt_pattern="{case}/gland_reader1.nii.gz")
    assert report.cases_csv == tmp_path / "pred" / "eval" / "cases.csv"  # default: eval/ in the prediction folder
    assert report.summary["roi"]["dice"]["mean"] == pytest.approx(0.5)


def test_gt_pattern_wildcard_scores_the_union_of_a_cases_files(tmp_path):
    # Two tumour masks in one case (as IRCADb stores one file per tumour): the ground truth is their union.
    for case in ("p1", "p2"):
        write_mask(tmp_path / "data" / case / "tumour_1.nii.gz", slab(2, 1, 2))
        write_mask(tmp_path / "data" / case / "tumour_2.nii.gz", slab(2, 5, 2))
        write_mask(tmp_path / "data" / case / "liver.nii.gz", slab(2, 0, 8))
    write_mask(tmp_path / "pred" / "p1.nii.gz", slab(2, 1, 2) | slab(2, 5, 2))  # both tumours: Dice 1
    write_mask(tmp_path / "pred" / "p2.nii.gz", slab(2, 1, 2))  # one of two: Dice 2 * 2 / (2 + 4)
    matching = match_cases(tmp_path / "pred", tmp_path / "data", "{case}/tumour_*.nii.gz")
    assert [p.gts for p in matching.pairs] == [
        (tmp_path / "data" / c / "tumour_1.nii.gz", tmp_path / "data" / c / "tumour_2.nii.gz") for c in ("p1", "p2")
    ]
    report = api.evaluate(tmp_path / "pred", tmp_path / "data", tmp_path / "o", gt_pattern="{case}/tumour_*.nii.gz")
    assert [r["dice"] for r in report.rows] == pytest.approx([1.0, 2 / 3])
    assert report.rows[0]["gt"].split(";") == [str(p) for p in matching.pairs[0].gts]
    write_mask(tmp_path / "data" / "p2" / "tumour_3.nii.gz", slab(2, 5, 2), spacing=(0.8, 0.6, 3.0))
    with pytest.raises(MedwssError, match="not on the grid of .*tumour_1.nii.gz .same case.: spacing"):
        api.evaluate(tmp_path / "pred", tmp_path / "data", tmp_path / "o", gt_pattern="{case}/tumour_*.nii.gz")


@pytest.mark.parametrize(
    ("make", "where", "problem"),
    [
        (lambda t: (t / "nowhere", t / "gt"), "nowhere", "file or folder not found"),
        (lambda t: (t / "pred", t / "gt" / "x.nii.gz"), "gt/x.nii.gz", "a folder of predictions needs a folder"),
        (lambda t: (t / "pred", t / "empty"), "empty", "holds no volume files"),
        (lambda t: (t / "pred", t / "gt"), "pred", "no prediction has a ground truth with the same case id"),
        (lambda t: (t / "dup", t / "gt"), "dup", "two files for case 'y'"),
    ],
)
def test_pairing_problems(tmp_path, make, where, problem):
    write_mask(tmp_path / "pred" / "a.nii.gz", slab(0, 2, 2))
    write_mask(tmp_path / "gt" / "x.nii.gz", slab(0, 2, 2))
    write_mask(tmp_path / "dup" / "y.nii.gz", slab(0, 2, 2))
    write_mask(tmp_path / "dup" / "y.nii", slab(0, 2, 2))
    (tmp_path / "empty").mkdir()
    pred, gt = make(tmp_path)
    with pytest.raises(MedwssError, match=problem) as err:
        match_cases(pred, gt)
    assert err.value.path == str(tmp_path / where)


@pytest.mark.parametrize("pattern", ["gland.nii.gz", "{case}/{case}.nii.gz", "/abs/{case}.nii.gz", "{case}/g.txt"])
def test_bad_gt_pattern(tmp_path, pattern):
    write_mask(tmp_path / "pred" / "a.nii.gz", slab(0, 2, 2))
    (tmp_path / "gt").mkdir()
    with pytest.raises(MedwssError, match="must be a relative volume path with one"):
        match_cases(tmp_path / "pred", tmp_path / "gt", pattern)


@pytest.mark.parametrize(
    ("geometry", "problem"),
    [
        ({"spacing": (0.8, 0.6, 3.0)}, "spacing"),
        ({"origin": (0.0, 0.0, 0.0)}, "origin"),
        ({"direction": np.eye(3)}, "direction"),
    ],
)
def test_prediction_on_another_grid_is_refused(tmp_path, geometry, problem):
    gt = write_mask(tmp_path / "gt" / "a.nii.gz", slab(0, 2, 2))
    pred = write_mask(tmp_path / "pred" / "a.nii.gz", slab(0, 2, 2), **geometry)
    with pytest.raises(MedwssError, match=f"prediction is not on the grid of its ground truth .*: {problem}") as err:
        api.evaluate(pred, gt, tmp_path / "out")
    assert err.value.path == str(pred)
    assert not (tmp_path / "out").exists()


def test_prediction_of_another_size_is_refused(tmp_path):
    gt = write_mask(tmp_path / "gt.nii.gz", slab(0, 2, 2))
    pred = write_mask(tmp_path / "p.nii.gz", np.zeros((10, 9, 7)))
    with pytest.raises(MedwssError, match="size"):
        api.evaluate(pred, gt, tmp_path / "out")


def _zones() -> np.ndarray:
    """Zonal map: 0 background, 1 (transition zone) 2 x 5 x 4 = 40 voxels, 2 (peripheral zone) 1 x 5 x 4 = 20."""
    zones = np.zeros(SHAPE, dtype=np.uint8)
    zones[2:4, 2:7, 2:6] = 1
    zones[4, 2:7, 2:6] = 2
    return zones


@pytest.mark.parametrize(("gt_rule", "dice"), [("> 0", 2 * 20 / (20 + 60)), ("== 2", 1.0), ("in 1,2", 0.5),
                                               ("== 1", 0.0)])
def test_gt_rule_makes_the_class_mask(tmp_path, gt_rule, dice):
    gt = write_mask(tmp_path / "gt.nii.gz", _zones())
    pred = write_mask(tmp_path / "pz.nii.gz", _zones() == 2)  # a binary peripheral-zone prediction
    [row] = api.evaluate(pred, gt, tmp_path / "out", gt_rule=gt_rule).rows
    assert row["dice"] == pytest.approx(dice)
    assert row["gt_voxels"] == {"> 0": 60, "== 2": 20, "in 1,2": 60, "== 1": 40}[gt_rule]


def test_classes_score_each_zone(tmp_path):
    gt = write_mask(tmp_path / "gt.nii.gz", _zones())
    pred_zones = _zones()
    pred_zones[4, 2:7, 2:4] = 1  # half the peripheral zone (10 voxels) predicted as transition zone
    pred = write_mask(tmp_path / "pred.nii.gz", pred_zones)
    report = api.evaluate(pred, gt, tmp_path / "out", classes=["tz=== 1", "pz=== 2", "gland=> 0"])
    dice = {r["class"]: r["dice"] for r in report.rows}
    assert dice == pytest.approx({"tz": 2 * 40 / (50 + 40), "pz": 2 * 10 / (10 + 20), "gland": 1.0})
    assert list(report.summary) == ["tz", "pz", "gland"]
    # --pred-rule with classes: one binary prediction scored against each zone.
    binary = write_mask(tmp_path / "bin.nii.gz", _zones() > 0)
    report = api.evaluate(binary, gt, tmp_path / "o2", classes={"tz": "== 1", "gland": "> 0"}, pred_rule="> 0")
    assert [r["dice"] for r in report.rows] == pytest.approx([2 * 40 / (60 + 40), 1.0])


@pytest.mark.parametrize(
    ("classes", "gt_rule", "pred_rule", "expected"),
    [
        (None, None, None, [("roi", "> 0", "> 0")]),
        (None, "== 2", "in 1, 2", [("roi", "== 2", "in 1,2")]),
        (["pz=== 2", "tz = == 1"], None, None, [("pz", "== 2", "== 2"), ("tz", "== 1", "== 1")]),
        (["pz=== 2"], None, "> 0", [("pz", "== 2", "> 0")]),
    ],
)
def test_class_rules(classes, gt_rule, pred_rule, expected):
    rules = class_rules(classes, gt_rule, pred_rule)
    assert [(r.name, str(r.gt), str(r.pred)) for r in rules] == expected


@pytest.mark.parametrize(
    ("classes", "gt_rule", "pred_rule", "where", "problem"),
    [
        (None, "~ 2", None, "label rule", "cannot parse voxel test"),
        (["pz"], None, None, "--class", "expected NAME=RULE"),
        (["=> 0"], None, None, "--class", "expected NAME=RULE"),
        (["p z=> 0"], None, None, "--class", "expected NAME=RULE"),
        (["pz=== 2", "pz=== 1"], None, None, "class pz", "named twice"),
        (["pz=two"], None, None, "class pz", "cannot parse voxel test"),
        (["pz=== 2"], None, "nope", "class pz", "cannot parse voxel test"),
        (["pz=== 2"], "> 0", None, "--gt-rule", "give either --gt-rule or --class"),
    ],
)
def test_bad_class_rules(classes, gt_rule, pred_rule, where, problem):
    with pytest.raises(MedwssError, match=problem) as err:
        class_rules(classes, gt_rule, pred_rule)
    assert err.value.path == where


def test_unwritable_output_leaves_nothing(tmp_path):
    pred, gt = _three_cases(tmp_path)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(MedwssError, match="cannot write") as err:
        api.evaluate(pred, gt, tmp_path / "a_file" / "out")
    assert err.value.path == str(tmp_path / "a_file" / "out")
    assert (tmp_path / "a_file").read_text() == "x"
