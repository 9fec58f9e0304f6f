"""The rules test table: hand-made games whose moves, rewards and outcome are worked out by hand.

Shared by test_engine.py (batched engine) and test_env.py (PettingZoo wrapper) so both are held to one table.
Patches are numbered row-major; T stands for TERMINATE (G*G). Default rules: turn reward 1, termination reward
10, ROI threshold 0.5.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from medwss.game.record import EndReason

T = -1
"""TERMINATE in a move list; tests turn it into rules.terminate_action."""

S2 = [[0.9, 0.2], [0.6, 0.1]]
"""Patch scores 0: 0.9, 1: 0.2, 2: 0.6, 3: 0.1; ROI patches (>= 0.5) are 0 and 2."""


@dataclass(frozen=True)
class Case:
    """One game: the moves (agent expected to move, action), each move's rewards (a, b), and how it ends."""

    name: str
    moves: list[tuple[int, int]]
    rewards: list[tuple[float, float]]
    end_reason: EndReason
    winner: int | None = None
    terminator: int | None = None
    scores: list[list[float]] = field(default_factory=lambda: S2)
    region: list[list[bool]] | None = None
    rules: dict = field(default_factory=dict)
    single_agent: bool = False
    segmentation: list[int] | None = None
    """Patches agent a keeps as its mask (play-phase picks, final pick excluded), when worth checking."""


CASES = [
    Case("turn_win", [(0, 0), (1, 1), (0, 2), (1, 3)], [(0, 0), (1, -1), (0, 0), (1, -1)], EndReason.EXHAUSTED),
    Case("turn_loss", [(0, 1), (1, 0), (0, 3), (1, 2)], [(0, 0), (-1, 1), (0, 0), (-1, 1)], EndReason.EXHAUSTED),
    Case(
        "turn_tie",
        [(0, 0), (1, 1), (0, 2), (1, 3)],
        [(0, 0), (0.25, 0.25), (0, 0), (1, -1)],
        EndReason.EXHAUSTED,
        scores=[[0.5, 0.5], [0.6, 0.1]],
        rules={"tie_reward": 0.25},
    ),
    # a terminates; a takes the best final patch (0.9) but b still finds 0.6 >= 0.5: a loses.
    Case(
        "a_terminates_roi_left",
        [(0, 1), (1, 3), (0, T), (0, 0), (1, 2)],
        [(0, 0), (1, -1), (0, 0), (0, 0), (-10, 10)],
        EndReason.TERMINATED,
        winner=1,
        terminator=0,
        segmentation=[1],
    ),
    # a terminates once the ROI patches are taken: b's final 0.1 < 0.5, a wins.
    Case(
        "a_terminates_exhausted",
        [(0, 0), (1, 2), (0, T), (0, 1), (1, 3)],
        [(0, 0), (1, -1), (0, 0), (0, 0), (10, -10)],
        EndReason.TERMINATED,
        winner=0,
        terminator=0,
        segmentation=[0],
    ),
    # b terminates after a's pick: a's pick stays, no turn reward; a's final 0.9 >= 0.5, b loses.
    Case(
        "b_terminates_roi_left",
        [(0, 1), (1, T), (0, 0), (1, 2)],
        [(0, 0), (0, 0), (0, 0), (10, -10)],
        EndReason.TERMINATED,
        winner=0,
        terminator=1,
        segmentation=[1],
    ),
    # b terminates; a's final 0.1 < 0.5 and no patch is left for b's own final pick: decided at a's pick, b wins.
    Case(
        "b_terminates_exhausted",
        [(0, 0), (1, 2), (0, 1), (1, T), (0, 3)],
        [(0, 0), (1, -1), (0, 0), (0, 0), (-10, 10)],
        EndReason.TERMINATED,
        winner=1,
        terminator=1,
        segmentation=[0, 1],
    ),
    # Patch 3 is outside the region: after a terminates, a takes the last free patch and b finds nothing.
    Case(
        "no_patch_for_final_pick",
        [(0, 0), (1, 1), (0, T), (0, 2)],
        [(0, 0), (1, -1), (0, 0), (10, -10)],
        EndReason.TERMINATED,
        winner=0,
        terminator=0,
        region=[[True, True], [True, False]],
    ),
    Case("step_limit", [(0, 0), (1, 1)], [(0, 0), (1, -1)], EndReason.STEP_LIMIT, rules={"max_turns": 1}),
    # G = 3, default limit G*G//2 = 4 turns: one patch is still free when the limit stops the game.
    Case(
        "default_step_limit_odd_board",
        [(0, 8), (1, 0), (0, 7), (1, 1), (0, 2), (1, 6), (0, 3), (1, 5)],
        [(0, 0), (1, -1), (0, 0), (1, -1), (0, 0), (-1, 1), (0, 0), (-1, 1)],
        EndReason.STEP_LIMIT,
        scores=[[0.1, 0.2, 0.3], [0.4, 0.5, 0.6], [0.7, 0.8, 0.9]],
    ),
    # Only patches 0 and 3 are legal: one turn empties the region.
    Case(
        "region_mask",
        [(0, 3), (1, 0)],
        [(0, 0), (-1, 1)],
        EndReason.EXHAUSTED,
        region=[[True, False], [False, True]],
    ),
    # a's pick empties the region mid-turn: the game ends there, the half turn is not scored.
    Case(
        "exhausted_mid_turn",
        [(0, 0), (1, 2), (0, 1)],
        [(0, 0), (1, -1), (0, 0)],
        EndReason.EXHAUSTED,
        region=[[True, True], [True, False]],
    ),
    Case(
        "single_agent_terminates",
        [(0, 0), (0, 2), (0, T)],
        [(0, 0), (0, 0), (0, 0)],
        EndReason.TERMINATED,
        terminator=0,
        single_agent=True,
        segmentation=[0, 2],
    ),
    Case(
        "single_agent_exhausts",
        [(0, 0), (0, 1), (0, 2), (0, 3)],
        [(0, 0)] * 4,
        EndReason.EXHAUSTED,
        single_agent=True,
        segmentation=[0, 1, 2, 3],
    ),
    Case(
        "single_agent_step_limit",
        [(0, 0), (0, 1)],
        [(0, 0)] * 2,
        EndReason.STEP_LIMIT,
        single_agent=True,
        rules={"max_turns": 2},
    ),
    Case(
        "difference_mode",
        [(0, 0), (1, 1), (0, 3), (1, 2)],
        [(0, 0), (1.4, -1.4), (0, 0), (-1.0, 1.0)],
        EndReason.EXHAUSTED,
        rules={"turn_reward_mode": "difference", "turn_reward": 2.0},
    ),
    Case(
        "difference_mode_tie",
        [(0, 0), (1, 1)],
        [(0, 0), (0.5, 0.5)],
        EndReason.STEP_LIMIT,
        scores=[[0.5, 0.5], [0.6, 0.1]],
        rules={"turn_reward_mode": "difference", "tie_reward": 0.5, "max_turns": 1},
    ),
    Case(
        "no_turn_reward",
        [(0, 1), (1, 3), (0, T), (0, 0), (1, 2)],
        [(0, 0), (0, 0), (0, 0), (0, 0), (-10, 10)],
        EndReason.TERMINATED,
        winner=1,
        terminator=0,
        rules={"turn_reward_mode": "none"},
    ),
    # Without the termination reward the final picks are played and decided, but pay nothing.
    Case(
        "no_termination_reward",
        [(0, 1), (1, 3), (0, T), (0, 0), (1, 2)],
        [(0, 0), (1, -1), (0, 0), (0, 0), (0, 0)],
        EndReason.TERMINATED,
        winner=1,
        terminator=0,
        rules={"use_termination_reward": False},
    ),
    Case(
        "threshold_is_inclusive",
        [(0, T), (0, 0), (1, 2)],
        [(0, 0), (0, 0), (-5, 5)],
        EndReason.TERMINATED,
        winner=1,
        terminator=0,
        rules={"roi_threshold": 0.6, "termination_reward": 5.0},
    ),
]


def resolve(moves: list[tuple[int, int]], terminate: int) -> list[tuple[int, int]]:
    """Moves with T replaced by the TERMINATE action index."""
    return [(agent, terminate if action == T else action) for agent, action in moves]
