"""The volume stop: how many patches agent a takes on each slice, agreed along the volume.

Why: alone at inference, agent a's picks on a slice do not depend on when it stops (the board changes only by its
own picks), so a slice's mask is the agent's ranking of the patches cut at a count, and the count is the noisy part.
Stopped slice by slice, the agent's count jumps from one slice to the next while the organ's cross-section changes
smoothly, and slices at the organ's ends, or off it, get patches. On the prostate cohort's held-out patients
(``benchmarks/results/stop_study_gauss.md``, 3 seeds x 3 folds) the agent's own ranking cut at the reference's
count scores 0.755 3D Dice against 0.654 for its own stop: the stop, not the picks, is what is left to win.

The volume stop keeps the agent's stopping rule on each slice (the ``quantile`` of its own stopping time, or the
game's ``threshold`` test at ``stop_level``, ``selfplay.rollout.STOPPING_RULES``) and then, along the volume's
slices:

1. ``count_width``: each slice's count becomes the median of the counts of the ``count_width`` slices around it;
2. ``gate``: slices whose detector presence probability is below it take no patch;
3. ``one_run``: only the longest run of consecutive slices the gate passes keeps its patches (one organ, one
   connected stretch of slices; a stray slice far from it is a false positive).

It needs nothing the weak labels do not give (the slice gate is the detector's own slice probability) and no
retraining: it is an inference setting (``inferer#volume_stop`` in ``inference.yaml``), picked on validation
patients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage


@dataclass(frozen=True)
class VolumeStop:
    """Counts agreed along a volume (module doc). The defaults change nothing: each slice stops on its own.

    Args:
        count_width: odd number of slices whose median count each slice takes (1 = off).
        gate: slices whose presence probability is below it take no patch (0 = off).
        one_run: keep only the longest run of consecutive slices at or above ``gate``.

    Raises:
        ValueError: an even or non-positive width, a gate outside [0, 1).
    """

    count_width: int = 1
    gate: float = 0.0
    one_run: bool = False

    def __post_init__(self) -> None:
        if int(self.count_width) != self.count_width or self.count_width < 1 or self.count_width % 2 == 0:
            raise ValueError(f"volume_stop count_width must be an odd number of slices >= 1, got {self.count_width}")
        if not 0.0 <= float(self.gate) < 1.0:
            raise ValueError(f"volume_stop gate must lie in [0, 1), got {self.gate}")

    @property
    def active(self) -> bool:
        """Whether it changes anything compared with each slice stopping alone."""
        return self.count_width > 1 or self.gate > 0 or self.one_run

    @property
    def needs_gate(self) -> bool:
        """Whether it reads the slices' presence probabilities."""
        return self.gate > 0 or self.one_run

    def counts(
        self, counts: torch.Tensor, gate: torch.Tensor | None, groups: Sequence[str] | None = None
    ) -> torch.Tensor:
        """(N,) per-slice counts -> the agreed counts. Rows are slices in order; ``groups`` names each row's volume
        (None = one volume), so neighbours never cross from one patient to the next.

        Raises:
            ValueError: the gate is needed but missing.
        """
        if self.needs_gate and gate is None:
            raise ValueError("this volume stop reads the slice gate: give the slices' presence probabilities")
        out = counts.clone()
        for rows in volume_rows(len(counts), groups):
            agreed = median_along_slices(counts[rows], self.count_width)
            if self.needs_gate:
                on = gate[rows].to(counts.device) >= self.gate
                if self.one_run:
                    on = longest_run(on)
                agreed = torch.where(on, agreed, 0)
            out[rows] = agreed
        return out


def volume_rows(n: int, groups: Sequence[str] | None) -> list[torch.Tensor]:
    """Row indices of each volume, in order of first appearance (all rows when ``groups`` is None)."""
    if groups is None:
        return [torch.arange(n)]
    if len(groups) != n:
        raise ValueError(f"{len(groups)} volume names for {n} slices")
    names = np.asarray(groups)
    return [torch.as_tensor(np.nonzero(names == g)[0]) for g in dict.fromkeys(groups)]


def median_along_slices(values: torch.Tensor, width: int) -> torch.Tensor:
    """Each slice's median with its ``width`` - 1 neighbours, the edge slices repeated at the volume's ends
    (``scipy.ndimage.median_filter``, mode ``nearest``; an odd width keeps the counts whole)."""
    if width <= 1 or len(values) == 0:
        return values.clone()
    filtered = ndimage.median_filter(values.cpu().numpy(), size=width, mode="nearest")
    return torch.as_tensor(filtered, dtype=values.dtype, device=values.device)


def longest_run(on: torch.Tensor) -> torch.Tensor:
    """(N,) bool -> only the longest run of consecutive True kept (the first of equally long ones)."""
    runs, count = ndimage.label(on.bool().cpu().numpy())
    if count == 0:
        return torch.zeros_like(on, dtype=torch.bool)
    longest = 1 + int(np.argmax(np.bincount(runs)[1:]))  # argmax: the first of equally long runs
    return torch.as_tensor(runs == longest, device=on.device)


def quantile_counts(p_stop: torch.Tensor, order: torch.Tensor, quantile: float) -> torch.Tensor:
    """Patches taken on each slice under the rule "stop when P(not stopped yet) < 1 - quantile", from the agent's
    ranking and P(terminate) at each step (``rollout.agent_ranking``): exactly what the ``quantile`` stopping rule
    of ``rollout.play_alone`` takes."""
    survival = torch.cumprod(1.0 - p_stop, dim=1)
    stop = (survival < 1.0 - quantile) & (p_stop > 0)
    legal_steps = (order >= 0).sum(1)
    first = torch.where(stop.any(1), stop.float().argmax(1), legal_steps)
    return torch.minimum(first, legal_steps)


def threshold_counts(order: torch.Tensor, scores: torch.Tensor, level: float) -> torch.Tensor:
    """Patches taken on each slice under the "threshold" stopping rule at this score level: agent a's picks up to
    the first one that scores below ``level`` (or the end of its ranking): exactly what ``rollout.play_alone`` takes
    with ``stopping="threshold"`` at that level. (B, T) ranking (-1 = no pick), (B, G*G) scores -> (B,) counts."""
    taken = scores.to(order.device).gather(1, order.clamp(min=0))
    below = (order < 0) | (taken < level)
    return torch.where(below.any(1), below.float().argmax(1), order.shape[1])


def cut_ranking(order: torch.Tensor, counts: torch.Tensor, grid: int) -> torch.Tensor:
    """(B, G, G) bool: each slice's first ``counts`` picks of ``order`` (B, T) (-1 entries are steps without a pick,
    after the board ran out)."""
    n, steps = order.shape
    take = (torch.arange(steps, device=order.device)[None] < counts[:, None].to(order.device)) & (order >= 0)
    slot = torch.where(order >= 0, order, grid * grid)  # steps without a pick write to a spare column
    out = torch.zeros(n, grid * grid + 1, dtype=torch.bool, device=order.device)
    out.scatter_(1, slot, take)
    return out[:, :-1].view(n, grid, grid)


@torch.no_grad()
def play_volume_stop(
    policy,
    base: torch.Tensor,
    scores: torch.Tensor | None,
    region: torch.Tensor | None,
    rules,
    *,
    stop_quantile: float,
    volume_stop: VolumeStop,
    gate: torch.Tensor | None,
    groups: Sequence[str] | None = None,
    batch_size: int = 256,
    progress=None,
    stopping: str = "quantile",
    stop_level: float = 1.0,
) -> torch.Tensor:
    """Agent a alone on every slice, stopped by ``volume_stop``: (B, G, G) bool patches.

    Each slice's game is played (``rollout.agent_ranking``) until its own rule has stopped it (``stopping``:
    "quantile" at ``stop_quantile``, "median" (quantile 0.5), or "threshold": the first pick scoring below
    ``stop_level`` x the game's ROI threshold); the counts are agreed along each volume (``VolumeStop.counts``) and
    each slice's ranking is cut at its agreed count. A median never exceeds the largest count it reads, so a ranking
    played as long as the longest stop is long enough: one batch of games plays that long by itself; when a volume
    spans several batches and a slice is agreed more patches than its batch played (and its board still has them),
    the games are played again to the longest stop.
    """
    from medwss.selfplay.rollout import agent_ranking

    if stopping == "threshold":
        level = stop_level * rules.roi_threshold
        stop = {"stop_threshold": level}
    elif stopping in ("quantile", "median"):
        stop_quantile = stop_quantile if stopping == "quantile" else 0.5
        stop = {"stop_quantile": stop_quantile}
    else:
        raise ValueError(f"a volume stop agrees the 'quantile' or 'threshold' rule's counts, got stopping {stopping!r}")
    order, p_stop = agent_ranking(policy, base, scores, region, rules, batch_size=batch_size, progress=progress,
                                  **stop)  # fmt: skip
    if stopping == "threshold":  # no scores: all zeros, as the game fills them (nothing is ROI, stop at once)
        flat = torch.zeros(order.shape[0], rules.grid_size**2) if scores is None else scores.flatten(1)
        own = threshold_counts(order, flat, level)
    else:
        own = quantile_counts(p_stop, order, stop_quantile)
    counts = volume_stop.counts(own, gate, groups)
    played = (order >= 0).sum(1)
    board = (torch.full_like(played, rules.grid_size**2) if region is None
             else region.flatten(1).sum(1).to(played.device))  # fmt: skip
    if bool(((counts > played) & (played < board)).any()):  # the rare correction: no second progress report
        order, _ = agent_ranking(policy, base, scores, region, rules, min_steps=int(own.max()), batch_size=batch_size,
                                 **stop)  # fmt: skip
    return cut_ranking(order, counts, rules.grid_size)
