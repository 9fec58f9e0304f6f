"""User-facing errors: one class, one line, naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class MedwssError(Exception):
    """Bad user input (a file, a folder, a manifest row, a config value).

    The CLI prints ``error: <path>: <problem>`` on stderr and exits with code 2; any other exception is a bug
    and keeps its traceback.

    Args:
        path: the file or folder at fault (or a config key when there is no file).
        problem: what is wrong, in a few words, lower case, no trailing period.
    """

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {self.problem}")
