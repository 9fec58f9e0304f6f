"""Progress on stderr that the CLI can switch off, and that library code drives through plain callables.

On a terminal it is a rich bar: what is running, done of total, the latest scores (loss, validation), time spent and
time left. Where stderr is a file or a pipe (a log, CI), a bar redrawn in place would leave nothing readable, so a
task made with ``lines=True`` prints one plain line per step instead::

    detector 2 of 3: epoch 7 of 15, loss 0.412, val AUC 0.871, 0:01:10 elapsed, about 0:00:40 left

Work inside one step (a long volume's slices, batch by batch) reports through a ``SliceProgress`` callable, shown as
a second bar on a terminal and, in a log, as a few plain lines per stage (``ProgressTask.detail``)::

    segmenting case.nii.gz: scan 1 of 1, scoring slices 64 of 600, 0:00:03 elapsed
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

SliceProgress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``, called by library code after each batch of a volume's slices: how many of its
``total`` slices ``stage`` has done (``"scoring slices", 64, 600``). Optional everywhere (None: silent), so MONAI's
evaluator and MONAI Label, which know nothing of it, run the same code."""


def batches(total: int, batch_size: int, progress: SliceProgress | None = None, stage: str = "") -> Iterator[slice]:
    """Consecutive ranges of at most ``batch_size`` of ``total`` items, as ``slice``s; after the caller's work on each,
    ``progress(stage, done, total)`` when given. The one batch loop of the library (scoring, Grad-CAM++, encoding,
    playing a volume's slices; training epochs)."""
    for start in range(0, total, batch_size):
        part = slice(start, min(start + batch_size, total))
        yield part
        if progress is not None:
            progress(stage, part.stop, total)


DETAIL_STEPS = 10
"""A stage's plain lines: its first batch, then one each tenth of its slices (the last included)."""
DETAIL_SECONDS = 10.0
"""A batch ending this long after the last plain line gets one anyway, so a log shows a slow stage is alive."""


@dataclass
class ProgressTask:
    """What library code sees: ``advance(n)``, ``set_total(n)``, ``describe(text)``, ``status(text)`` (the latest
    scores, shown after the count) and ``detail(stage, done, total)`` (inside the step under way, a ``SliceProgress``);
    a no-op when progress is off. It remembers where it is, for ``where()``."""

    _advance: Callable[[int], None] = lambda n: None
    _total: Callable[[int], None] = lambda n: None
    _describe: Callable[[str], None] = lambda text: None
    _status: Callable[[str], None] = lambda text: None
    _skip: Callable[[int], None] | None = None
    description: str = ""
    completed: int = 0
    total: int | None = None
    last_status: str = field(default="")
    _detail: SliceProgress = lambda stage, done, total: None

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

    def detail(self, stage: str, done: int, total: int) -> None:
        """Progress inside the current step (a ``SliceProgress``): ``stage`` has done ``done`` of ``total`` slices."""
        self._detail(stage, done, total)

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
        self.detail_stage, self.detail_step, self.detail_time = "", -1, self.started  # the last detail line

    def _print(self, parts: list[str]) -> None:
        print(", ".join(parts), file=self.stream, flush=True)

    def advance(self, n: int) -> None:
        now = time.perf_counter()
        self.completed += n
        self.detail_stage = ""  # the next step's first stage gets its line
        parts = [count_text(self.description, self.completed, self.total)]
        if self.status_text:
            parts.append(self.status_text)
        parts.append(f"{_clock(now - self.started)} elapsed")
        done_here = self.completed - self.base
        if self.total and done_here > 0 and self.completed < self.total:
            left = (now - self.base_time) / done_here * (self.total - self.completed)
            parts.append(f"about {_clock(left)} left")
        self._print(parts)

    def detail(self, stage: str, done: int, total: int) -> None:
        """A line for a batch of the step under way, rate-limited: a new stage, each tenth of the slices
        (``DETAIL_STEPS``), the last batch, or ``DETAIL_SECONDS`` since the last line; never one per batch of
        thousands."""
        now = time.perf_counter()
        step = DETAIL_STEPS * done // total if total > 0 else DETAIL_STEPS
        if stage == self.detail_stage and step <= self.detail_step and done < total:
            if now - self.detail_time < DETAIL_SECONDS:
                return
        self.detail_stage, self.detail_step, self.detail_time = stage, step, now
        current = self.completed + 1 if self.total is None else min(self.completed + 1, self.total)
        parts = [count_text(self.description, current, self.total), f"{stage} {done} of {total}"]
        self._print([*parts, f"{_clock(now - self.started)} elapsed"])

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
            plain.advance, plain.set_total, plain.describe, plain.status, plain.skip, description, 0, total,
            _detail=plain.detail,
        )  # fmt: skip
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
        detail = _DetailBar(progress)

        def advance(n: int) -> None:
            progress.advance(task_id, n)
            detail.hide()  # the step is done: its stages with it

        yield ProgressTask(
            advance,
            lambda n: progress.update(task_id, total=n, completed=0),
            lambda text: progress.update(task_id, description=text),
            lambda text: progress.update(task_id, status=text),
            description=description,
            total=total,
            _detail=detail.update,
        )


class _DetailBar:
    """A second bar under the task's: the stage of the step under way (``scoring slices 64/600``), restarted (timer
    and rate too) for each stage, hidden between steps."""

    def __init__(self, progress) -> None:
        self.progress, self.task_id, self.stage = progress, None, ""

    def update(self, stage: str, done: int, total: int) -> None:
        if self.task_id is None:
            self.task_id = self.progress.add_task(f"  {stage}", total=total, completed=done, status="")
        elif stage != self.stage:
            self.progress.reset(self.task_id, total=total, completed=done, description=f"  {stage}", visible=True)
        else:
            self.progress.update(self.task_id, total=total, completed=done, visible=True)
        self.stage = stage

    def hide(self) -> None:
        if self.task_id is not None:
            self.progress.update(self.task_id, visible=False)
            self.stage = ""
