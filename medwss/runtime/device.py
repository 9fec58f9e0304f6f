"""Which device a command runs on, how many CPU threads it uses, and when mixed precision is allowed.

One home for ``--device auto|cpu|cuda[:N]`` (CLI) and ``device`` (bundle configs): ``auto`` takes the GPU of this
process when there is one (under torchrun, ``cuda:$LOCAL_RANK``), else the CPU. Thread pinning applies to CPU runs
only: on a GPU the host threads only feed the device. Mixed precision is a CUDA-only opt-in (``amp``): on the CPU
it is always off (bfloat16 convolutions there are slower than float32 and change the masks).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator

import torch

from medwss.errors import MedwssError

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
INFERENCE_THREADS = 1
"""Default torch threads for ``segment`` and ``replay`` on the CPU. Measured: two threads on a busy 2-core machine
were 2-3x slower than one (many small ops per game step; threads fight the other processes for the cores)."""


def local_rank() -> int:
    """This process's index on its node (torchrun's ``LOCAL_RANK``; 0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """``auto``/``cpu``/``cuda``/``cuda:N`` (or a ``torch.device``) -> the ``torch.device`` to run on.

    ``cuda`` without an index means this process's GPU: ``cuda:$LOCAL_RANK`` under torchrun, else ``cuda:0``.

    Raises:
        MedwssError: an unknown name, or a GPU asked for that this machine does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    name = (spec or "auto").strip().lower()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise MedwssError("--device", f"unknown device {spec!r} (use {DEVICE_CHOICES})")
    if not torch.cuda.is_available():
        raise MedwssError("--device", f"{spec!r} asked for, but torch sees no GPU here (use --device cpu)")
    index = int(match.group(1)) if match.group(1) is not None else local_rank()
    if index >= torch.cuda.device_count():
        raise MedwssError("--device", f"{spec!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def configure_threads(device: torch.device, threads: int | None) -> None:
    """Pin torch's intra-op threads for a CPU run (``None`` keeps torch's default); a GPU run is left alone.

    Raises:
        MedwssError: ``threads`` below 1.
    """
    if threads is None or device.type != "cpu":
        return
    if threads < 1:
        raise MedwssError("--threads", f"must be at least 1, got {threads}")
    torch.set_num_threads(int(threads))


def amp_enabled(device: torch.device, requested: bool) -> bool:
    """Mixed precision only when asked for and on a GPU (never on the CPU, see the module docstring)."""
    return bool(requested) and device.type == "cuda"


@contextlib.contextmanager
def autocast(device: torch.device, enabled: bool) -> Iterator[None]:
    """``torch.autocast`` in float16 on CUDA when ``enabled`` (see ``amp_enabled``), else nothing."""
    if amp_enabled(device, enabled):
        with torch.autocast(device_type="cuda", dtype=torch.float16):
            yield
    else:
        yield
