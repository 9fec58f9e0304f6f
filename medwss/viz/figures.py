"""Saving matplotlib figures: one place for the atomic write and the close every PNG writer needs."""

from __future__ import annotations

from pathlib import Path

from medwss.runtime.atomic import atomic_output


def save_figure(fig, out: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as ``out`` through a temporary file (no half-written PNG), and always close it (pyplot keeps
    every open figure alive, so a long run that draws many would grow without the close)."""
    import matplotlib.pyplot as plt

    try:
        with atomic_output(out) as tmp:
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return Path(out)
