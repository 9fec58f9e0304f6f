"""``medwss eval`` on PNG label maps: VOC rules (background scored, 255 ignored, absent classes out) by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from medwss import api
from medwss.data.natural.voc import write_label_png
from medwss.errors import MedwssError
from medwss.metrics.semantic_eval import evaluate_semantic, is_label_png_input, pair_label_maps
from tests.cli.helpers import assert_one_error_line, invoke

# Two images, labels 0-3 possible; class 2 appears nowhere (absent: no IoU), 255 pixels are not scored.
GT_A = np.array([[0, 0, 1, 1], [0, 255, 1, 1]])
PRED_A = np.array([[0, 1, 1, 1], [0, 3, 1, 0]])  # the 3 sits on a void pixel: not scored
GT_B = np.array([[3, 3, 0, 0]])
PRED_B = np.array([[3, 0, 0, 0]])
# Summed counts: class 0 tp 2+2, gt 3+2, pred 3+3 -> IoU 4/(5+6-4); class 1 tp 3, gt 4, pred 4 -> 3/5;
# class 3 tp 1, gt 2, pred 1 -> 1/2; class 2 absent.
IOU = [4 / 7, 3 / 5, math.nan, 1 / 2]
DICE = [8 / 11, 6 / 8, math.nan, 2 / 3]


@pytest.fixture
def folders(tmp_path):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    for name, g, p in (("a", GT_A, PRED_A), ("b", GT_B, PRED_B)):
        write_label_png(g.astype(np.uint8), gt / f"{name}.png")
        write_label_png(p.astype(np.uint8), pred / f"{name}_rlsp.png")  # medwss segment's default name
    return pred, gt


def test_miou_by_hand_with_void_and_an_absent_class(folders):
    report = evaluate_semantic(*folders, num_classes=4)
    np.testing.assert_allclose(report.iou, IOU)
    np.testing.assert_allclose(report.dice, DICE)
    assert report.miou == pytest.approx(np.mean([4 / 7, 3 / 5, 1 / 2]))
    assert report.mdice == pytest.approx(np.mean([8 / 11, 6 / 8, 2 / 3]))
    assert [r["case"] for r in report.rows] == ["a", "b"]


def test_number_of_classes_defaults_to_the_largest_label_seen(folders):
    assert len(evaluate_semantic(*folders).iou) == 4


def test_pairing_by_stem_and_unmatched_files(folders, tmp_path):
    pred, gt = folders
    write_label_png(GT_B.astype(np.uint8), gt / "c.png")
    pairs, extra_pred, extra_gt = pair_label_maps(pred, gt)
    assert [c for c, _, _ in pairs] == ["a", "b"] and extra_pred == [] and extra_gt == [gt / "c.png"]
    assert is_label_png_input(pred, gt) and not is_label_png_input(pred, tmp_path / "missing")


@pytest.mark.parametrize("case,match", [("size", "differs from the ground truth"), ("void in pred", "ignore label"),
                                        ("too few classes", "labels up to 3")])  # fmt: skip
def test_bad_inputs_are_user_errors(folders, case, match):
    pred, gt = folders
    kwargs = {}
    if case == "size":
        write_label_png(np.zeros((3, 3), np.uint8), pred / "a_rlsp.png")
    elif case == "void in pred":
        write_label_png(np.full((2, 4), 255, np.uint8), pred / "a_rlsp.png")
    else:
        kwargs["num_classes"] = 2
    with pytest.raises(MedwssError, match=match):
        evaluate_semantic(pred, gt, **kwargs)


def test_api_names_classes_and_writes_the_report(folders, tmp_path):
    report = api.evaluate_semantic(*folders, tmp_path / "out", class_set="voc")
    summary = json.loads(report.summary_json.read_text())
    per_class = summary["per_class"]
    assert per_class["aeroplane"]["iou"] == pytest.approx(3 / 5) and per_class["bicycle"]["iou"] is None
    assert summary["classes_scored"] == 3 and len(report.iou) == 21
    assert report.classes_csv.read_text().splitlines()[1].startswith("0,background,")


def test_cli_eval_scores_png_label_maps(folders, tmp_path):
    result = invoke("eval", *folders, "-o", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    assert f"mIoU {np.mean([4 / 7, 3 / 5, 1 / 2]):.3f}" in result.stdout and "(VOC rules)" in result.stdout
    assert (tmp_path / "out" / "summary.json").is_file()
    pred, gt = folders
    write_label_png(np.zeros((3, 3), np.uint8), pred / "a_rlsp.png")
    bad = invoke("eval", pred, gt, "-o", tmp_path / "out2", "--no-progress")
    assert_one_error_line(bad, pred / "a_rlsp.png", "size 3x3 differs")
    assert not (tmp_path / "out2").exists()


def test_unknown_class_set_is_a_user_error(folders, tmp_path):
    result = invoke("eval", *folders, "--class-set", "ade20k", "-o", tmp_path / "out", "--no-progress")
    assert_one_error_line(result, "--class-set", "unknown class set 'ade20k'")
