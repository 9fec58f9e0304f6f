"""Keep third-party chatter (C-library lines on stderr, Python warnings) away from the user unless ``--verbose``.

Why: ITK's MetaImage reader, GDCM and others print straight to the process's stderr (file descriptor 2), so a bad
file gives a few lines of C++ diagnostics before medwss's own one-line ``error:``; MONAI warns about optional
codecs on every start. What they say is kept for ``--verbose`` and for the error message, not thrown away.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

logger = logging.getLogger("medwss")

_verbose = False


THIRD_PARTY_LOGGERS = ("monai", "nibabel", "PIL", "matplotlib", "torch", "SimpleITK", "pydicom", "highdicom")


def set_verbose(verbose: bool) -> None:
    """Show (True) or hide (False, the default) third-party warnings, logs and C-library output for this process."""
    global _verbose
    _verbose = verbose
    level = logging.NOTSET if verbose else logging.ERROR
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(level)
    if verbose:
        logging.getLogger("monai.data.nvimgcodec_pydicom_plugin").setLevel(logging.NOTSET)
        warnings.resetwarnings()
    else:
        warnings.filterwarnings("ignore")  # deprecations and notes of libraries: not the user's business


def is_verbose() -> bool:
    return _verbose or logger.isEnabledFor(logging.INFO)


class Captured:
    """What a C library printed inside ``native_stderr`` (filled in when the block ends)."""

    text: str = ""

    def last_line(self) -> str:
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        return lines[-1] if lines else ""


@contextlib.contextmanager
def native_stderr() -> Iterator[Captured]:
    """Capture what C code writes on file descriptor 2 inside the block; replay it on stderr only when verbose.

    Python-level writes to ``sys.stderr`` are flushed first so they keep their order.
    """
    captured = Captured()
    try:
        sys.stderr.flush()
        fd = sys.stderr.fileno() if hasattr(sys.stderr, "fileno") else 2
    except (OSError, ValueError):
        fd = 2
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 at all: nothing to hide
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            captured.text = sink.read().decode("utf-8", "replace")
            if captured.text and is_verbose():
                os.write(fd if fd != 2 else 2, captured.text.encode())
