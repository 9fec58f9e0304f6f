"""`medwss eval --spec` on a slice-folder set: per patient over the stacked slices, against hand-made known Dice."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medwss.data.slice_folder import SliceSetSpec
from medwss.metrics.evaluate import evaluate_slice_set
from tests.cli.helpers import assert_one_error_line, invoke
from tests.data.test_slice_folder import SPEC, make_slice_set, write_spec


def _predict(out, patient, z, pixels):
    """A predicted mask for slice z of a patient: 1 at the given (row, column) pixels."""
    mask = np.zeros((8, 8), np.uint8)
    for r, c in pixels:
        mask[r, c] = 1
    (out / "img").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(out / "img" / f"{patient}_{z}.png")


@pytest.fixture
def data(tmp_path):
    # p1 slices 1, 3: one tumour pixel each at (row 1, column 2); p2 slices 0, 2, 4: none
    return make_slice_set(tmp_path / "data")


def test_per_patient_dice_over_stacked_slices(tmp_path, data):
    pred = tmp_path / "pred"
    _predict(pred, "p1", 1, [(1, 2)])  # hit
    _predict(pred, "p1", 3, [(5, 5)])  # miss one, one false positive: stack Dice = 2*1 / (2 + 2) = 0.5
    for z in (0, 2, 4):
        _predict(pred, "p2", z, [])
    report = evaluate_slice_set(pred, data, SliceSetSpec.from_config(SPEC))
    rows = {r["case"]: r for r in report.rows}
    assert rows["p1"]["dice"] == pytest.approx(0.5)
    assert rows["p1"]["iou"] == pytest.approx(1 / 3)
    assert rows["p1"]["gt_voxels"] == 2 and rows["p1"]["pred_voxels"] == 2
    assert report.units == "px"
    # not the mean of per-slice Dice (1.0 and 0.0 -> 0.5 by chance here), so check a case where they differ
    _predict(pred, "p1", 3, [])  # slice 3: miss only -> stack Dice 2*1 / (1 + 2) = 2/3, slice mean 0.5
    report = evaluate_slice_set(pred, data, SliceSetSpec.from_config(SPEC))
    assert {r["case"]: r for r in report.rows}["p1"]["dice"] == pytest.approx(2 / 3)


def test_hd95_in_pixels_and_said_so(tmp_path, data):
    pred = tmp_path / "pred"
    _predict(pred, "p1", 1, [(1, 5)])  # 3 pixels to the right of the truth on both tumour slices
    _predict(pred, "p1", 3, [(1, 5)])
    for z in (0, 2, 4):
        _predict(pred, "p2", z, [(4, 4)])
    result = invoke(
        "eval", pred, data, "--spec", write_spec(tmp_path / "spec.yaml"), "-o", tmp_path / "ev", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "ev" / "cases.csv").read_text().splitlines()
    p1 = next(r for r in rows if r.startswith("p1,"))
    assert float(p1.split(",")[4]) == pytest.approx(3.0)  # hd95 column: 3 pixels
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["units"] == {"hd95": "px", "msd": "px"}
    assert "HD95 (px)" in result.stdout and "no spacing: distances in pixels" in result.stdout


def test_patient_without_predictions_is_unmatched_not_scored(tmp_path, data):
    pred = tmp_path / "pred"
    _predict(pred, "p1", 1, [(1, 2)])
    _predict(pred, "p1", 3, [(1, 2)])
    report = evaluate_slice_set(pred, data, SliceSetSpec.from_config(SPEC))
    assert [r["case"] for r in report.rows] == ["p1"] and report.rows[0]["dice"] == pytest.approx(1.0)
    assert report.matching.unmatched_ground_truths == [data / "p2"]


def test_missing_slice_prediction_is_one_line_error(tmp_path, data):
    pred = tmp_path / "pred"
    _predict(pred, "p1", 1, [])
    result = invoke("eval", pred, data, "--spec", write_spec(tmp_path / "spec.yaml"), "--no-progress")
    assert_one_error_line(result, pred / "img" / "p1_3.png", "no prediction for this slice of patient 'p1'")
    assert not (pred / "eval").exists()


def test_prediction_of_another_size_is_one_line_error(tmp_path, data):
    pred = tmp_path / "pred"
    _predict(pred, "p1", 1, [])
    Image.fromarray(np.zeros((4, 8), np.uint8)).save(pred / "img" / "p1_3.png")
    result = invoke("eval", pred, data, "--spec", write_spec(tmp_path / "spec.yaml"), "--no-progress")
    assert_one_error_line(result, pred / "img" / "p1_3.png", "prediction size 8x4 differs from its mask's 8x8")
