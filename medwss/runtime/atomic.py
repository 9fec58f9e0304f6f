"""Atomic writes: a reader never sees half a file, and a failed write leaves nothing behind.

A temporary file is named ``.<name>.<pid>-<random>.partial<suffix>`` beside its target, so a run killed before its
rename leaves a file that the next run recognises (its process is gone) and removes (``remove_stale_partials``).
Every OS error (read-only folder, full disk, a parent that is a file) becomes the one-line ``MedwssError``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from medwss.errors import MedwssError

_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[0-9a-f]{8}\.partial")
LEGACY_STALE_S = 3600.0  # temporary files of older versions carry no pid: removed once an hour old


def os_problem(err: OSError, action: str = "cannot write") -> str:
    """An OSError in a few words: 'cannot write (No space left on device)'."""
    reason = err.strerror or str(err) or type(err).__name__
    if err.errno == errno.ELOOP:
        reason = "symbolic link loop"
    elif err.errno in (errno.EEXIST, errno.ENOTDIR):
        reason = "a folder on its path is a file"
    return f"{action} ({reason})"


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_partials(folder: str | Path, name: str | None = None) -> list[Path]:
    """Remove temporary files that a killed run left in ``folder`` (for target ``name`` only, when given)."""
    removed: list[Path] = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if not match or (name is not None and match["name"] != name):
            continue
        try:
            if match["pid"] is not None:
                stale = not pid_alive(int(match["pid"]))
            else:
                stale = time.time() - entry.lstat().st_mtime > LEGACY_STALE_S
            if stale and entry.is_file():
                entry.unlink()
                removed.append(entry)
        except OSError:
            continue
    return removed


def partial_path(out: Path) -> Path:
    suffix = "".join(out.suffixes[-2:]) if out.name.endswith(".nii.gz") else out.suffix
    return out.with_name(f".{out.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial{suffix}")


@contextlib.contextmanager
def atomic_output(out: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` (same suffix, so writers that pick a format by it still work); on
    success it replaces ``out``, on failure it is removed.

    Raises:
        MedwssError: the folder cannot be made or written, the disk is full, ``out`` is a folder.
    """
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise MedwssError(out, os_problem(err)) from None
    remove_stale_partials(out.parent, out.name)
    tmp = partial_path(out)
    try:
        yield tmp
        if out.is_dir():
            raise MedwssError(out, "is a folder; give a file name")
        os.replace(tmp, out)
    except OSError as err:
        raise MedwssError(out, os_problem(err)) from None
    finally:
        with contextlib.suppress(OSError):
            if tmp.exists() or tmp.is_symlink():  # under a parent that is a file, exists() is False, not an error
                tmp.unlink()
