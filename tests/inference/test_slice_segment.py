"""A slice-folder set end to end: a bundle trains on it, `segment` writes one PNG per slice, `eval` scores them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medwss.bundle.stages import train_stage
from tests.bundle.fixtures import tiny_bundle
from tests.bundle.test_selfplay_stage import SMALL
from tests.cli.helpers import assert_one_error_line, invoke
from tests.data.test_slice_folder import SPEC, make_slice_set, write_spec


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The liver-tumour bundle's configs trained for seconds on a toy slice set (32 px, 4 x 4 grid)."""
    base = tmp_path_factory.mktemp("slices")
    data = make_slice_set(
        base / "data", patients=(("p1", [0, 1, 2, 3]), ("p2", [1, 2, 3, 5]), ("p3", [0, 1, 3])), size=12
    )
    bundle = tiny_bundle(base, "liver_tumour")
    overrides = {
        "data#sources": [{"root": str(data), "spec": SPEC}],
        "data#working_size": 32,
        "grid_size": 4,
        "detector#training#epochs": 1,
        "detector#training#batch_size": 4,
        "detector#network_def#members": 1,
        **SMALL,
        "selfplay#policy#channels": 16,
    }
    train_stage(bundle, "detector", overrides=overrides, run_dir=base / "runs")
    train_stage(bundle, "selfplay", overrides=overrides, run_dir=base / "runs")
    config = bundle / "configs" / "inference.yaml"
    config.write_text(
        config.read_text()
        .replace("grid_size: 32 ", "grid_size: 4 ")
        .replace("working_size: 128 ", "working_size: 32 ")
        .replace("members: 3 ", "members: 1 ")
    )
    return bundle, data, write_spec(base / "spec.yaml")


@pytest.mark.parametrize("method", ["rlsp", "cam"])
def test_segment_writes_one_png_per_slice_and_eval_scores_patients(tmp_path, trained, method):
    bundle, data, spec = trained
    out = tmp_path / "masks"
    result = invoke("segment", data, "--spec", spec, "--bundle", bundle, "--method", method, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    written = sorted(out.rglob("*.png"))
    assert len(written) == 11 and (out / "img" / "p2_5.png").is_file()
    for path in written:
        mask = np.asarray(Image.open(path))
        assert mask.shape == (12, 12) and Image.open(path).mode == "L" and set(np.unique(mask)) <= {0, 1}
        liver = np.asarray(Image.open(data / "seg" / path.name)) > 0
        assert not (mask.astype(bool) & ~liver).any()  # bounded by the organ prior
    result = invoke("eval", out, data, "--spec", spec, "--no-progress")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "eval" / "summary.json").read_text())
    assert summary["cases"] == 3 and summary["units"]["hd95"] == "px"
    assert "distances in pixels" in result.stdout


def test_segment_refuses_to_write_into_the_slice_set(trained):
    bundle, data, spec = trained
    result = invoke("segment", data, "--spec", spec, "--bundle", bundle, "-o", data / "pred", "--no-progress")
    assert_one_error_line(result, data / "pred", "refusing to write masks inside the slice set")
