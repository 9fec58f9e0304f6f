"""Ctrl-C during training: say where it stopped and which checkpoint a rerun resumes from."""

from __future__ import annotations

from pathlib import Path

from medwss.runtime.progress import ProgressTask


class TrainingInterrupted(KeyboardInterrupt):
    """A Ctrl-C caught inside a stage, with the sentence the CLI prints (exit code 130, as for SIGINT)."""


def newest_checkpoint(stage_dir: Path) -> Path | None:
    """The checkpoint written last under a stage's run folder (ensemble members keep theirs in ``member<k>/``)."""
    found = [p for p in Path(stage_dir).rglob("checkpoint_*.pt") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def stopped_message(stage: str, stage_dir: Path, task: ProgressTask) -> str:
    """``detector stage stopped at detector 2 of 3: epoch 7 of 15; rerun the same command to resume from X``."""
    where = task.where() if task.description else "its start"
    checkpoint = newest_checkpoint(stage_dir)
    if checkpoint is None:
        return f"{stage} stage stopped at {where}; no checkpoint yet, so a rerun starts this stage over"
    return f"{stage} stage stopped at {where}; rerun the same command to resume from {checkpoint}"
