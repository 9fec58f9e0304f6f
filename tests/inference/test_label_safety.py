"""The MONAI Label app's request confinement and host rule (``medwss.inference.label_safety``), in the main venv."""

from __future__ import annotations

import os
from pathlib import Path

from medwss.inference.label_safety import confined, host_problem


def test_only_studies_and_uploads_are_reachable(tmp_path):
    studies, uploads, elsewhere = tmp_path / "studies", tmp_path / "tmpdir", tmp_path / "secret"
    for folder in (studies, uploads, elsewhere):
        folder.mkdir()
    study = studies / "a.nii.gz"
    study.write_text("x")
    upload = uploads / "tmpab12.nii.gz"
    upload.write_text("x")
    secret = elsewhere / "key"
    secret.write_text("x")
    os.symlink(secret, studies / "link.nii.gz")  # a link inside the studies that leads out
    (uploads / "notes.txt").write_text("x")
    assert confined(str(study), studies, uploads) == study.resolve()
    assert confined(str(upload), studies, uploads) == upload.resolve()
    for refused in (secret, studies / "link.nii.gz", studies / ".." / "secret" / "key", uploads / "notes.txt",
                    studies / "missing.nii.gz", Path("/etc/passwd")):  # fmt: skip
        assert confined(str(refused), studies, uploads) is None, refused


def test_unreadable_is_answered_like_missing(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    locked = studies / "locked.nii.gz"
    locked.write_text("x")
    locked.chmod(0)
    readable = os.access(locked, os.R_OK)  # root reads anything: then it is a readable study
    assert (confined(str(locked), studies, tmp_path) is None) == (not readable)
    assert confined(str(studies / "missing.nii.gz"), studies, tmp_path) is None


def test_server_listens_on_loopback_unless_told_otherwise():
    base = ["monailabel", "start_server", "--app", "apps/monailabel", "--studies", "s"]
    assert host_problem([*base, "--host", "127.0.0.1"], {}) is None
    assert host_problem([*base, "--host=localhost"], {}) is None
    assert "0.0.0.0" in host_problem(base, {})  # MONAI Label's default host
    assert "--host 127.0.0.1" in host_problem([*base, "--host", "0.0.0.0"], {})
    assert host_problem([*base, "--host", "0.0.0.0"], {"allow_remote": "true"}) is None
    assert host_problem([*base, "-i", "127.0.0.1"], {}) is None  # MONAI Label's short option
    assert "10.0.0.5" in host_problem([*base, "-i", "10.0.0.5"], {})
