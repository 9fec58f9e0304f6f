"""Replay strips of recorded games are written as valid PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medwss.game.engine import BatchedGame
from medwss.game.rules import GameRules
from medwss.viz.replay import draw_replay


def play_recorded(grid: int, single_agent: bool = False):
    """A full game with a scripted pattern: a takes the high patches, then terminates; b answers."""
    torch.manual_seed(0)
    scores = torch.rand(1, grid, grid)
    game = BatchedGame(GameRules(grid_size=grid), scores, single_agent=single_agent, record=True)
    order = scores.flatten(1).argsort(dim=1, descending=True)[0].tolist()
    picks = 0
    while not bool(game.done[0]):
        mask = game.action_mask()[0]
        if picks == 6 and mask[-1]:
            action = grid * grid
        else:
            action = next(p for p in order if mask[p])
        game.step(torch.tensor([action]))
        picks += 1
    return game.record(0), scores[0]


@pytest.mark.parametrize("grid,single", [(4, False), (16, False), (4, True)])
def test_draw_replay_writes_a_png(tmp_path: Path, grid: int, single: bool) -> None:
    record, scores = play_recorded(grid, single)
    image = np.random.default_rng(0).random((8 * grid, 8 * grid)).astype(np.float32)
    out = draw_replay(torch.from_numpy(image), record, scores, tmp_path / "replays" / "game.png", title="test")
    assert out == tmp_path / "replays" / "game.png"
    assert 10_000 < out.stat().st_size < 2_000_000
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 2 * png.height > 200
    assert [p.name for p in out.parent.iterdir()] == ["game.png"]  # no temporary file left behind


def test_draw_replay_rejects_mismatched_inputs(tmp_path: Path) -> None:
    record, scores = play_recorded(4)
    with pytest.raises(ValueError, match="scores"):
        draw_replay(np.zeros((32, 32)), record, scores[:2, :2], tmp_path / "x.png")
    with pytest.raises(ValueError, match="image"):
        draw_replay(np.zeros((1, 32, 32)), record, scores, tmp_path / "x.png")
    with pytest.raises(ValueError, match="multiple"):
        draw_replay(np.zeros((30, 30)), record, scores, tmp_path / "x.png")
    assert not list(tmp_path.iterdir())
