"""What the MONAI Label app lets a request reach, and where it may listen (``apps/monailabel``).

MONAI Label takes ``image`` and ``label`` from the request (query or JSON params) and treats an existing path as a
file to read: without a check any file the server can read could be segmented, and the error text would say
whether a path exists. ``confined`` lets through only files under the studies folder and MONAI Label's own uploads
(``tmp*`` files it writes straight into the system temporary folder); every other path, a missing one and an
unreadable one get the same answer. The server has no authentication, and ``monailabel start_server`` listens on
0.0.0.0 by default: ``host_problem`` makes the app refuse to serve unless it was started on a loopback address or
told otherwise (``--conf allow_remote true``).

Kept apart from the app so that it is tested in the main environment (the app needs the MONAI Label one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

LOOPBACK = ("127.0.0.1", "localhost", "::1")
NOT_AVAILABLE = "no readable study with this id or path"


def _resolved(path: Path) -> Path | None:
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None


def confined(value: str, studies: Path, uploads: Path | None = None) -> Path | None:
    """``value`` as a readable path inside ``studies`` (or an upload of MONAI Label), else None.

    Symbolic links are resolved first, so a link in the studies folder that points outside it is refused too.
    """
    path = _resolved(Path(value))
    if path is None or not os.access(path, os.R_OK):
        return None
    root = _resolved(studies)
    if root is not None and (path == root or root in path.parents):
        return path
    upload_root = _resolved(uploads if uploads is not None else Path(tempfile.gettempdir()))
    if upload_root is not None and path.parent == upload_root and path.name.startswith("tmp") and path.is_file():
        return path
    return None


def host_problem(argv: Sequence[str], conf: Mapping[str, str]) -> str | None:
    """Why the server must not serve with this command line, or None: it listens beyond this machine (MONAI Label's
    default host is 0.0.0.0) and ``allow_remote`` is not set."""
    if "start_server" not in argv:  # not MONAI Label's command line (a spawned worker, an embedding): not judged
        return None
    host = "0.0.0.0"  # MONAI Label's default
    for i, arg in enumerate(argv):
        if arg in ("--host", "-i") and i + 1 < len(argv):
            host = argv[i + 1]
        elif arg.startswith("--host="):
            host = arg.split("=", 1)[1]
    if host in LOOPBACK or str(conf.get("allow_remote", "")).lower() in ("1", "true", "yes"):
        return None
    return (
        f"refusing to serve on {host}: the MONAI Label server has no authentication; start it with "
        "--host 127.0.0.1 (reach it through an SSH tunnel), or pass --conf allow_remote true on a trusted network"
    )
