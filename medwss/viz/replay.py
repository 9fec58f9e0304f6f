"""A replay of one RLSP game as a PNG strip: who took which patch in which order, how it ended, what the detector saw.

Panels: (1) the slice with every play-phase pick numbered in order, agent a red, agent b blue; (2) the end: the
patches each agent kept, the final picks outlined, the terminator, winner and returns; (3) the detector's patch
scores as a heat map, the ground the agents were scored on (nnU-Net-style overlay PNGs, STYLE §5).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from medwss.game.record import AGENT_NAMES, GameRecord, Phase
from medwss.viz.figures import save_figure

COLOURS: tuple[str, str] = ("tab:red", "tab:blue")
"""Agent a, agent b."""


def _as_numpy(array: np.ndarray | torch.Tensor) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)


def draw_replay(
    image: np.ndarray | torch.Tensor,
    record: GameRecord,
    scores: np.ndarray | torch.Tensor,
    out_png: str | Path,
    title: str = "",
    codes: Sequence[str] | None = None,
) -> Path:
    """Write the replay strip of `record` played on `image` (H, W) with detector `scores` (G, G); atomic write.

    With ``codes`` (where the image's axes point, e.g. ``("R", "A")`` on MONAI's RAS working grid) the slice is
    shown as ``segment`` overlays show it (``medwss.viz.overlay.display_slice``); without, as the array is.

    Raises:
        ValueError: the image is not 2D, or the scores are not on the record's grid, or H, W not multiples of G.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import patheffects
    from matplotlib.patches import Rectangle

    img, grid_scores = _as_numpy(image).astype(np.float32), _as_numpy(scores).astype(np.float32)
    g = record.grid_size
    if img.ndim != 2:
        raise ValueError(f"image must be (H, W), got shape {img.shape}")
    if grid_scores.shape != (g, g):
        raise ValueError(f"scores must be ({g}, {g}) like the record's grid, got {grid_scores.shape}")
    if img.shape[0] % g or img.shape[1] % g:
        raise ValueError(f"image size {img.shape[0]}x{img.shape[1]} is not a multiple of the grid size {g}")
    cells = np.arange(g * g).reshape(g, g)  # cell r * g + c of the record's grid
    if codes is not None:
        from medwss.viz.overlay import display_slice

        img, grid_scores, cells = (display_slice(a, codes) for a in (img, grid_scores, cells))
    where = {int(cell): (r, c) for (r, c), cell in np.ndenumerate(cells)}  # record cell -> displayed cell
    height, width = img.shape
    ph, pw = height / g, width / g

    def shown_rc(patch: int) -> tuple[int, int]:
        row, col = record.patch_rc(patch)
        return where[row * g + col]

    def box(ax, patch: int, colour: str, **kwargs) -> tuple[float, float]:
        row, col = shown_rc(patch)
        ax.add_patch(Rectangle((col * pw - 0.5, row * ph - 0.5), pw, ph, edgecolor=colour, **kwargs))
        return col * pw + pw / 2 - 0.5, row * ph + ph / 2 - 0.5

    fig, axes = plt.subplots(1, 3, figsize=(13, 4.8))
    font = min(12.0, max(4.0, 110.0 / g))  # about a third of a patch on the 4-inch panels
    outline = [patheffects.withStroke(linewidth=1.5, foreground="black")]
    order, kept = 0, ([], [])
    for ax in axes[:2]:
        ax.imshow(img, cmap="gray")
    for move in record.moves:
        if move.patch is None or move.phase != Phase.PLAY:
            continue
        order += 1
        kept[move.agent].append(move.patch)
        x, y = box(axes[0], move.patch, COLOURS[move.agent], facecolor=COLOURS[move.agent], alpha=0.35, lw=1)
        axes[0].text(x, y, str(order), color="white", fontsize=font, ha="center", va="center", path_effects=outline)
    axes[0].set_title(f"picks in order ({order}): a red, b blue")
    for agent, patches in enumerate(kept):
        for patch in patches:
            box(axes[1], patch, COLOURS[agent], facecolor=COLOURS[agent], alpha=0.45, lw=0)
    for agent, patch in enumerate(record.final_patches):
        if patch is not None:
            x, y = box(axes[1], patch, COLOURS[agent], facecolor="none", lw=2.5, linestyle="--")
            axes[1].text(x, y, "F", color="white", fontsize=font, ha="center", va="center", path_effects=outline)
    who = "nobody" if record.terminator is None else AGENT_NAMES[record.terminator]
    won = "-" if record.winner is None else AGENT_NAMES[record.winner]
    axes[1].set_title(
        f"{record.end_reason.name.lower()} by {who}, winner {won}\n"
        f"turns {record.turns}, returns a {record.returns[0]:+.1f} b {record.returns[1]:+.1f}",
        fontsize=9,
    )
    heat = axes[2].imshow(grid_scores, cmap="magma", vmin=0.0, vmax=1.0)
    for agent, patches in enumerate(kept):  # where the picks fell on the score grid (cells of size 1)
        for patch in patches:
            row, col = shown_rc(patch)
            cell = Rectangle((col - 0.5, row - 0.5), 1, 1, edgecolor=COLOURS[agent], facecolor="none", lw=1.5)
            axes[2].add_patch(cell)
    axes[2].set_title("detector patch scores (picks outlined)")
    fig.colorbar(heat, ax=axes[2], fraction=0.046)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.95) if title else None)
    return save_figure(fig, out_png, dpi=90)
