"""The output lock two ``medwss segment`` processes race for: it appears with its holder's pid in it, or not at all."""

from __future__ import annotations

import os

import pytest

from medwss.errors import MedwssError
from medwss.runtime.outputs import _create_with_pid, claim_outputs, lock_path


def test_the_lock_appears_with_the_pid_in_it_and_leaves_no_draft(tmp_path):
    lock = tmp_path / ".mask.nii.gz.lock"
    _create_with_pid(lock)
    assert lock.read_text() == f"{os.getpid()}\n"
    with pytest.raises(FileExistsError):
        _create_with_pid(lock)  # a second claimer never replaces it
    assert sorted(p.name for p in tmp_path.iterdir()) == [lock.name]


def test_a_live_holder_refuses_a_second_claim_and_a_dead_one_is_taken_over(tmp_path):
    out = tmp_path / "mask.nii.gz"
    with claim_outputs([out]):
        assert lock_path(out).read_text().strip() == str(os.getpid())
        with pytest.raises(MedwssError, match="being written by another medwss process"):
            with claim_outputs([out]):
                pass
    assert not lock_path(out).exists()
    lock_path(out).write_text("")  # an empty lock of a run killed before it wrote its pid
    with claim_outputs([out]):
        assert lock_path(out).read_text().strip() == str(os.getpid())
