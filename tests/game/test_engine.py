"""BatchedGame against the rules table, alone and many games at once, plus invariants of random play."""

from __future__ import annotations

import pytest
import torch

from medwss.game.engine import BatchedGame
from medwss.game.observation import STATE_PLANES
from medwss.game.record import EndReason, Phase
from medwss.game.rules import GameRules
from tests.game.cases import CASES, Case, resolve


def make_game(case: Case, copies: int = 1, record: bool = False) -> BatchedGame:
    rules = GameRules(grid_size=len(case.scores), **case.rules)
    scores = torch.tensor([case.scores] * copies)
    region = None if case.region is None else torch.tensor([case.region] * copies)
    return BatchedGame(rules, scores, region, single_agent=case.single_agent, record=record)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_rules_table(case: Case) -> None:
    game = make_game(case, record=True)
    moves = resolve(case.moves, game.rules.terminate_action)
    for step, ((agent, action), expected) in enumerate(zip(moves, case.rewards, strict=True)):
        assert not bool(game.done[0]), f"game over before move {step}"
        assert int(game.agent[0]) == agent, f"move {step}: wrong agent to move"
        assert bool(game.action_mask()[0, action]), f"move {step}: action {action} should be legal"
        rewards = game.step(torch.tensor([action]))
        assert rewards[0].tolist() == pytest.approx(expected, abs=1e-6), f"move {step}"
    assert bool(game.done[0])
    assert EndReason(int(game.end_reason[0])) == case.end_reason
    assert bool(game.truncated[0]) == (case.end_reason == EndReason.STEP_LIMIT)
    assert (None if game.winner[0] < 0 else int(game.winner[0])) == case.winner
    assert (None if game.terminator[0] < 0 else int(game.terminator[0])) == case.terminator
    assert game.returns[0].tolist() == pytest.approx([sum(r[0] for r in case.rewards), sum(r[1] for r in case.rewards)])
    assert game.action_mask()[0].tolist() == [False] * game.rules.num_patches + [True]
    if case.segmentation is not None:
        assert game.segmentation()[0].flatten().nonzero().flatten().tolist() == case.segmentation
    record = game.record(0)
    assert [(m.agent, game.rules.terminate_action if m.patch is None else m.patch) for m in record.moves] == moves
    assert record.end_reason == case.end_reason and record.winner == case.winner


def test_table_batched_games_are_independent() -> None:
    """All G=2 default-size cases in one batch, each at its own pace, give the same rewards as one by one."""
    groups: dict[tuple, list[Case]] = {}
    for case in CASES:
        key = (len(case.scores), tuple(sorted(case.rules.items())), case.single_agent)
        groups.setdefault(key, []).append(case)
    batched = [cases for cases in groups.values() if len(cases) > 1]
    assert batched, "the table should hold several cases with the same rules"
    for cases in batched:
        rules = GameRules(grid_size=len(cases[0].scores), **cases[0].rules)
        g = rules.grid_size
        region = torch.tensor([c.region if c.region is not None else [[True] * g] * g for c in cases])
        game = BatchedGame(rules, torch.tensor([c.scores for c in cases]), region, single_agent=cases[0].single_agent)
        moves = [resolve(c.moves, rules.terminate_action) for c in cases]
        for step in range(max(len(m) for m in moves)):
            actions = torch.tensor([m[step][1] if step < len(m) else 0 for m in moves])  # done games: ignored
            rewards = game.step(actions)
            for i, case in enumerate(cases):
                expected = case.rewards[step] if step < len(case.rewards) else (0.0, 0.0)
                assert rewards[i].tolist() == pytest.approx(expected, abs=1e-6), (case.name, step)
        assert game.done.all()
        assert [EndReason(int(r)) for r in game.end_reason] == [c.end_reason for c in cases]


ILLEGAL = [
    ("patch_taken", [0], 0),
    ("outside_region", [], 3),
    ("terminate_in_final_phase", [4, 0], 4),
    ("negative", [], -1),
    ("past_terminate", [], 5),
]


@pytest.mark.parametrize("before,action", [c[1:] for c in ILLEGAL], ids=[c[0] for c in ILLEGAL])
def test_illegal_action_raises(before: list[int], action: int) -> None:
    game = BatchedGame(GameRules(grid_size=2), torch.rand(1, 2, 2), torch.tensor([[[True, True], [True, False]]]))
    for a in before:
        game.step(torch.tensor([a]))
    with pytest.raises(ValueError, match="illegal action"):
        game.step(torch.tensor([action]))


def test_reset_validation() -> None:
    rules = GameRules(grid_size=2)
    with pytest.raises(ValueError, match="shape"):
        BatchedGame(rules, torch.rand(1, 3, 3))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        BatchedGame(rules, torch.full((1, 2, 2), 1.5))
    with pytest.raises(ValueError, match="bool"):
        BatchedGame(rules, torch.rand(1, 2, 2), torch.ones(1, 2, 2))
    game = BatchedGame(rules, torch.rand(2, 2, 2), torch.tensor([[[False, False]] * 2, [[True, True]] * 2]))
    assert game.done.tolist() == [True, False]  # empty region: nothing to play
    assert EndReason(int(game.end_reason[0])) == EndReason.EXHAUSTED


def test_random_play_invariants() -> None:
    """Random legal play on G=8: zero-sum rewards, owners match picks, masks never empty, games end in time."""
    torch.manual_seed(0)
    rules = GameRules(grid_size=8)
    b, n = 64, rules.num_patches
    region = torch.rand(b, 8, 8) < 0.8
    game = BatchedGame(rules, torch.rand(b, 8, 8), region)
    picks = torch.zeros(b, dtype=torch.int64)
    for _ in range(n + 3):
        mask = game.action_mask()
        assert mask.any(1).all()
        actions = torch.rand(mask.shape).masked_fill(~mask, -1).argmax(1)
        picks += (~game.done & (actions < n)).to(torch.int64)
        rewards = game.step(actions)
        assert torch.allclose(rewards.sum(1), torch.zeros(b))
    assert game.done.all()
    assert torch.equal((game.owner != 0).flatten(1).sum(1), picks)
    assert not (game.owner.bool() & ~region).any()
    assert not (game.segmentation() & ~(game.owner == 1)).any()
    assert torch.allclose(game.take_rewards(), game.returns)
    assert torch.equal(game.take_rewards(), torch.zeros(b, 2))


def test_partial_reset_keeps_other_games() -> None:
    rules = GameRules(grid_size=2)
    game = BatchedGame(rules, torch.tensor([[[0.9, 0.2], [0.6, 0.1]]] * 3), record=True)
    game.step(torch.tensor([4, 0, 0]))  # game 0 terminates, games 1 and 2 pick patch 0
    game.step(torch.tensor([0, 1, 1]))
    restart = torch.tensor([False, True, False])
    game.reset(torch.tensor([[[0.3, 0.3], [0.3, 0.3]]]), games=restart)
    assert game.phase.tolist() == [Phase.FINAL, Phase.PLAY, Phase.PLAY]
    assert game.agent.tolist() == [1, 0, 0]
    assert game.owner.flatten(1).tolist() == [[1, 0, 0, 0], [0, 0, 0, 0], [1, 2, 0, 0]]
    assert game.returns.tolist() == [[0, 0], [0, 0], [1, -1]]
    assert game.scores[1].tolist() == [[pytest.approx(0.3)] * 2] * 2 and game.scores[2, 0, 0] == pytest.approx(0.9)
    game.step(torch.tensor([2, 3, 3]))
    assert [len(game.record(i).moves) for i in range(3)] == [3, 1, 3]


def test_observation_blanks_taken_patches() -> None:
    game = BatchedGame(GameRules(grid_size=2), torch.rand(1, 2, 2))
    game.step(torch.tensor([0]))  # a takes the top-left patch; b to move
    images = torch.ones(1, 3, 4, 4)
    obs = game.observation(images)
    assert obs.shape == (1, 3 + STATE_PLANES, 4, 4) and obs.dtype == torch.float32
    assert obs[0, :3, :2, :2].eq(0).all() and obs[0, :3, 2:, :].eq(1).all()
    assert obs[0, 3, :2, :2].eq(0).all() and obs[0, 4, :2, :2].eq(1).all()  # b's view: "theirs", not "mine"
    planes = game.observation(agent=torch.tensor([0]))
    assert planes.shape == (1, STATE_PLANES, 2, 2) and planes[0, 0, 0, 0] == 1
    assert obs[0, -1].eq(0.0).all()  # the step plane: a picked, but no turn (a, then b) is complete
    with pytest.raises(ValueError, match="multiple"):
        game.observation(torch.ones(1, 1, 5, 5))
