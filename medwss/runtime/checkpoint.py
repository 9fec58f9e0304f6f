"""Checkpoints written atomically, loaded safely, and resumed only by the run they belong to.

``checkpoint_latest.pt`` is rewritten every N epochs/iterations, ``checkpoint_final.pt`` at the end (nnU-Net's
names); both go through a temporary file and ``os.replace``, so a reader never sees half a file.

Safe loading: ``torch.load(weights_only=True)`` only rebuilds tensors and plain containers, so a crafted file in a
run folder cannot run code. What is not a tensor (numpy RNG states) is stored in plain types (``to_safe``).

Provenance: every checkpoint records what it was trained on (a fingerprint of the training data, the settings, the
seed, the medwss version); ``check_provenance`` refuses to resume a checkpoint of another run (a copied bundle with
other data, changed settings) in one line that says to pass ``--restart``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.errors import MedwssError
from medwss.runtime.atomic import atomic_output

LATEST = "checkpoint_latest.pt"
FINAL = "checkpoint_final.pt"
RESTART_HINT = "pass --restart to start over"
_ARRAY = "__ndarray__"


def to_safe(value: Any) -> Any:
    """``value`` in the types ``weights_only`` loading accepts: numpy arrays become tensors, numpy scalars numbers."""
    if isinstance(value, np.ndarray):
        kind = value.dtype
        data = value.astype(np.int64) if kind.kind == "u" else value
        return {_ARRAY: torch.from_numpy(np.ascontiguousarray(data)), "dtype": kind.str}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: to_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_safe(v) for v in value)
    return value


def from_safe(value: Any) -> Any:
    """Inverse of ``to_safe``."""
    if isinstance(value, dict):
        if _ARRAY in value and set(value) == {_ARRAY, "dtype"}:
            return value[_ARRAY].numpy().astype(np.dtype(value["dtype"]))
        return {k: from_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_safe(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_safe(v) for v in value)
    return value


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (in safe types) with ``torch.save`` through a temporary file in the same folder."""
    with atomic_output(path) as tmp:
        torch.save(to_safe(state), tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint``, tensors and plain containers only.

    Raises:
        MedwssError: a corrupt, truncated, foreign or unsafe file (one line, with the ``--restart`` hint).
    """
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle is the same user problem: a bad file
        reason = " ".join(str(err).split())[:120] or type(err).__name__
        if "weights_only" in reason or "Unsupported global" in reason:
            reason = "it holds objects that safe loading refuses"
        raise MedwssError(path, f"corrupt or unsafe checkpoint ({reason}); {RESTART_HINT}") from None
    if not isinstance(state, dict):
        raise MedwssError(path, f"not a medwss checkpoint (a {type(state).__name__}); {RESTART_HINT}")
    return from_safe(state)


def resume_point(run_dir: str | Path, restart: bool = False) -> Path | None:
    """The checkpoint to resume from: the final one if the stage finished, else the latest; None to start over."""
    if restart:
        return None
    run = Path(run_dir)
    for name in (FINAL, LATEST):
        if (run / name).is_file():
            return run / name
    return None


def clear_checkpoints(run_dir: str | Path) -> list[Path]:
    """Remove every checkpoint under ``run_dir`` (ensemble members' sub-folders too): what ``--restart`` supersedes.

    Without this a restarted run interrupted before its first save would, on the next plain run, resume the old
    run's ``checkpoint_final.pt``.
    """
    removed = []
    run = Path(run_dir)
    if not run.is_dir():
        return removed
    for name in (LATEST, FINAL):
        for path in sorted(run.rglob(name)):
            try:
                path.unlink()
            except OSError as err:
                raise MedwssError(path, f"cannot remove the old checkpoint ({err.strerror})") from None
            removed.append(path)
    return removed


def fingerprint(*parts: Any) -> str:
    """A short SHA-256 of tensors, arrays and plain values (the training data a checkpoint was made from)."""
    digest = hashlib.sha256()

    def feed(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().contiguous()
            digest.update(f"{value.dtype}{tuple(value.shape)}".encode())
            digest.update(value.view(torch.uint8).numpy().tobytes() if value.numel() else b"")
        elif isinstance(value, np.ndarray):
            digest.update(f"{value.dtype}{value.shape}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, Mapping):
            for k in sorted(value, key=str):
                digest.update(str(k).encode())
                feed(value[k])
        elif isinstance(value, list | tuple):
            digest.update(f"[{len(value)}".encode())
            for v in value:
                feed(v)
        else:
            digest.update(repr(value).encode())

    for part in parts:
        feed(part)
    return digest.hexdigest()[:16]


def provenance(data_fingerprint: str, settings: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """What a checkpoint was trained on: data fingerprint, settings, seed, medwss version (plain types)."""
    from medwss import __version__

    return {
        "data": data_fingerprint,
        "settings": {k: to_safe(v) for k, v in settings.items()},
        "seed": int(seed),
        "version": str(__version__),
    }


def check_provenance(
    path: Path, state: Mapping[str, Any], expected: Mapping[str, Any], resumable: Iterable[str] = ()
) -> None:
    """Refuse to resume ``state`` unless it was made from the same data, settings, seed and medwss version.

    Args:
        resumable: settings that may change between runs (more epochs or iterations extend a finished run).

    Raises:
        MedwssError: the first difference, in one line, with the ``--restart`` hint.
    """
    stored = state.get("provenance")
    if not isinstance(stored, Mapping):
        raise MedwssError(path, f"checkpoint records no provenance (an older medwss made it); {RESTART_HINT}")
    if stored.get("data") != expected["data"]:
        raise MedwssError(path, f"checkpoint was trained on other data than this run's; {RESTART_HINT}")
    if stored.get("seed") != expected["seed"]:
        raise MedwssError(path, f"checkpoint was made with seed {stored.get('seed')}, not {expected['seed']}; "
                                f"{RESTART_HINT}")  # fmt: skip
    skip = set(resumable)
    ours, theirs = expected["settings"], dict(stored.get("settings") or {})
    changed = sorted(k for k in set(ours) | set(theirs) if k not in skip and _differs(ours.get(k), theirs.get(k)))
    if changed:
        raise MedwssError(path, f"checkpoint was made with other settings ({', '.join(changed)}); {RESTART_HINT}")
    if stored.get("version") != expected["version"]:
        raise MedwssError(path, f"checkpoint was made by medwss {stored.get('version')}, this is "
                                f"{expected['version']}; {RESTART_HINT}")  # fmt: skip


def _differs(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) != len(b) or any(_differs(x, y) for x, y in zip(a, b, strict=True))
    return a != b
