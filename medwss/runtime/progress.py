"""Rich progress on stderr that the CLI can switch off, and that library code drives through plain callables."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass
class ProgressTask:
    """What library code sees: ``advance(n)`` and ``set_total(n)``; a no-op when progress is off."""

    _advance: Callable[[int], None] = lambda n: None
    _total: Callable[[int], None] = lambda n: None
    _describe: Callable[[str], None] = lambda text: None

    def advance(self, n: int = 1) -> None:
        self._advance(n)

    def set_total(self, n: int) -> None:
        self._total(n)

    def describe(self, text: str) -> None:
        self._describe(text)


@contextlib.contextmanager
def progress_task(description: str, total: int | None = None, enabled: bool = True) -> Iterator[ProgressTask]:
    """A rich progress bar on stderr (results stay alone on stdout), or a silent task when disabled."""
    from rich.console import Console

    console = Console(stderr=True)
    if not enabled or not console.is_terminal:  # a log file or CI gets no bar redrawn line by line
        yield ProgressTask()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task_id = progress.add_task(description, total=total)
        yield ProgressTask(
            lambda n: progress.advance(task_id, n),
            lambda n: progress.update(task_id, total=n),
            lambda text: progress.update(task_id, description=text),
        )
