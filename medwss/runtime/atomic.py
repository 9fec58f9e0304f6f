"""Atomic writes: a reader never sees half a file, and a failed write leaves nothing behind."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(out: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``out`` (same suffix, so writers that pick a format by it still work); on
    success it replaces ``out``, on failure it is removed."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(out.suffixes[-2:]) if out.name.endswith(".nii.gz") else out.suffix
    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():  # exists(), not unlink(missing_ok): under a parent that is a file it is False, not an error
            tmp.unlink()
