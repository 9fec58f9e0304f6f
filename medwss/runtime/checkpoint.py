"""Checkpoints written atomically, so a run killed at any moment resumes from its last complete checkpoint.

``checkpoint_latest.pt`` is rewritten every N epochs/iterations, ``checkpoint_final.pt`` at the end (nnU-Net's
names); both go through a temporary file and ``os.replace``, so a reader never sees half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medwss.runtime.atomic import atomic_output

LATEST = "checkpoint_latest.pt"
FINAL = "checkpoint_final.pt"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` with ``torch.save`` through a temporary file in the same folder."""
    with atomic_output(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (our own files: full unpickling is allowed)."""
    return torch.load(Path(path), map_location=map_location, weights_only=False)


def resume_point(run_dir: str | Path, restart: bool = False) -> Path | None:
    """The checkpoint to resume from: the final one if the stage finished, else the latest; None to start over."""
    if restart:
        return None
    run = Path(run_dir)
    for name in (FINAL, LATEST):
        if (run / name).is_file():
            return run / name
    return None
