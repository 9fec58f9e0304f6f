"""PatchGameEnv: PettingZoo's API test, and step-for-step agreement with the engine on the rules table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pettingzoo.test import api_test

from medwss.game.env import PatchGameEnv
from medwss.game.observation import STATE_PLANES
from medwss.game.record import EndReason
from medwss.game.rules import GameRules
from medwss.inference.segment import Segmenter
from medwss.selfplay.rollout import play_alone
from tests.game.cases import CASES, S2, Case, resolve
from tests.game.test_engine import make_game


def make_env(case: Case) -> PatchGameEnv:
    rules = GameRules(grid_size=len(case.scores), **case.rules)
    return PatchGameEnv(np.array(case.scores), rules, region=case.region, single_agent=case.single_agent)


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_env_agrees_with_engine(case: Case) -> None:
    env, game = make_env(case), make_game(case, record=True)
    env.reset()
    for agent, action in resolve(case.moves, game.rules.terminate_action):
        assert env.agent_selection == env.possible_agents[agent] == env.possible_agents[int(game.agent[0])]
        obs, *_ = env.last()
        assert obs["action_mask"].tolist() == game.action_mask()[0].to(torch.int8).tolist()
        env.step(action)
        rewards = game.step(torch.tensor([action]))[0].tolist()
        assert [env.rewards[name] for name in env.possible_agents] == pytest.approx(rewards[: env.num_agents])
        done = bool(game.done[0])
        assert all(env.terminations[a] or env.truncations[a] for a in env.agents) == done
    assert all(env.truncations[a] == bool(game.truncated[0]) for a in env.agents)
    info = env.infos["agent_a"]
    assert info["end_reason"] == case.end_reason.name
    assert info["winner"] == (None if case.winner is None else env.possible_agents[case.winner])
    assert env.record() == game.record(0)
    for _ in env.possible_agents:  # PettingZoo's dead steps take every agent out
        env.step(None)
    assert env.agents == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scores": np.random.default_rng(0).random((3, 3))},
        {
            "scores": np.random.default_rng(1).random((2, 2)),
            "image": np.ones((1, 4, 4)),
            "region": np.eye(2, dtype=bool),
        },
        {"scores": np.random.default_rng(2).random((3, 3)), "single_agent": True},
    ],
    ids=["planes", "image_and_region", "single_agent"],
)
def test_pettingzoo_api(kwargs: dict) -> None:
    g = kwargs["scores"].shape[0]
    env = PatchGameEnv(rules=GameRules(grid_size=g, roi_threshold=0.3), render_mode="rgb_array", **kwargs)
    api_test(env, num_cycles=30)
    env.reset()
    assert env.render().shape[2] == 3


def test_reset_options_and_errors() -> None:
    env = PatchGameEnv(rules=GameRules(grid_size=2), image_shape=(1, 4, 4))
    with pytest.raises(ValueError, match="needs detector scores"):
        env.reset()
    with pytest.raises(ValueError, match="image of shape"):
        env.reset(options={"scores": np.array(S2)})
    env.reset(options={"scores": np.array(S2), "image": np.full((1, 4, 4), 2.0)})
    obs, *_ = env.last()
    assert obs["observation"].shape == (1 + STATE_PLANES, 4, 4) and obs["observation"][0].max() == 2.0
    env.step(0)
    obs_b = env.observe("agent_b")
    assert obs_b["observation"][0, :2, :2].max() == 0.0  # b sees a's patch blanked
    assert obs_b["action_mask"].tolist() == [0, 1, 1, 1, 1]
    assert env.observe("agent_a")["action_mask"].sum() == 0  # only the agent to move gets a mask
    with pytest.raises(ValueError, match="illegal action"):
        env.step(0)
    with pytest.raises(ValueError, match="empty"):
        env.reset(options={"region": np.zeros((2, 2), dtype=bool)})
    with pytest.raises(ValueError, match="render_mode"):
        PatchGameEnv(render_mode="human")


def test_a_shipped_bundle_agent_plays_an_episode_in_the_env() -> None:
    """The prostate bundle's trained agent plays a whole game alone in the env, on the inputs `medwss segment`
    gives it, and takes the patches it takes there (one observation builder for training, inference and the env)."""
    bundle = Path(__file__).resolve().parents[2] / "bundles" / "prostate"
    segmenter = Segmenter(bundle)
    inferer, policy = segmenter.inferer, segmenter.network
    yy, xx = torch.meshgrid(torch.arange(128.0), torch.arange(128.0), indexing="ij")
    body = ((yy - 64) ** 2 + (xx - 60) ** 2 < 50**2).float()
    gland = ((yy - 70) ** 2 + (xx - 66) ** 2 < 12**2).float()
    volume = (0.3 * body + 0.4 * gland)[None, :, :, None]  # (C, H, W, Z): one preprocessed MR slice
    slices, region = inferer.slices_and_region(volume)
    scored = inferer.scorer.score(slices, region)
    base = inferer.agent_base(slices, scored, policy)  # (1, 35, G, G): trunk features + the agent planes
    assert base.shape[1] == policy.config["in_channels"]

    env = PatchGameEnv(
        scored.scores[0], inferer.rules, base[0], scored.region[0], single_agent=True,
        mode=policy.observation, merge_sides=policy.merge_sides,
    )  # fmt: skip
    env.reset()
    steps = 0
    while env.agents:
        obs, _, terminated, truncated, _ = env.last()
        if terminated or truncated:
            env.step(None)
            continue
        observation = torch.from_numpy(obs["observation"])[None]
        mask = torch.from_numpy(obs["action_mask"]).bool()[None]
        env.step(int(policy.act(observation, mask, deterministic=True)[0]))
        steps += 1
    # On this synthetic slice the greedy agent may call termination or take every legal patch (whether it stops here
    # depends on the shipped weights; `medwss segment` stops at the learned median instead); either way the game ends
    # by the rules, and it is the game `SelfPlayInferer` plays.
    end = env.record().end_reason
    assert end in (EndReason.TERMINATED, EndReason.EXHAUSTED)
    # agent a alone, as `SelfPlayInferer` plays it (its per-step stopping rule): the same patches, step for step
    expected = play_alone(policy, None, scored.scores, scored.region, inferer.rules, base=base, stopping="step")
    assert torch.equal(env.game.segmentation(), expected)
    if end == EndReason.TERMINATED:
        assert steps == int(env.game.turn[0]) + 1 and int(expected.sum()) == steps - 1  # its patches, then TERMINATE
    else:
        assert int(expected.sum()) == steps == int(scored.region[0].sum())  # every legal patch, one per step
