"""Training curves as a PNG (nnU-Net's ``progress.png``): one panel per tag group, redrawn at each checkpoint."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from medwss.viz.figures import save_figure


def plot_progress(records: list[dict[str, Any]], out: str | Path, title: str = "") -> Path | None:
    """Draw every numeric tag against ``step``, grouped by the tag's prefix (``losses/``, ``charts/``...).

    Returns the PNG path, or None when there is nothing to draw yet.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)
    for record in records:
        for tag, value in record.items():
            if tag == "step" or not isinstance(value, int | float):
                continue
            group = tag.split("/")[0] if "/" in tag else "other"
            xs, ys = groups[group].setdefault(tag, ([], []))
            xs.append(record["step"])
            ys.append(value)
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(8, 2.6 * len(groups)), squeeze=False)
    for ax, (group, series) in zip(axes[:, 0], sorted(groups.items()), strict=True):
        for tag, (xs, ys) in sorted(series.items()):
            ax.plot(xs, ys, marker="." if len(xs) < 30 else None, label=tag.split("/", 1)[-1])
        ax.set_ylabel(group)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, out, dpi=90)
