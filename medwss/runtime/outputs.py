"""Check and claim output files before the work starts, so a bad ``-o`` fails in a second, not after an hour.

``claim_outputs`` refuses an output that is a folder, lies under a file, loops through symbolic links, is an input,
or cannot be written (it creates the folder and a lock file there, which proves both). The lock file
``.<name>.lock`` holds the claiming process's id until the output is written: a second ``medwss`` process that
would write the same file is refused in one line instead of silently replacing the first one's result. A lock left
by a killed process (its id no longer runs) is taken over, and its temporary files are removed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from medwss.errors import MedwssError
from medwss.runtime.atomic import os_problem, pid_alive, remove_stale_partials


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


def check_output(out: Path, inputs: Iterable[Path] = ()) -> Path:
    """``out`` resolved, after refusing what cannot be an output file (see the module docstring).

    Raises:
        MedwssError: a folder, a path under a file, a link loop, or an input.
    """
    try:
        resolved = out.resolve()
    except (OSError, RuntimeError):  # Python 3.11 raises RuntimeError on a symlink loop
        raise MedwssError(out, "cannot write (symbolic link loop)") from None
    if out.is_symlink() and not out.exists():
        raise MedwssError(out, "is a dangling or looping symbolic link; remove it or choose another output")
    if out.is_dir():
        raise MedwssError(out, "is a folder; give a file name")
    if out.exists() and not out.is_file():
        raise MedwssError(out, "is not a regular file (a device, pipe or socket); choose another output")
    for parent in resolved.parents:
        if parent.exists() and not parent.is_dir():
            raise MedwssError(out, f"cannot write under {parent}: it is a file, not a folder")
    for source in inputs:
        try:
            if resolved == Path(source).resolve():
                raise MedwssError(out, "refusing to overwrite an input")
        except (OSError, RuntimeError):
            continue
    return resolved


def _take_lock(out: Path) -> Path:
    """Create ``.<name>.lock`` holding this process's pid, atomically; a lock whose process is gone is taken over.

    Why a hard link of a finished file rather than ``O_EXCL`` then a write: between those two steps another process
    would read an empty lock, take it for a killed run's and remove it, and both would write (seen when two
    ``medwss segment`` start at the same instant). A link appears with its pid already in it, or not at all.
    """
    lock = lock_path(out)
    for _ in range(3):
        try:
            _create_with_pid(lock)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and pid_alive(holder):
                problem = f"is being written by another medwss process (pid {holder})"
                raise MedwssError(out, f"{problem}; wait for it or choose another output") from None
            with contextlib.suppress(OSError):
                lock.unlink()  # left by a killed run
            continue
        except OSError as err:
            raise MedwssError(out, os_problem(err)) from None
        return lock
    raise MedwssError(out, "cannot claim the output: its lock file keeps reappearing")


def _create_with_pid(lock: Path) -> None:
    """``lock`` with this pid in it, created atomically. Raises FileExistsError when it exists.

    A file system without hard links falls back to ``O_EXCL`` and a write (the short window above comes back).
    """
    pid = os.getpid()
    draft = lock.with_name(f"{lock.name}.{pid}")
    draft.write_text(f"{pid}\n")
    try:
        os.link(draft, lock)
    except FileExistsError:
        raise
    except OSError:  # no hard links here
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "w") as f:
            f.write(f"{pid}\n")
    finally:
        with contextlib.suppress(OSError):
            draft.unlink()


@contextlib.contextmanager
def claim_outputs(outputs: Sequence[Path], inputs: Iterable[Path] = ()) -> Iterator[list[Path]]:
    """Check every output, make its folder, remove stale temporary files, lock it; release the locks at the end.

    Raises:
        MedwssError: as ``check_output``, an unwritable folder, or an output locked by a live process.
    """
    inputs = list(inputs)
    locks: list[Path] = []
    try:
        for out in outputs:
            out = Path(out)
            check_output(out, inputs)
            try:
                out.parent.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise MedwssError(out, os_problem(err)) from None
            if not os.access(out.parent, os.W_OK | os.X_OK):
                raise MedwssError(out, "cannot write (permission denied)")
            remove_stale_partials(out.parent, out.name)
            locks.append(_take_lock(out))
        yield [Path(o) for o in outputs]
    finally:
        for lock in locks:
            with contextlib.suppress(OSError):
                lock.unlink()
