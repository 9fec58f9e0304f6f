"""The rules of the RLSP patch game, kept in checkpoints so a run can be resumed and replayed exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

TurnRewardMode = Literal["sign", "difference", "none"]
TURN_REWARD_MODES: tuple[str, ...] = ("sign", "difference", "none")


@dataclass(frozen=True)
class GameRules:
    """Rules of one game: grid, rewards, termination; frozen so the settings of a run cannot drift (STYLE §3)."""

    grid_size: int = 16
    """Patches per side G: the slice is cut into G x G patches, each one action (RLSP §3.1)."""
    turn_reward: float = 1.0
    """Reward size r of a turn: the agent whose patch the detector scores higher gets +r, the other -r (RLSP §3.2)."""
    tie_reward: float = 0.0
    """Reward both agents get when their two patches score exactly equal: nobody found more ROI than the other."""
    turn_reward_mode: TurnRewardMode = "sign"
    """Turn reward ablation: "sign" = +-turn_reward (paper), "difference" = turn_reward * (own - other score),
    "none" = no per-turn reward, only the termination reward teaches (RLSP §5 ablations)."""
    termination_reward: float = 10.0
    """Reward size R at termination, large against turn rewards so that calling it at the right time dominates:
    the terminator gets -R if the opponent's final patch scores >= roi_threshold, else +R (RLSP §3.3)."""
    use_termination_reward: bool = True
    """Termination reward ablation: False still plays the final picks but pays nothing for them (RLSP §5)."""
    roi_threshold: float = 0.5
    """Detector score at or above which the opponent's final patch counts as a found ROI patch (RLSP §3.3)."""
    max_turns: int | None = None
    """Step limit in turns (a turn is a's pick then b's; alone, one pick of a). None = only the board limits the
    game: G*G//2 turns in self-play, G*G picks alone. Reaching it ends the game with no termination reward."""

    def __post_init__(self) -> None:
        """Reject settings that make no game, so a bad config fails at load time, not mid-training."""
        if isinstance(self.grid_size, bool) or not isinstance(self.grid_size, int) or self.grid_size < 2:
            raise ValueError(f"grid_size must be an int >= 2 (a turn takes two patches), got {self.grid_size!r}")
        for name in ("turn_reward", "tie_reward", "termination_reward", "roi_threshold"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        if self.turn_reward < 0:
            raise ValueError(f"turn_reward must be >= 0 (the winner of a turn gets +r), got {self.turn_reward}")
        if self.termination_reward < 0:
            raise ValueError(f"termination_reward must be >= 0 (the winner gets +R), got {self.termination_reward}")
        if not 0.0 < self.roi_threshold <= 1.0:
            raise ValueError(f"roi_threshold must be in (0, 1] like detector scores, got {self.roi_threshold}")
        if self.turn_reward_mode not in TURN_REWARD_MODES:
            raise ValueError(f"turn_reward_mode must be one of {TURN_REWARD_MODES}, got {self.turn_reward_mode!r}")
        if not isinstance(self.use_termination_reward, bool):
            raise ValueError(f"use_termination_reward must be a bool, got {self.use_termination_reward!r}")
        if self.max_turns is not None:
            if isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int):
                raise ValueError(f"max_turns must be an int or None, got {self.max_turns!r}")
            if not 1 <= self.max_turns <= self.num_patches:
                raise ValueError(f"max_turns must be in [1, {self.num_patches}] (G*G patches), got {self.max_turns}")

    @property
    def num_patches(self) -> int:
        """G*G: the patch actions, numbered row-major (row * G + col)."""
        return self.grid_size * self.grid_size

    @property
    def action_count(self) -> int:
        """G*G + 1: every patch plus TERMINATE, the last action."""
        return self.num_patches + 1

    @property
    def terminate_action(self) -> int:
        """Index of the TERMINATE action (G*G)."""
        return self.num_patches

    def turn_limit(self, single_agent: bool = False) -> int:
        """Turns after which the game stops: max_turns, else what the board allows (G*G//2 in self-play, G*G alone)."""
        if self.max_turns is not None:
            return self.max_turns
        return self.num_patches if single_agent else self.num_patches // 2
