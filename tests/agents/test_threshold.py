"""The single-agent threshold baseline: takes what the detector is sure of, then stops."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.threshold import ThresholdAgent, threshold_actions, threshold_segment
from medwss.game.engine import BatchedGame
from medwss.game.rules import GameRules

T = 4  # TERMINATE on a 2 x 2 grid


@pytest.mark.parametrize(
    "scores,mask,threshold,expected",
    [
        ([0.9, 0.2, 0.85, 0.1], [1, 1, 1, 1, 1], 0.8, 0),  # best legal patch above the threshold
        ([0.9, 0.2, 0.85, 0.1], [0, 1, 1, 1, 1], 0.8, 2),  # the best one is taken: next best
        ([0.9, 0.2, 0.8, 0.1], [0, 1, 1, 1, 1], 0.8, 2),  # the threshold itself is still taken
        ([0.9, 0.2, 0.7, 0.1], [0, 1, 1, 1, 1], 0.8, T),  # nothing sure enough: stop
        ([0.9, 0.2, 0.7, 0.1], [0, 1, 1, 1, 1], 0.5, 2),  # a lower threshold takes it
        ([0.9, 0.2, 0.7, 0.1], [0, 1, 0, 1, 0], 0.8, 1),  # TERMINATE illegal (final phase): best legal patch
        ([0.9, 0.2, 0.7, 0.1], [0, 0, 0, 0, 1], 0.8, T),  # no patch legal (done game): TERMINATE
    ],
)
def test_threshold_actions(scores: list, mask: list, threshold: float, expected: int) -> None:
    actions = threshold_actions(torch.tensor([scores]), torch.tensor([mask], dtype=torch.bool), threshold)
    assert actions.dtype == torch.int64 and actions.tolist() == [expected]


def test_segment_takes_exactly_the_sure_patches_in_region() -> None:
    torch.manual_seed(0)
    scores, region = torch.rand(32, 8, 8), torch.rand(32, 8, 8) < 0.7
    mask = threshold_segment(scores, region, threshold=0.8)
    assert torch.equal(mask, (scores >= 0.8) & region)


def test_agent_plays_batched_game_to_termination() -> None:
    scores = torch.tensor([[[0.9, 0.2], [0.85, 0.1]], [[0.1, 0.1], [0.1, 0.1]]])
    game = BatchedGame(GameRules(grid_size=2), scores, single_agent=True)
    agent = ThresholdAgent()
    steps = 0
    while not bool(game.done.all()):
        game.step(agent.act(game))
        steps += 1
    assert steps == 3 and game.terminator.tolist() == [0, 0]
    assert game.segmentation().flatten(1).tolist() == [[True, False, True, False], [False] * 4]
    with pytest.raises(ValueError):
        ThresholdAgent(threshold=1.2)
