"""The self-play stage of a bundle: layered on the detector stage, trains the agent, exports the policy."""

from __future__ import annotations

import json

import pytest
import torch

from medwss.agents.policy import AgentPolicy
from medwss.bundle.stages import train_stage
from medwss.errors import MedwssError
from medwss.game.rules import GameRules
from medwss.inference.inferer import METHODS
from medwss.inference.loading import load_inference
from medwss.runtime.config import parsed
from medwss.selfplay.settings import SelfPlaySettings
from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate

SMALL = {
    "selfplay#training#num_iterations": 4,
    "selfplay#training#games_per_iteration": 8,
    "selfplay#ppo#minibatch_size": 32,
    "selfplay#ppo#update_epochs": 1,
    "selfplay#pool#snapshot_every": 1,
    "selfplay#training#checkpoint_every": 2,
    "selfplay#training#eval_every": 2,
    "selfplay#training#termination_warmup": 1,
    "selfplay#training#warmup_turns": 4,
    "selfplay#policy#channels": 8,
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_prostate(tmp_path_factory.mktemp("tiny_prostate_sp"))


def test_selfplay_needs_a_trained_detector(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    with pytest.raises(MedwssError, match="no trained detector"):
        train_stage(bundle, "selfplay", overrides={**tiny_overrides(data_root), **SMALL}, run_dir=tmp_path / "r")


@pytest.mark.parametrize(
    ("override", "message"),
    [  # checked before the detector is needed: a config error is reported first, in one line
        ({"selfplay#training#channels": 8}, r"^selfplay#training: .*move them: channels -> selfplay#policy$"),
        ({"selfplay#ppo#gamma": 2.0}, r"^selfplay#ppo: gamma must be in \[0, 1\], got 2.0$"),
        ({"selfplay#policy#chanels": 8}, r"^selfplay#policy: unknown setting 'chanels' \(known: observation,"),
        ({"selfplay#num_iterations": 8}, r"^selfplay: unknown key 'num_iterations': it belongs in selfplay#training"),
        ({"selfplay#policy#score_prior": 30.0, "selfplay#agent_planes": ["scores", "gate"]},
         r'^selfplay#policy#score_prior: reads the game scores: agent_planes must end with "scores"$'),
    ],
)
def test_bad_selfplay_settings_are_one_line_errors(tmp_path, data_root, override, message):
    bundle = tiny_bundle(tmp_path)
    with pytest.raises(MedwssError, match=message):
        train_stage(bundle, "selfplay", overrides={**tiny_overrides(data_root), **override}, run_dir=tmp_path / "r")


def test_selfplay_stage_trains_and_exports_a_policy(tmp_path, data_root, monkeypatch):
    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), **SMALL}
    train_stage(bundle, "detector", overrides=overrides, run_dir=tmp_path / "runs")
    note = train_stage(bundle, "selfplay", overrides=overrides, run_dir=tmp_path / "runs")
    run = tmp_path / "runs" / "selfplay"
    assert (run / "checkpoint_final.pt").is_file() and (run / "progress.png").is_file()
    saved = json.loads((bundle / "models" / "policy.json").read_text())
    assert saved["rules"]["grid_size"] == 4 and saved["settings"]["pool"]["opponent_sampling"] == "prioritised"
    # The shipped config asks for the calibrated threshold: resolved from the absent slices' scores and recorded.
    assert saved["roi_calibration"]["roi_threshold"] == "auto" and saved["roi_calibration"]["absent_slices"] > 0
    assert 0.0 < saved["rules"]["roi_threshold"] <= 1.0
    policy = AgentPolicy(**saved["policy"])
    policy.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    # The agent sees the trunk features plus the bundle's extra planes, on a board with merged sides.
    assert saved["agent_planes"] == ["prior", "gate", "scores"] and saved["policy"]["merge_sides"] is True
    assert saved["policy"]["in_channels"] == 16 * 2 + 3
    # What inference needs, as config nodes beside the weights; inference.yaml includes them (MONAI's %file#id
    # macro), read relative to the bundle whatever the current folder.
    parts = json.loads((bundle / "models" / "inference_parts.json").read_text())
    assert parts["network_def"] == {"_target_": "medwss.agents.policy.AgentPolicy", **saved["policy"]}
    assert parts["rules"] == {"_target_": "medwss.game.rules.GameRules", **saved["rules"]}
    assert parts["agent_planes"] == saved["agent_planes"]
    recorded = SelfPlaySettings.from_config(saved["settings"])  # the sections, as train_selfplay.yaml has them
    assert recorded.policy.network_config(4, saved["policy"]["in_channels"]) == saved["policy"]
    assert recorded.ppo.update_epochs == 1 and recorded.policy.channels == 8 and recorded.num_iterations == 4
    monkeypatch.chdir(tmp_path)
    _, parser, network = load_inference(bundle, "rlsp", METHODS)
    assert network.config == saved["policy"] and parsed(parser, "rules") == GameRules(**saved["rules"])
    assert parsed(parser, "agent_planes") == saved["agent_planes"]
    assert note["metrics"]["iterations"] == 4
    tags = {k for line in (run / "metrics.jsonl").open() for k in json.loads(line)}
    assert {"losses/policy", "game/win_rate", "pool/size", "val/dice"} <= tags
