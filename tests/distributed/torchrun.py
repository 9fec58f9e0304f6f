"""Run ``medwss`` under torchrun (gloo, CPU) from tests and benchmarks: a tiny bundle's overrides as --set flags."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def set_flags(overrides: dict) -> list[str]:
    """``--set id=<json>`` per override (the CLI reads values as YAML, of which JSON is a part)."""
    flags = []
    for key, value in overrides.items():
        flags += ["--set", f"{key}={json.dumps(value)}"]
    return flags


def medwss_command(nproc: int, args: list[str]) -> list[str]:
    """``python -m medwss ARGS`` for one process, ``torchrun --standalone --nproc_per_node N -m medwss ARGS`` else."""
    if nproc == 1:
        return [sys.executable, "-m", "medwss", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m",
            "medwss", *args]  # fmt: skip


def env() -> dict[str, str]:
    """One torch thread per process (2 cores, up to 2 processes), the repository importable."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}


def run_medwss(nproc: int, args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return run_job(medwss_command(nproc, args), timeout)


JOB_MARK = "MEDWSS_TEST_JOB"
"""Environment variable that tags every process of one job: torchrun starts its ranks in sessions of their own, so
killing the launcher's process group leaves them running (and holding the output pipes)."""


def kill_job(mark: str) -> None:
    """SIGKILL every process whose environment carries ``JOB_MARK=mark`` (Linux ``/proc``; elsewhere nothing)."""
    needle = f"{JOB_MARK}={mark}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue  # gone already, or not ours to read


def run_job(command: list[str], timeout: float = 300, attempts: int = 2) -> subprocess.CompletedProcess:
    """Run a (torchrun) command in its own session; on timeout kill the whole job, ranks included, and run it again
    (``attempts`` in all), then fail.

    Why again: on the shared 2-core CI machine a 2-rank gloo job has hung once without printing anything, both ranks
    waiting in a futex; the same job passes in seconds on the next try.
    """
    for attempt in range(1, attempts + 1):
        mark = f"{os.getpid()}-{attempt}-{id(command)}"
        proc = subprocess.Popen(command, env=env() | {JOB_MARK: mark}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
            return subprocess.CompletedProcess(command, proc.returncode, out, err)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the launcher's group ...
            kill_job(mark)  # ... and every rank, whatever its session
            try:
                out, err = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = "", "(output pipes still held after the kill)"
    raise AssertionError(f"{' '.join(command[:6])}... timed out after {timeout} s, {attempts} times: {err[-2000:]}")
