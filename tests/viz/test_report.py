"""``medwss eval --report``: one self-contained HTML page that a browser renders, with every image embedded."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from medwss.viz.report import slices_that_matter
from tests.cli.helpers import assert_one_error_line, invoke
from tests.metrics.test_evaluate import SHAPE, slab, write_mask

DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


def _cases(tmp_path):
    """Three cases with Dice 1, 0.5 and 0 (and a scan each), and their ground truths."""
    gt = slab(2, 2, 4)
    preds = {"good": gt, "half": slab(2, 2, 2), "miss": np.zeros(SHAPE, np.uint8)}
    rng = np.random.default_rng(0)
    for case, pred in preds.items():
        write_mask(tmp_path / "gt" / f"{case}.nii.gz", gt)
        write_mask(tmp_path / "pred" / f"{case}.nii.gz", pred)
        write_mask(tmp_path / "scans" / f"{case}.nii.gz", (rng.random(SHAPE) * 200).astype(np.uint8) + gt * 50)
    return tmp_path / "pred", tmp_path / "gt", tmp_path / "scans"


def _chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None and os.environ.get("MEDWSS_REQUIRE_CHROMIUM"):
        pytest.fail("chromium is not installed (.ci/run installs it)")
    return found


def test_report_is_self_contained_sorted_and_renders_in_chromium(tmp_path):
    pred, gt, scans = _cases(tmp_path)
    page = tmp_path / "report.html"
    result = invoke(
        "eval", pred, gt, "-o", tmp_path / "eval", "--report", page, "--images", scans,
        "--bundle", "prostate (rlsp)", "--no-progress",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == f"wrote {page}"
    text = page.read_text(encoding="utf-8")
    assert 'src="http' not in text and "<link" not in text and "<script" not in text  # nothing fetched
    images = DATA_URI.findall(text)
    assert len(images) == 4  # the Dice plot and one overlay per case
    for data in images:
        picture = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        picture.verify()
        assert picture.size[0] > 50 and picture.size[1] > 50
    # summary: mDSC 0.5 = (1 + 2/3 + 0) / 3 ... per case Dice 1, 2*2/(2+4) = 0.667, 0
    assert "<td>0.556</td>" in text and "prostate (rlsp)" in text and "numpy version" in text
    order = [text.index(f"{case}<br>") for case in ("miss", "half", "good")]
    assert order == sorted(order), "cases are not sorted worst Dice first"
    assert (tmp_path / "eval" / "summary.json").is_file()

    chromium = _chromium()
    if chromium is None:
        pytest.skip("no chromium here (CI installs it)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1000,1400", page.as_uri()],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float32)
    assert pixels.shape == (1400, 1000)
    assert pixels.std() > 10, "blank screenshot"
    assert (pixels < 128).mean() > 0.01, "hardly any dark pixels: text and images did not render"


def test_slices_that_matter_favour_disagreement_and_the_largest_masks():
    gt = np.zeros((6, 6, 10), bool)
    pred = np.zeros_like(gt)
    gt[1:5, 1:5, 2:6] = True
    gt[1:6, 1:6, 4] = True  # the largest ground truth slice
    pred[1:5, 1:5, 3:8] = True
    pred[:, :, 7] = True  # the largest prediction and the most disagreement
    # 7 (disagreement), 4 (ground truth), then the middle of the other covered slices 2, 3, 5, 6
    assert slices_that_matter(pred, gt) == [4, 5, 7]
    assert slices_that_matter(pred, gt, count=2) == [4, 7]
    assert slices_that_matter(np.zeros_like(gt), np.zeros_like(gt)) == [5]


def test_report_needs_an_html_name_before_scoring(tmp_path):
    pred, gt, _ = _cases(tmp_path)
    result = invoke("eval", pred, gt, "-o", tmp_path / "eval", "--report", tmp_path / "r.pdf")
    assert_one_error_line(result, tmp_path / "r.pdf", "the report is an HTML page")
    assert not (tmp_path / "eval").exists()
