"""Outputs between processes and folders: nothing lost when two ``medwss segment`` write one file name; a folder of
patients is segmented scan by scan, label maps left out, the patient folder kept in the output."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from medwss.data.io import mask_source, source_tag
from tests.cli.helpers import invoke
from tests.corpus.bad_inputs import ct_array, mask_array, mr_array, save_nifti

REPO = Path(__file__).resolve().parents[2]


def _patients(root: Path) -> list[Path]:
    scans = []
    for i, shift in enumerate((0, 4)):
        scan = save_nifti(np.roll(mr_array(), shift, axis=0), root / f"p{i}" / "t2.nii.gz")
        save_nifti(mask_array(), root / f"p{i}" / "t2_anatomy_reader1.nii.gz")
        scans.append(scan)
    return scans


def test_two_processes_writing_one_file_name_lose_no_mask(tmp_path):
    """Two real processes, two different scans named t2.nii.gz, one output folder: each either writes its own mask
    or is refused in one line (exit 2); never do both exit 0 with one mask silently replaced."""
    scans = _patients(tmp_path / "data")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-c", "from medwss.cli import run; run()", "segment"]
    procs = [
        subprocess.Popen([*command, str(s), "-o", str(out), "--no-progress"], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
        for s in scans
    ]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results  # one wrote, the other was told (at once, or after the first finished)
    winner = next(s for s, (code, _, _) in zip(scans, results, strict=True) if code == 0)
    loser_err = next(err for code, _, err in results if code == 2)
    assert len(loser_err.splitlines()) == 1 and loser_err.startswith(f"error: {out / 't2.nii.gz'}: ")
    assert "another" in loser_err
    assert mask_source(out / "t2.nii.gz") == source_tag(winner)
    assert sorted(os.listdir(out)) == ["t2.nii.gz"]  # no lock, no partial file left


def test_rerun_on_the_same_scan_replaces_its_mask(tmp_path):
    (scan, _) = _patients(tmp_path / "data")
    out = tmp_path / "m.nii.gz"
    assert invoke("segment", scan, "-o", out, "--no-progress").exit_code == 0
    again = invoke("segment", scan, "-o", out, "--no-progress")
    assert again.exit_code == 0, again.output


def test_folder_of_patients_segments_scans_only_and_keeps_patient_folders(tmp_path):
    data = tmp_path / "data"
    _patients(data)
    out = tmp_path / "out"
    result = invoke("segment", data, "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz"))
    assert written == ["p0/t2.nii.gz", "p1/t2.nii.gz"]  # no mask of a label map, no collision
    for i in range(2):
        assert mask_source(out / f"p{i}" / "t2.nii.gz") == source_tag(data / f"p{i}" / "t2.nii.gz")


def test_pattern_decides_what_is_a_scan(tmp_path):
    data = tmp_path / "data"
    _patients(data)
    save_nifti(ct_array(), data / "p0" / "ct.nii.gz")  # another file a pattern leaves out
    out = tmp_path / "out"
    result = invoke("segment", data, "--pattern", "*/t2.nii.gz", "-o", out, "--no-progress")
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.nii.gz")) == ["p0/t2.nii.gz", "p1/t2.nii.gz"]
    assert nib.load(str(out / "p0" / "t2.nii.gz")).shape == mr_array().shape
