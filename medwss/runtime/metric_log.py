"""Scalars per epoch/iteration as JSON lines (CleanRL tags: ``losses/``, ``charts/``, ``game/``, ``pool/``).

On resume the log is cut back to the checkpoint's step, so a run stopped after logging but before checkpointing
does not log the same step twice.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricLog:
    """Append-only ``metrics.jsonl`` with one record per step: ``{"step": n, tag: value, ...}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def truncate(self, last_step: int) -> None:
        """Drop records after ``last_step`` (the step the resumed checkpoint holds)."""
        kept = [r for r in self.records() if r.get("step", -1) <= last_step]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def reset(self) -> None:
        self.path.unlink(missing_ok=True)

    def log(self, step: int, **scalars: Any) -> dict[str, Any]:
        record = {"step": int(step)}
        for key, value in scalars.items():
            value = float(value) if isinstance(value, int | float) or hasattr(value, "item") else value
            record[key] = None if isinstance(value, float) and not math.isfinite(value) else value
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        return record
