"""``run_job``: a hung job is killed with every process it started, even those in sessions of their own."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from tests.distributed.torchrun import JOB_MARK, run_job

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="needs Linux /proc")

# A launcher that starts a 'rank' in a new session (as torchrun does), both holding the output pipes, both hanging.
HANG = ("import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True); "
        "time.sleep(600)")


def _ours() -> list[int]:
    """Processes tagged by this test process's jobs."""
    needle = f"{JOB_MARK}={os.getpid()}-".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if any(v.startswith(needle) for v in (entry / "environ").read_bytes().split(b"\0")):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_hung_job_is_killed_ranks_included_run_again_then_failed():
    start = time.monotonic()
    with pytest.raises(AssertionError, match="timed out after 2 s, 2 times"):
        run_job([sys.executable, "-c", HANG], timeout=2)
    # without killing the rank, reading its pipes would wait 30 s per attempt
    assert time.monotonic() - start < 25
    time.sleep(0.5)
    assert _ours() == []


def test_a_job_that_finishes_returns_its_output():
    done = run_job([sys.executable, "-c", "print('hello')"], timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "hello"
