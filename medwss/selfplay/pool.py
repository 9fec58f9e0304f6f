"""Frozen past policies to play against, and how to pick one (prioritised fictitious self-play, RLSP §3.4).

Agent a is the newest policy (the learner); agent b is drawn from the pool of snapshots. "prioritised" draws from a
normal over pool positions centred mid-pool (mean 0.5 x size, std 0.25 x size) truncated to the pool, so the learner
mostly meets opponents neither as weak as the first snapshots nor as close to itself as the last; "uniform"
(fictitious play) and "vanilla" (the learner plays itself) are the paper's ablations.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

OpponentSampling = Literal["prioritised", "uniform", "vanilla"]
SAMPLING_MODES: tuple[str, ...] = ("prioritised", "uniform", "vanilla")
LEARNER = -1
"""Opponent index meaning "the learner itself" (vanilla self-play)."""
LearnerSeats = Literal["a", "both"]
LEARNER_SEATS: tuple[str, ...] = ("a", "both")


@dataclass(frozen=True)
class PoolSettings:
    """Who the learner plays against, and from which seat (``selfplay#pool`` in a bundle's ``train_selfplay.yaml``).

    One block because these choose the opponents the learner meets, the part of RLSP that keeps self-play from
    collapsing (§3.4); validated here so a bad mode fails when the config is read, not after the first iteration.
    """

    snapshot_every: int = 5
    """K: the learner joins the opponent pool every K updates (RLSP §3.4)."""
    pool_size: int = 20
    """Snapshots kept; the oldest is dropped."""
    opponent_sampling: OpponentSampling = "prioritised"
    """"prioritised" (truncated normal over the pool, the paper), "uniform" (fictitious play) or "vanilla"."""
    mean_fraction: float = 0.5
    """Prioritised sampling: mean of the normal as a fraction of the pool size."""
    std_fraction: float = 0.25
    """Prioritised sampling: std of the normal as a fraction of the pool size."""
    learner_seats: LearnerSeats = "both"
    """"a": the learner is always agent a (moves first); "both": agent a in even games, b in odd ones, so it also
    learns the non-terminator's final pick that its snapshots must make as opponents (else "terminate at once" wins
    against weak finders and self-play stalls there)."""

    def __post_init__(self) -> None:
        if self.opponent_sampling not in SAMPLING_MODES:
            raise ValueError(f"opponent_sampling must be one of {SAMPLING_MODES}, got {self.opponent_sampling!r}")
        if self.learner_seats not in LEARNER_SEATS:
            raise ValueError(f'learner_seats must be "a" or "both", got {self.learner_seats!r}')
        for name in ("snapshot_every", "pool_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        # The sampler checks these too, but only when it first draws: a config error should not wait for that.
        if not (math.isfinite(self.mean_fraction) and math.isfinite(self.std_fraction) and self.std_fraction > 0):
            raise ValueError(f"mean_fraction must be finite and std_fraction positive, got {self.mean_fraction}, "
                             f"{self.std_fraction}")  # fmt: skip


def sample_opponent_index(
    pool_size: int,
    mode: OpponentSampling,
    rng: np.random.Generator,
    mean_fraction: float = 0.5,
    std_fraction: float = 0.25,
    size: int | None = None,
) -> int | np.ndarray:
    """Index of the opponent snapshot (0 = oldest), or LEARNER for vanilla self-play.

    Prioritised: a position x ~ N(mean_fraction * n, (std_fraction * n)^2) on the continuous pool [0, n), redrawn
    until it falls inside, then floored; so the mean index sits at the pool's middle, (n - 1) / 2 for 0.5.

    Args:
        pool_size: snapshots in the pool, n >= 1 (vanilla needs none).
        mode: "prioritised", "uniform" or "vanilla".
        rng: the opponent sampler's own generator (checkpointed with the run).
        mean_fraction, std_fraction: the normal's mean and std as fractions of the pool size.
        size: None for one int, else an int64 array of that many draws.
    """
    if mode not in SAMPLING_MODES:
        raise ValueError(f"opponent sampling must be one of {SAMPLING_MODES}, got {mode!r}")
    count = 1 if size is None else int(size)
    if mode == "vanilla":
        draws = np.full(count, LEARNER, dtype=np.int64)
        return int(draws[0]) if size is None else draws
    if pool_size < 1:
        raise ValueError(f"the pool is empty: {mode} sampling needs at least one snapshot")
    if mode == "uniform":
        draws = rng.integers(0, pool_size, size=count, dtype=np.int64)
    else:
        if not (math.isfinite(mean_fraction) and math.isfinite(std_fraction) and std_fraction > 0):
            raise ValueError(f"need a finite mean and a positive std fraction, got {mean_fraction}, {std_fraction}")
        mean, std = mean_fraction * pool_size, std_fraction * pool_size
        draws = np.empty(count, dtype=np.int64)
        todo = np.arange(count)
        # Rejection sampling, ~95% accepted at the default fractions. Not scipy.stats.truncnorm: same distribution, but
        # other draws for a seed, so recorded self-play runs would no longer reproduce their weights (issue 13).
        for _ in range(1000):
            x = rng.normal(mean, std, size=todo.size)
            inside = (x >= 0) & (x < pool_size)
            draws[todo[inside]] = np.floor(x[inside]).astype(np.int64)
            todo = todo[~inside]
            if todo.size == 0:
                break
        else:
            raise ValueError(f"the normal N({mean}, {std}) hardly overlaps the pool [0, {pool_size})")
    return int(draws[0]) if size is None else draws


class OpponentPool:
    """Snapshots (state_dicts on CPU) of the learner, oldest first, at most `max_size`, the oldest dropped.

    Args:
        max_size: snapshots kept.
        snapshot_every: K, `maybe_add` takes a snapshot every K updates.
    """

    def __init__(self, max_size: int, snapshot_every: int = 1) -> None:
        if max_size < 1 or snapshot_every < 1:
            raise ValueError(f"max_size and snapshot_every must be >= 1, got {max_size}, {snapshot_every}")
        self.max_size, self.snapshot_every = max_size, snapshot_every
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.iterations: list[int] = []
        """Iteration at which each snapshot was taken (0 = the initial policy), for logs and replays."""

    def __len__(self) -> int:
        return len(self.snapshots)

    def add(self, state_dict: Mapping[str, torch.Tensor], iteration: int) -> None:
        """Store a frozen copy of `state_dict`; drop the oldest snapshot beyond `max_size`."""
        self.snapshots.append({k: v.detach().to("cpu", copy=True) for k, v in state_dict.items()})
        self.iterations.append(int(iteration))
        if len(self.snapshots) > self.max_size:
            del self.snapshots[0], self.iterations[0]

    def maybe_add(self, policy: torch.nn.Module, iteration: int) -> bool:
        """Snapshot `policy` if `iteration` is a multiple of K; True when one was taken."""
        if iteration % self.snapshot_every:
            return False
        self.add(policy.state_dict(), iteration)
        return True

    def snapshot(self, index: int) -> dict[str, torch.Tensor]:
        """The state_dict at pool position `index` (0 = oldest; negative counts from the newest)."""
        return self.snapshots[index]

    def state_dict(self) -> dict[str, Any]:
        return {
            "max_size": self.max_size,
            "snapshot_every": self.snapshot_every,
            "snapshots": copy.deepcopy(self.snapshots),
            "iterations": list(self.iterations),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.max_size, self.snapshot_every = int(state["max_size"]), int(state["snapshot_every"])
        self.snapshots = [dict(s) for s in state["snapshots"]]
        self.iterations = [int(i) for i in state["iterations"]]
