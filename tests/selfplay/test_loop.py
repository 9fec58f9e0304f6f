"""The self-play loop: exact resume, learning on the synthetic task, checkpoints, logs, and refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from medwss.agents.policy import PolicySettings
from medwss.agents.ppo import PPOSettings
from medwss.errors import MedwssError
from medwss.game.rules import GameRules
from medwss.runtime.checkpoint import FINAL, LATEST, load_checkpoint
from medwss.runtime.progress import ProgressTask
from medwss.selfplay.loop import SelfPlayData, SelfPlaySettings, train_selfplay
from medwss.selfplay.pool import PoolSettings
from medwss.selfplay.synthetic import synthetic_data

G, SIZE = 4, 16
RULES = GameRules(grid_size=G)
TINY = SelfPlaySettings(
    num_iterations=4, games_per_iteration=6, checkpoint_every=1, eval_every=2, seed=3, termination_warmup=2,
    ppo=PPOSettings(update_epochs=2, minibatch_size=16), pool=PoolSettings(snapshot_every=1, pool_size=3),
    policy=PolicySettings(channels=8, num_res_units=1, observation="features"),
)  # fmt: skip
TIMING = ("charts/updates_per_s", "charts/iteration_s")


@pytest.fixture(scope="module")
def data() -> SelfPlayData:
    return synthetic_data(32, 16, SIZE, G, seed=0)


class StopAfter(ProgressTask):
    """Progress callbacks that kill the run (like Ctrl-C) once `n` iterations are done."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.done = n, 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self.n:
            raise KeyboardInterrupt


def metrics(run: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in (run / "metrics.jsonl").open()]


@pytest.mark.parametrize("observation", ["features", "pixels"])
def test_resume_gives_the_same_weights(
    tmp_path: Path, data: SelfPlayData, observation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("medwss.selfplay.loop.plot_progress", lambda *args, **kwargs: None)  # tested elsewhere
    # The stop falls between the termination warm-up and normal play; checkpoints every 2 iterations.
    settings = TINY.replace(observation=observation, pixels_per_patch=2, checkpoint_every=2)
    straight = train_selfplay(data, RULES, settings, tmp_path / "straight")
    with pytest.raises(KeyboardInterrupt):
        train_selfplay(data, RULES, settings, tmp_path / "resumed", task=StopAfter(2))
    assert load_checkpoint(tmp_path / "resumed" / LATEST)["iteration"] == 2
    assert not (tmp_path / "resumed" / FINAL).exists()
    resumed = train_selfplay(data, RULES, settings, tmp_path / "resumed")
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    a, b = (load_checkpoint(tmp_path / run / FINAL) for run in ("straight", "resumed"))
    assert a["iteration"] == b["iteration"] == 4 and a["pool"]["iterations"] == b["pool"]["iterations"] == [2, 3, 4]
    pairs = zip(a["pool"]["snapshots"], b["pool"]["snapshots"], strict=True)
    assert all(torch.equal(x[k], y[k]) for x, y in pairs for k in x)
    assert metrics(tmp_path / "straight") == metrics(tmp_path / "resumed")
    # A finished run is not trained again; extending it continues from its final checkpoint.
    again = train_selfplay(data, RULES, settings, tmp_path / "straight")
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in straight.state_dict().items())
    longer = train_selfplay(data, RULES, settings.replace(num_iterations=5), tmp_path / "straight")
    assert load_checkpoint(tmp_path / "straight" / FINAL)["iteration"] == 5 and len(metrics(tmp_path / "straight")) == 5
    assert not all(torch.equal(v, longer.state_dict()[k]) for k, v in straight.state_dict().items())


def test_checkpoint_logs_and_refusals(tmp_path: Path, data: SelfPlayData) -> None:
    settings = TINY.replace(num_iterations=2, opponent_sampling="vanilla")
    train_selfplay(data, RULES, settings, tmp_path)
    state = load_checkpoint(tmp_path / FINAL)
    for key in ("policy", "policy_config", "optimizer", "iteration", "pool", "metrics", "settings", "rules", "rng"):
        assert key in state
    assert {"python", "numpy", "torch", "named", "actions"} <= set(state["rng"])
    assert state["encoder"]["name"] == "RandomConvEncoder" and state["encoder"]["seed"] == settings.seed
    assert set(state["rng"]["named"]) == {"slices", "opponent", "minibatch"}
    records = metrics(tmp_path)
    tags = {"losses/policy", "losses/value", "losses/entropy", "charts/learning_rate", "game/win_rate", "game/reward",
            "game/episode_length", "game/terminations", "pool/size", "pool/opponent_index"}  # fmt: skip
    assert all(tags <= set(r) for r in records) and "val/dice" in records[-1]
    assert [r["pool/opponent_index"] for r in records] == [-1, -1]  # vanilla: the learner plays itself
    assert (tmp_path / "progress.png").stat().st_size > 1000
    assert SelfPlaySettings.from_config(state["settings"]) == settings  # stored as the config's sections
    with pytest.raises(MedwssError, match=r"other settings \(learning_rate\)"):
        train_selfplay(data, RULES, settings.replace(learning_rate=0.1), tmp_path)
    with pytest.raises(MedwssError, match="other game rules"):
        train_selfplay(data, dataclasses.replace(RULES, termination_reward=5.0), settings, tmp_path)
    train_selfplay(data, RULES, settings.replace(learning_rate=0.1), tmp_path, restart=True)
    assert load_checkpoint(tmp_path / FINAL)["settings"]["ppo"]["learning_rate"] == 0.1


def test_training_improves_validation_dice_and_fills_the_pool(tmp_path: Path) -> None:
    # Large squares in most slices: 40 iterations are enough, and "terminate at once" (the degenerate answer,
    # Dice = share of empty slices = 0.125 here) cannot pass for learning.
    data = synthetic_data(64, 16, SIZE, G, seed=0, presence=0.9, side=(0.4, 0.7))
    settings = TINY.replace(num_iterations=40, games_per_iteration=32, minibatch_size=64, pool_size=5, snapshot_every=4,
                            eval_every=40, checkpoint_every=40, learning_rate=3e-3, termination_warmup=15)  # fmt: skip
    train_selfplay(data, RULES, settings.replace(num_iterations=1, learning_rate=0.0), tmp_path / "init")
    train_selfplay(data, RULES, settings, tmp_path / "trained")
    before, after = (metrics(tmp_path / run)[-1]["val/dice"] for run in ("init", "trained"))
    empty_share = float((~data.val_masks.flatten(1).any(1)).float().mean())
    assert after > max(before, empty_share) + 0.15, (before, after, empty_share)
    pool = load_checkpoint(tmp_path / "trained" / FINAL)["pool"]
    assert len(pool["snapshots"]) == 5 and pool["iterations"] == [24, 28, 32, 36, 40]


def test_settings_and_data_are_checked(data: SelfPlayData) -> None:
    for bad in ({"observation": "scores"}, {"opponent_sampling": "league"}, {"games_per_iteration": 0},
                {"learner_seats": "c"}):  # fmt: skip
        with pytest.raises(ValueError):
            TINY.replace(**bad)
    with pytest.raises(ValueError, match="scores"):
        dataclasses.replace(data, scores=data.scores[:, :2])
    with pytest.raises(ValueError, match="val_masks"):
        dataclasses.replace(data, val_masks=data.val_masks[:1])
