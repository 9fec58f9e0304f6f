"""Progress on stderr that the CLI can switch off, and that library code drives through plain callables.

On a terminal it is a rich bar: what is running, done of total, the latest scores (loss, validation), time spent and
time left. Where stderr is a file or a pipe (a log, CI), a bar redrawn in place would leave nothing readable, so a
task made with ``lines=True`` prints one plain line per step instead::

    detector 2 of 3: epoch 7 of 15, loss 0.412, val AUC 0.871, 0:01:10 elapsed, about 0:00:40 left
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta


@dataclass
class ProgressTask:
    """What library code sees: ``advance(n)``, ``set_total(n)``, ``describe(text)`` and ``status(text)`` (the latest
    scores, shown after the count); a no-op when progress is off. It remembers where it is, for ``where()``."""

    _advance: Callable[[int], None] = lambda n: None
    _total: Callable[[int], None] = lambda n: None
    _describe: Callable[[str], None] = lambda text: None
    _status: Callable[[str], None] = lambda text: None
    _skip: Callable[[int], None] | None = None
    description: str = ""
    completed: int = 0
    total: int | None = None
    last_status: str = field(default="")

    def advance(self, n: int = 1) -> None:
        self.completed += n
        self._advance(n)

    def skip(self, n: int) -> None:
        """Count ``n`` steps done before this run (a resume): shown, but not timed as this run's work."""
        if n <= 0:
            return
        self.completed += n
        (self._skip or self._advance)(n)

    def set_total(self, n: int) -> None:
        self.total, self.completed = n, 0
        self._total(n)

    def describe(self, text: str) -> None:
        self.description = text
        self._describe(text)

    def status(self, text: str) -> None:
        self.last_status = text
        self._status(text)

    def where(self) -> str:
        """Where the work is, in words: ``detector 2 of 3: epoch 7 of 15``."""
        return count_text(self.description, self.completed, self.total)


def count_text(description: str, completed: int, total: int | None) -> str:
    """``detector: epoch 7 of 15`` (a description ending in a unit after ':') or ``checking x: 7 of 15``."""
    count = f"{completed}" + (f" of {total}" if total else "")
    return f"{description} {count}" if ":" in description else f"{description}: {count}"


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=int(round(seconds))))


class PlainLines:
    """One line per step on a stream: count, latest scores, elapsed and estimated time left (from the steps of this
    run only: steps a resumed run skipped are not counted as instant)."""

    def __init__(self, description: str, total: int | None, stream=None) -> None:
        self.description, self.total, self.stream = description, total, stream or sys.stderr
        self.completed, self.status_text = 0, ""
        self.started = self.base_time = time.perf_counter()
        self.base = 0  # steps done when the timing of this run's steps started

    def _print(self, parts: list[str]) -> None:
        print(", ".join(parts), file=self.stream, flush=True)

    def advance(self, n: int) -> None:
        now = time.perf_counter()
        self.completed += n
        parts = [count_text(self.description, self.completed, self.total)]
        if self.status_text:
            parts.append(self.status_text)
        parts.append(f"{_clock(now - self.started)} elapsed")
        done_here = self.completed - self.base
        if self.total and done_here > 0 and self.completed < self.total:
            left = (now - self.base_time) / done_here * (self.total - self.completed)
            parts.append(f"about {_clock(left)} left")
        self._print(parts)

    def skip(self, n: int) -> None:
        self.completed += n
        self.base, self.base_time = self.completed, time.perf_counter()
        self._print([f"{count_text(self.description, self.completed, self.total)} already done (resumed)"])

    def set_total(self, n: int) -> None:
        self.total, self.completed, self.base = n, 0, 0
        self.base_time = time.perf_counter()

    def describe(self, text: str) -> None:
        self.description = text

    def status(self, text: str) -> None:
        self.status_text = text


@contextlib.contextmanager
def progress_task(
    description: str, total: int | None = None, enabled: bool = True, lines: bool = False
) -> Iterator[ProgressTask]:
    """A rich progress bar on stderr (results stay alone on stdout), or a silent task when disabled.

    When stderr is not a terminal, ``lines`` prints one plain line per step (training, segmentation: long work a log
    should show); without it the task stays silent there.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled:
        yield ProgressTask(description=description, total=total)
        return
    if not console.is_terminal:  # a log file or CI gets no bar redrawn line by line
        if not lines:
            yield ProgressTask(description=description, total=total)
            return
        plain = PlainLines(description, total)
        yield ProgressTask(
            plain.advance, plain.set_total, plain.describe, plain.status, plain.skip, description, 0, total
        )
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task_id = progress.add_task(description, total=total, status="")
        yield ProgressTask(
            lambda n: progress.advance(task_id, n),
            lambda n: progress.update(task_id, total=n, completed=0),
            lambda text: progress.update(task_id, description=text),
            lambda text: progress.update(task_id, status=text),
            description=description,
            total=total,
        )
