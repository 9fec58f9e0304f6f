"""Every bad input of the corpus, through ``segment``, ``check`` and ``eval``: one line ``error: <file>: ...``,
exit 2, no traceback, nothing left behind, the input unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cli.helpers import invoke
from tests.corpus.bad_inputs import (
    MASK_NAMES,
    MASKS,
    SCAN_NAMES,
    SCANS,
    ct_array,
    mask_array,
    mr_array,
    save_nifti,
    tree_state,
)

REPO = Path(__file__).resolve().parents[2]
LIVER = REPO / "bundles" / "liver_tumour"


def assert_refused(result, workspace: Path, before: dict, path: Path | None, words: str) -> None:
    """The promise: exit 2, one stderr line naming the file and the problem, nothing on stdout, no change on disk."""
    stderr = result.stderr if hasattr(result, "stderr") else ""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"error: {path}: " if path is not None else "error: "), lines[0]
    assert words in lines[0], lines[0]
    assert "Traceback" not in result.output and "np.float" not in result.output
    assert result.stdout == ""
    assert tree_state(workspace) == before, "a file was written, left behind or changed"


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "out").mkdir()
    return tmp_path


@pytest.mark.parametrize("case", SCANS, ids=SCAN_NAMES)
def test_segment_refuses_bad_scan(workspace, case):
    scan = case.write(workspace / "in")
    before = tree_state(workspace)
    result = invoke("segment", scan, "-o", workspace / "out" / "mask.nii.gz", "--no-progress")
    assert_refused(result, workspace, before, scan, case.words)


@pytest.mark.parametrize("case", SCANS, ids=SCAN_NAMES)
def test_check_refuses_bad_scan(workspace, case):
    scan = case.write(workspace / "in")
    before = tree_state(workspace)
    result = invoke("check", scan, "--no-progress")
    assert_refused(result, workspace, before, scan, case.words)


@pytest.mark.parametrize("side", ["pred", "gt"])
@pytest.mark.parametrize("case", MASKS, ids=MASK_NAMES)
def test_eval_refuses_bad_mask(workspace, case, side):
    bad = case.write(workspace / side)
    good = save_nifti(mask_array(), workspace / ("gt" if side == "pred" else "pred") / "mask.nii.gz")
    pred, gt = (bad, good) if side == "pred" else (good, bad)
    before = tree_state(workspace)
    result = invoke("eval", pred, gt, "-o", workspace / "out" / "eval", "--no-progress")
    # Two readable masks on different grids: the prediction is the file at fault.
    assert_refused(result, workspace, before, pred if case.name == "off_grid_mask" else bad, case.words)


def test_ct_through_the_mr_bundle_is_refused_unless_allowed(workspace):
    scan = save_nifti(ct_array(), workspace / "in" / "ct.nii.gz")
    before = tree_state(workspace)
    out = workspace / "out" / "mask.nii.gz"
    result = invoke("segment", scan, "-o", out, "--no-progress")
    assert_refused(result, workspace, before, scan, "a CT scan for a bundle trained on MR")
    assert "--allow-modality-mismatch" in result.stderr
    allowed = invoke("segment", scan, "-o", out, "--no-progress", "--allow-modality-mismatch")
    assert allowed.exit_code == 0, allowed.output
    assert out.is_file()


def test_mr_through_the_ct_bundle_is_refused(workspace):
    scan = save_nifti(mr_array(), workspace / "in" / "mr.nii.gz")
    prior = save_nifti(np.ones_like(mask_array()), workspace / "in" / "liver.nii.gz")
    before = tree_state(workspace)
    result = invoke("segment", scan, "--bundle", LIVER, "--roi-mask", prior, "-o", workspace / "out" / "m.nii.gz",
                    "--no-progress")  # fmt: skip
    assert_refused(result, workspace, before, scan, "not CT")


def _good_scan(workspace: Path) -> Path:
    return save_nifti(mr_array(), workspace / "in" / "scan.nii.gz")


@pytest.mark.parametrize(
    "where, words",
    [
        ("under_file", "is a file, not a folder"),
        ("folder", "is a folder"),
        ("input", "refusing to overwrite an input"),
        ("loop", "symbolic link"),
        ("device", "not a regular file"),
    ],
)
def test_segment_refuses_bad_output_before_any_work(workspace, where, words):
    scan = _good_scan(workspace)
    (workspace / "out" / "a_file").write_text("x")
    (workspace / "out" / "dir.nii.gz").mkdir()
    os.symlink("loop.nii.gz", workspace / "out" / "loop.nii.gz")
    out = {
        "under_file": workspace / "out" / "a_file" / "mask.nii.gz",
        "folder": workspace / "out" / "dir.nii.gz",
        "input": scan,
        "loop": workspace / "out" / "loop.nii.gz",
        "device": Path("/dev/null"),
    }[where]
    before = tree_state(workspace)
    result = invoke("segment", scan, "-o", out, "--no-progress")
    assert_refused(result, workspace, before, out, words)
    assert Path("/dev/null").is_char_device()


def test_full_disk_is_one_line_and_leaves_nothing(workspace, monkeypatch):
    import errno

    import medwss.data.io as io

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io, "_write_nifti_like", full)
    scan = _good_scan(workspace)
    out = workspace / "out" / "mask.nii.gz"
    before = tree_state(workspace)
    result = invoke("segment", scan, "-o", out, "--no-progress")
    assert_refused(result, workspace, before, out, "No space left on device")


def test_stale_partial_and_lock_of_a_killed_run_are_removed(workspace):
    scan = _good_scan(workspace)
    out = workspace / "out" / "mask.nii.gz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has ended
    (workspace / "out" / f".mask.nii.gz.{pid}-0123abcd.partial.nii.gz").write_bytes(b"half")
    (workspace / "out" / ".mask.nii.gz.lock").write_text(f"{pid}\n")
    result = invoke("segment", scan, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(os.listdir(workspace / "out")) == ["mask.nii.gz"]


def test_negative_pixdim_mask_keeps_the_scan_geometry(workspace):
    from medwss.data.io import Geometry, read_sitk
    from tests.corpus.bad_inputs import negative_pixdim_nifti

    scan = negative_pixdim_nifti(mr_array(), workspace / "in" / "scan.nii")
    out = workspace / "out" / "mask.nii.gz"
    assert invoke("segment", scan, "-o", out, "--no-progress").exit_code == 0
    assert Geometry.of(read_sitk(scan)).mismatch(Geometry.of(read_sitk(out))) is None
    both = invoke("eval", out, out, "-o", workspace / "eval", "--no-progress")
    assert both.exit_code == 0, both.output


@pytest.mark.parametrize("case", ["truncated_mha", "dicom_corrupt_file", "dicom_missing_slice"])
def test_no_library_line_before_the_error_in_a_real_process(workspace, case):
    """Captured at the file-descriptor level: ITK's and GDCM's own stderr lines, and MONAI's notes, stay hidden."""
    bad = {c.name: c for c in SCANS}[case].write(workspace / "in")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", "from medwss.cli import run; run()", "check", str(bad), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(f"error: {bad}: ")
    assert done.stdout == ""
