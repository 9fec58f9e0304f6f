"""``medwss eval``: table and summary on stdout, warnings and errors on stderr, outputs only on success."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from tests.cli.helpers import assert_one_error_line, invoke
from tests.metrics.test_evaluate import SHAPE, SPACING, slab, write_mask

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "../shared/data"


def test_eval_is_listed():
    result = invoke("--help")
    assert result.exit_code == 0 and "eval" in result.stdout
    assert invoke("eval", "--help").exit_code == 0


def test_eval_one_pair_table_summary_and_files(tmp_path):
    gt = write_mask(tmp_path / "gt" / "case7.nii.gz", slab(0, 2, 2))
    pred = write_mask(tmp_path / "pred" / "case7.nii.gz", slab(0, 3, 2))
    result = invoke("eval", pred, gt, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    header = next(line for line in lines if "case" in line and "Dice" in line)
    assert all(word in header for word in ("class", "IoU", "HD95 (mm)", "MSD (mm)"))
    [row] = [line for line in lines if "case7" in line]
    assert "roi" in row and "0.500" in row and "0.333" in row and f"{SPACING[0]:.2f}" in row
    out = tmp_path / "pred" / "eval"  # default: eval/ next to a prediction file
    assert lines[-2] == (
        "roi: mean Dice (mDSC) 0.500, mIoU 0.333 over 1 case; HD95 0.80 mm, MSD 0.40 mm (mean over 1 of 1)"
    )
    assert lines[-1] == f"wrote {out / 'cases.csv'} and {out / 'summary.json'}"
    with (out / "cases.csv").open() as handle:
        [saved] = list(csv.DictReader(handle))
    assert saved["case"] == "case7" and float(saved["dice"]) == pytest.approx(0.5)
    assert json.loads((out / "summary.json").read_text())["mDSC"] == {"roi": pytest.approx(0.5)}


def test_eval_folders_warn_about_unmatched_and_score_the_rest(tmp_path):
    for case in ("a", "b"):
        write_mask(tmp_path / "gt" / f"{case}.nii.gz", slab(2, 2, 2))
    write_mask(tmp_path / "pred" / "a.nii.gz", slab(2, 2, 2))
    write_mask(tmp_path / "pred" / "z.nii.gz", slab(2, 2, 2))
    out = tmp_path / "res"
    result = invoke("eval", tmp_path / "pred", tmp_path / "gt", "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"warning: {tmp_path / 'pred' / 'z.nii.gz'}: no ground truth with this case id; not scored",
        f"warning: {tmp_path / 'gt' / 'b.nii.gz'}: no prediction for this case; not scored",
    ]
    assert "roi: mean Dice (mDSC) 1.000, mIoU 1.000 over 1 case;" in result.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unmatched_predictions"] == [str(tmp_path / "pred" / "z.nii.gz")]
    assert summary["unmatched_ground_truths"] == [str(tmp_path / "gt" / "b.nii.gz")]


def test_eval_classes_one_summary_line_each(tmp_path):
    zones = np.zeros(SHAPE, dtype=np.uint8)
    zones[2:4, 2:7, 2:6], zones[4, 2:7, 2:6] = 1, 2
    gt = write_mask(tmp_path / "gt.nii.gz", zones)
    pred = write_mask(tmp_path / "p.nii.gz", zones)
    result = invoke("eval", pred, gt, "-o", tmp_path / "o", "--class", "tz=== 1", "--class", "pz=== 2", "--no-progress")
    assert result.exit_code == 0, result.output
    summary_lines = [line for line in result.stdout.splitlines() if "mDSC" in line]
    assert [line.split(":")[0] for line in summary_lines] == ["tz", "pz"]
    assert all("mean Dice (mDSC) 1.000, mIoU 1.000" in line for line in summary_lines)


def test_eval_grid_mismatch_is_one_line_and_writes_nothing(tmp_path):
    gt = write_mask(tmp_path / "gt" / "a.nii.gz", slab(0, 2, 2))
    pred = write_mask(tmp_path / "pred" / "a.nii.gz", slab(0, 2, 2), spacing=(0.8, 0.6, 3.0))
    result = invoke("eval", tmp_path / "pred", tmp_path / "gt")
    assert_one_error_line(result, pred, f"prediction is not on the grid of its ground truth {gt}: spacing")
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.nii.gz"]  # no eval/ folder


@pytest.mark.parametrize(
    ("args", "where", "problem"),
    [
        (["pred/a.nii.gz", "gt/nowhere"], "gt/nowhere", "file or folder not found"),
        (["pred", "gt"], "pred", "no prediction has a ground truth with the same case id"),
        (["pred/a.nii.gz", "gt/b.nii.gz", "--gt-rule", "~ 1"], "label rule", "cannot parse voxel test"),
        (["pred/a.nii.gz", "gt/b.nii.gz", "--class", "gland"], "--class", "expected NAME=RULE"),
        (["pred", "gt", "--gt-pattern", "{case}.txt"], "--gt-pattern", "'{case}.txt' must be a relative volume path"),
    ],
)
def test_eval_user_errors(tmp_path, args, where, problem):
    write_mask(tmp_path / "pred" / "a.nii.gz", slab(0, 2, 2))
    write_mask(tmp_path / "gt" / "b.nii.gz", slab(0, 2, 2))
    args = [tmp_path / a if i < 2 else a for i, a in enumerate(args)]
    where = tmp_path / where if "/" in where or where in ("pred", "gt") else where
    assert_one_error_line(invoke("eval", *args, "--no-progress"), where, problem)
    assert not (tmp_path / "pred" / "eval").exists()


# Real data (../shared/data): skipped when absent ------------------------------------------------------------------
realdata = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} not found")


@pytest.mark.realdata
@realdata
def test_real_prostate158_inter_reader_dice(tmp_path):
    """Reader 2 scored against reader 1 on Prostate158 case 001: human agreement, about 0.9 Dice per the README."""
    case = DATA / "prostate" / "prostate158_subset" / "001"
    pred, gt = case / "gland_reader2.nii.gz", case / "gland_reader1.nii.gz"
    result = invoke("eval", pred, gt, "-o", tmp_path, "--no-progress")
    assert result.exit_code == 0, result.output
    with (tmp_path / "cases.csv").open() as handle:
        [row] = list(csv.DictReader(handle))
    dice, hd95, msd = float(row["dice"]), float(row["hd95"]), float(row["msd"])
    print(
        f"Prostate158 001 reader 2 vs 1: Dice {dice:.4f}, IoU {float(row['iou']):.4f}, HD95 {hd95:.2f} mm, "
        f"MSD {msd:.2f} mm"
    )
    assert 0.8 < dice < 0.97
    assert (int(row["pred_voxels"]), int(row["gt_voxels"])) == (110356, 102164)
    assert 0.47 <= hd95 < 10.0 and 0.0 < msd < hd95  # at least one in-plane voxel apart somewhere, under 1 cm
    # The zonal maps scored as whole gland (label > 0) agree with the derived gland files (the README: identical).
    zonal = invoke(
        "eval",
        case / "t2_anatomy_reader2.nii.gz",
        case / "t2_anatomy_reader1.nii.gz",
        "-o",
        tmp_path / "zonal",
        "--class",
        "gland=> 0",
        "--class",
        "tz=== 1",
        "--class",
        "pz=== 2",
        "--no-progress",
    )
    assert zonal.exit_code == 0, zonal.output
    summary = json.loads((tmp_path / "zonal" / "summary.json").read_text())
    assert summary["mDSC"]["gland"] == pytest.approx(dice)
    print("zonal mDSC:", {k: round(v, 4) for k, v in summary["mDSC"].items()})
