"""The ``medwss`` command: exit codes, one-line errors on stderr, results on stdout, no output left on failure."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from medwss.data.manifest import read_manifest
from tests.cli.helpers import assert_one_error_line, invoke
from tests.data.dataset_fixtures import (
    P158_SPEC,
    SHAPE,
    garbage,
    write_ircadb,
    write_msd,
    write_nifti,
    write_prostate158,
    write_spec,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "../shared/data"


def test_help_and_version():
    result = invoke("--help")
    assert result.exit_code == 0
    for verb in ("check", "labels"):
        assert verb in result.stdout
    assert invoke("labels", "from-masks", "--help").exit_code == 0
    result = invoke("--version")
    assert result.exit_code == 0 and result.stdout.startswith("medwss ")


@pytest.mark.parametrize("layout", ["msd", "prostate158"])
def test_check_ok(tmp_path, layout):
    data = write_msd(tmp_path) if layout == "msd" else write_prostate158(tmp_path)
    args = ["check", data.root, *(["--spec", data.spec] if data.spec else []), "--no-progress"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    [line] = result.stdout.splitlines()
    assert line.startswith(f"ok: {data.root}: ")


def test_check_bad_data_one_line_per_problem(tmp_path):
    data = write_prostate158(tmp_path)
    garbage(data.files["001/image"])
    write_nifti(data.files["020/image"], np.zeros(SHAPE, np.float32))
    data.files["021/label"].unlink()
    result = invoke("check", data.root, "--spec", data.spec)
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 3, result.stderr
    assert lines[0] == f"error: {data.files['021/label']}: no label file for class 'gland'"
    assert lines[1].startswith(f"error: {data.files['001/image']}: unreadable or not an image")
    assert lines[2].startswith(f"error: {data.files['020/image']}: constant image")
    assert result.stdout.splitlines() == [f"3 problem(s) in {data.root} (2 data set items read)"]


def test_check_missing_path(tmp_path):
    assert_one_error_line(invoke("check", tmp_path / "nowhere"), tmp_path / "nowhere", "file not found")
    result = invoke("labels", "from-masks", tmp_path / "nowhere", "-o", tmp_path / "weak.csv")
    assert_one_error_line(result, tmp_path / "nowhere", "data set folder not found")
    assert not (tmp_path / "weak.csv").exists()


@pytest.mark.parametrize(
    ("spec_text", "problem"),
    [
        (None, "dataset spec not found"),
        ("name: [unclosed", "cannot parse"),
        ("name: x\nimage: '{case}/t2.nii.gz'\nclasses: {gland: {files: x, missing: maybe}}\n", "'missing' must be"),
        ("colour: red\n", "unknown dataset spec keys: colour"),
    ],
)
def test_bad_spec_is_one_line(tmp_path, spec_text, problem):
    data = write_prostate158(tmp_path)
    spec = tmp_path / "spec.yaml"
    if spec_text is not None:
        spec.write_text(spec_text)
    where = "class gland" if "missing" in problem else spec
    assert_one_error_line(invoke("check", data.root, "--spec", spec), where, problem)
    out = tmp_path / "weak.csv"
    assert_one_error_line(invoke("labels", "from-masks", data.root, "--spec", spec, "-o", out), where, problem)
    assert not out.exists()


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_labels_from_masks_writes_the_manifest(tmp_path, suffix):
    data = write_ircadb(tmp_path)
    out = tmp_path / "runs" / f"weak{suffix}"
    result = invoke("labels", "from-masks", data.root, "--spec", data.spec, "--out", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines() == [f"wrote {out}: 2 images, 2 patients; tumour: 3 present / 9 absent"]
    manifest = read_manifest(out)
    for item in manifest.images:
        np.testing.assert_array_equal(item.presence["tumour"], data.expected[item.case]["tumour"])
        assert item.image.resolve() == data.files[f"{item.case}/image"].resolve()
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left


def test_labels_from_masks_msd_without_spec(tmp_path):
    data = write_msd(tmp_path, "v2")
    out = tmp_path / "weak.csv"
    assert invoke("labels", "from-masks", data.root, "-o", out).exit_code == 0
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * 6 * 2  # cases x slices x classes
    assert {r["class"] for r in rows} == {"PZ", "TZ"}


@pytest.mark.parametrize("name", ["weak.tsv", "weak", "weak.nii.gz"])
def test_labels_from_masks_bad_suffix_writes_nothing(tmp_path, name):
    data = write_prostate158(tmp_path / "d")
    out = tmp_path / "out" / name
    assert_one_error_line(
        invoke("labels", "from-masks", data.root, "--spec", data.spec, "-o", out),
        out,
        "a manifest is a .csv or .json file",
    )
    assert not (tmp_path / "out").exists()


def test_labels_from_masks_unwritable_output(tmp_path):
    data = write_prostate158(tmp_path / "d")
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "weak.csv"
    assert_one_error_line(
        invoke("labels", "from-masks", data.root, "--spec", data.spec, "-o", out), out, "cannot write"
    )


def test_labels_from_masks_never_overwrites_an_input(tmp_path):
    data = write_msd(tmp_path)
    before = data.files["dataset.json"].read_text()
    out = data.files["dataset.json"]
    assert_one_error_line(invoke("labels", "from-masks", data.root, "-o", out), out, "refusing to overwrite an input")
    assert data.files["dataset.json"].read_text() == before
    spec = write_spec(tmp_path / "spec.json", P158_SPEC)
    data = write_prostate158(tmp_path)
    assert_one_error_line(
        invoke("labels", "from-masks", data.root, "--spec", spec, "-o", spec), spec, "refusing to overwrite an input"
    )
    assert json.loads(spec.read_text()) == P158_SPEC


def test_labels_from_masks_bad_data_leaves_no_output(tmp_path):
    data = write_prostate158(tmp_path / "d")
    garbage(data.files["020/label"])
    out = tmp_path / "out" / "weak.csv"
    result = invoke("labels", "from-masks", data.root, "--spec", data.spec, "-o", out)
    assert_one_error_line(result, data.files["020/label"], "unreadable or not an image")
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_help_is_fast_and_imports_no_torch():
    """``medwss --help`` and a user error answer without importing torch or MONAI (seconds on a cold cache)."""
    code = (
        "import sys\n"
        "from medwss.cli import app\n"
        "status = 0\n"
        "for args in (['--help'], ['check', '/nonexistent/medwss_path']):\n"
        "    try:\n"
        "        app(args, prog_name='medwss')\n"
        "    except SystemExit as stop:\n"
        "        status = status * 10 + (stop.code or 0)\n"
        "heavy = sorted(m for m in ('torch', 'monai') if m in sys.modules)\n"
        "print('HEAVY=' + ','.join(heavy))\n"
        "sys.exit(status)\n"
    )
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", cwd=REPO, timeout=120
    )
    seconds = time.perf_counter() - start
    assert done.returncode == 2, done.stderr  # help: 0, missing path: 2
    assert "HEAVY=\n" in done.stdout or done.stdout.rstrip().endswith("HEAVY=")
    assert "error: /nonexistent/medwss_path: file not found" in done.stderr
    print(f"medwss --help + one user error in a fresh interpreter: {seconds:.2f} s")
    assert seconds < 20.0


def test_the_command_segments_without_ignite():
    """The console script hides pytorch-ignite (a slow import MONAI makes eagerly); the bundle still loads and runs."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["medwss"] == "medwss.cli:run"
    code = (
        "import sys, torch\n"
        "from medwss.cli import hide_ignite\n"
        "hide_ignite()\n"
        "from medwss.inference.segment import Segmenter\n"
        "segmenter = Segmenter('bundles/prostate')\n"
        "mask = segmenter.inferer(torch.rand(1, 1, 128, 128, 2), segmenter.network)\n"
        "print('SHAPE', tuple(mask.shape), 'IGNITE', any(m.startswith('ignite.') for m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, encoding="utf-8", errors="replace", cwd=REPO, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "SHAPE (1, 1, 128, 128, 2) IGNITE False" in done.stdout


# Real data (../shared/data): skipped when absent ------------------------------------------------------------------
realdata = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} not found")

REAL_SETS = [
    ("prostate/prostate158_subset", "prostate158.yaml"),
    ("liver", "ircadb.yaml"),
    ("prostate/promise12_resampled", "promise12_resampled.yaml"),
]


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize(("folder", "spec"), REAL_SETS, ids=[s for _, s in REAL_SETS])
def test_real_check_passes(folder, spec):
    result = invoke("check", DATA / folder, "--spec", REPO / "configs" / "datasets" / spec, "--no-progress")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ") and result.stderr == ""


@pytest.mark.realdata
@pytest.mark.slow
@realdata
def test_real_liver_tumour_slices(tmp_path):
    out = tmp_path / "liver.csv"
    result = invoke("labels", "from-masks", DATA / "liver", "--spec", REPO / "configs/datasets/ircadb.yaml", "-o", out)
    assert result.exit_code == 0, result.output
    present = {item.case: int(np.nansum(item.presence["tumour"])) for item in read_manifest(out).images}
    assert present == {"ircadb01_01": 74, "ircadb01_07": 0}


@pytest.mark.realdata
@realdata
def test_real_prostate158_matches_slices_csv(tmp_path):
    root = DATA / "prostate" / "prostate158_subset"
    out = tmp_path / "p158.json"
    result = invoke("labels", "from-masks", root, "--spec", REPO / "configs/datasets/prostate158.yaml", "-o", out)
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith("gland: 54 present / 17 absent")
    ours = {
        (f"p158_{item.case}", z): int(v)
        for item in read_manifest(out).images
        for z, v in enumerate(item.presence["gland"])
    }
    with (root / "slices.csv").open() as handle:
        theirs = {(row["patient"], int(row["slice_z"])): int(row["gland_present"]) for row in csv.DictReader(handle)}
    assert ours == theirs
    assert sum(theirs.values()) == 54 and len(theirs) == 71
