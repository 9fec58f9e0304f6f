"""The paper's single-agent baseline: take patches while the detector is sure enough, then stop (RLSP §5).

It reads detector scores directly (a learned agent never does), so it is the "detector only" reference point the
self-play agents must beat.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medwss.game.engine import BatchedGame
from medwss.game.rules import GameRules


def threshold_actions(scores: torch.Tensor, action_mask: torch.Tensor, threshold: float = 0.8) -> torch.Tensor:
    """Actions (B,) int64: the legal patch with the highest score if it scores >= threshold, else TERMINATE.

    Where TERMINATE is not legal (final phase) the best legal patch is taken whatever its score.

    Args:
        scores: (B, G, G) or (B, G*G) detector scores.
        action_mask: (B, G*G + 1) bool from `BatchedGame.action_mask`; last column = TERMINATE.
        threshold: lowest score still taken (0.8 in the paper's ablation).
    """
    flat = scores.reshape(scores.shape[0], -1)
    n = flat.shape[1]
    legal = action_mask[:, :n]
    best_score, best = flat.masked_fill(~legal, -1.0).max(dim=1)
    stop = ((best_score < threshold) & action_mask[:, n]) | ~legal.any(dim=1)
    return torch.where(stop, n, best)


@dataclass(frozen=True)
class ThresholdAgent:
    """Policy over a `BatchedGame`: `act(game)` gives the current agent's actions in every game."""

    threshold: float = 0.8
    """Lowest detector score the agent still takes (RLSP §5 single-agent ablation)."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1] like detector scores, got {self.threshold}")

    def act(self, game: BatchedGame) -> torch.Tensor:
        """(B,) int64 actions for the current state of `game`."""
        return threshold_actions(game.scores, game.action_mask(), self.threshold)


def threshold_segment(
    scores: torch.Tensor,
    region: torch.Tensor | None = None,
    threshold: float = 0.8,
    rules: GameRules | None = None,
) -> torch.Tensor:
    """Play the baseline alone on B slices to the end; returns the (B, G, G) bool patch masks it took.

    Args:
        scores: (B, G, G) detector scores in [0, 1].
        region: optional (B, G, G) bool legal region.
        threshold: lowest score still taken.
        rules: game rules; default `GameRules(grid_size=G)`.
    """
    rules = rules if rules is not None else GameRules(grid_size=scores.shape[-1])
    game = BatchedGame(rules, scores, region, single_agent=True)
    agent = ThresholdAgent(threshold)
    while not bool(game.done.all()):
        game.step(agent.act(game))
    return game.segmentation()
