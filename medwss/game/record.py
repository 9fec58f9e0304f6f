"""Replay records of single games: which agent took which patch, how the detector scored it, who won."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Phase(IntEnum):
    """Where a game stands: normal turns, the two final picks after a termination, or over (RLSP §3.3)."""

    PLAY = 0
    FINAL = 1
    DONE = 2


class EndReason(IntEnum):
    """Why a game ended; only TERMINATED in self-play pays the termination reward."""

    NOT_ENDED = 0
    TERMINATED = 1
    """An agent called TERMINATE; in self-play the final picks decided the winner."""
    EXHAUSTED = 2
    """No free patch was left in the legal region while turns were played (or the region was empty)."""
    STEP_LIMIT = 3
    """GameRules.turn_limit turns were played; a truncation in PettingZoo words."""


AGENT_NAMES: tuple[str, str] = ("agent_a", "agent_b")


@dataclass(frozen=True)
class Move:
    """One action of one agent: a patch (row-major index) or TERMINATE (patch None)."""

    agent: int
    """0 = agent a (learner at training, the segmenter at inference), 1 = agent b (opponent)."""
    phase: Phase
    """PLAY for normal picks and TERMINATE, FINAL for the final picks."""
    patch: int | None
    """Row-major patch index (row * G + col), None for TERMINATE."""
    score: float | None
    """Detector score of the patch, None for TERMINATE."""


@dataclass(frozen=True)
class GameRecord:
    """A whole game (or the game so far) for replays and tests: the moves and how it ended."""

    grid_size: int
    moves: tuple[Move, ...]
    turns: int
    """Completed turns (a pick of a then of b; in single-agent games, each pick of a)."""
    terminator: int | None
    """Agent that called TERMINATE, None when nobody did."""
    final_patches: tuple[int | None, int | None]
    """Final pick of a and of b; None where the agent did not pick one (no free patch left, or no final phase)."""
    winner: int | None
    """Winner of the termination (self-play only), None when the game ended otherwise or is not over."""
    end_reason: EndReason
    returns: tuple[float, float]
    """Sum of the rewards of a and b over the game."""

    def patch_rc(self, patch: int) -> tuple[int, int]:
        """(row, col) of a row-major patch index, to draw replays."""
        return divmod(patch, self.grid_size)
