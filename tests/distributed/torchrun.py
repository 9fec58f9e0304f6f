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


def run_job(command: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a (torchrun) command in its own session; on timeout kill the whole job, ranks included, then fail."""
    proc = subprocess.Popen(command, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the job this helper started: launcher and every rank
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(command[:6])}... timed out after {timeout} s: {err[-2000:]}") from None
    return subprocess.CompletedProcess(command, proc.returncode, out, err)
