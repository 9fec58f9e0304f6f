"""Self-play settings in parts: each part checks itself, configs become settings in one place, and errors name the
config section at fault in one line."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from medwss.agents.policy import AgentPolicy, PolicySettings
from medwss.agents.ppo import PPOSettings
from medwss.errors import MedwssError
from medwss.game.rules import GameRules
from medwss.selfplay.loop import _check_resumable
from medwss.selfplay.pool import PoolSettings
from medwss.selfplay.settings import RESUMABLE_CHANGES, SECTIONS, SelfPlaySettings, section_of

CHANGED = SelfPlaySettings(
    num_iterations=7, seed=5, ppo=PPOSettings(gamma=0.9, anneal_lr=True),
    pool=PoolSettings(opponent_sampling="uniform"), policy=PolicySettings(observation="features", merge_sides=True),
)  # fmt: skip


@pytest.mark.parametrize(
    ("part", "values", "message"),
    [
        (PPOSettings, {"gamma": 1.5}, "gamma must be in"),
        (PPOSettings, {"minibatch_size": 0}, "minibatch_size must be >= 1"),
        (PPOSettings, {"clip": 0.0}, "clip must be > 0"),
        (PPOSettings, {"learning_rate": -1e-3}, "learning_rate must be >= 0"),
        (PoolSettings, {"opponent_sampling": "league"}, "opponent_sampling must be one of"),
        (PoolSettings, {"learner_seats": "b"}, "learner_seats"),
        (PoolSettings, {"pool_size": 0}, "pool_size must be >= 1"),
        (PoolSettings, {"std_fraction": 0.0}, "std_fraction positive"),
        (PolicySettings, {"observation": "scores"}, "observation must be one of"),
        (PolicySettings, {"pixels_per_patch": 3}, "power of two"),
        (PolicySettings, {"channels": 0}, "channels must be >= 1"),
        (PolicySettings, {"termination_prob": 0.01}, "termination_prob must lie strictly inside"),
        (SelfPlaySettings, {"games_per_iteration": 0}, "games_per_iteration must be >= 1"),
        (SelfPlaySettings, {"termination_warmup": -1}, "termination_warmup must be >= 0"),
    ],
)
def test_each_part_checks_its_own_values(part, values, message):
    with pytest.raises(ValueError, match=message):
        part(**values)
    # From a bundle config, the same check is a one-line error naming the section.
    section = next((name for name, kind in SECTIONS.items() if kind is part), "training")
    with pytest.raises(MedwssError, match=rf"^selfplay#{section}: .*{message}") as err:
        SelfPlaySettings.from_config({section: values})
    assert "\n" not in str(err.value)


def test_parts_must_be_parts():
    with pytest.raises(TypeError, match="ppo must be a PPOSettings"):
        SelfPlaySettings(ppo={"gamma": 0.9})  # type: ignore[arg-type]


def test_unknown_keys_name_their_section():
    with pytest.raises(MedwssError, match=r"^selfplay#ppo: unknown setting 'gama' \(known: learning_rate, anneal_lr"):
        SelfPlaySettings.from_config({"ppo": {"gama": 0.9}})
    with pytest.raises(MedwssError, match=r"^selfplay#training: unknown setting 'epochs' \(known: num_iterations"):
        SelfPlaySettings.from_config({"training": {"epochs": 3}})
    with pytest.raises(MedwssError, match=r"^selfplay#pool: must be a mapping of settings, got int"):
        SelfPlaySettings.from_config({"pool": 3})
    with pytest.raises(MedwssError, match=r"^selfplay#policy: channels must be int, got 'wide'$"):
        SelfPlaySettings.from_config({"policy": {"channels": "wide"}})
    with pytest.raises(MedwssError, match=r"^selfplay#ppo: anneal_lr must be bool, got 1$"):
        SelfPlaySettings.from_config({"ppo": {"anneal_lr": 1}})
    assert SelfPlaySettings.from_config({"ppo": {"learning_rate": 0}}).ppo.learning_rate == 0  # an int for a float


def test_node_keys_catch_a_misspelt_section():
    node = {"ppos": {"gamma": 0.9}, "rules": {}, "training": {}}
    assert SelfPlaySettings.from_config(node) == SelfPlaySettings()  # without node_keys the rest is not looked at
    with pytest.raises(MedwssError, match=r"^selfplay: unknown key 'ppos' \(known: training, ppo, pool, policy, rules"):
        SelfPlaySettings.from_config(node, node_keys=("rules",))


def test_the_old_flat_training_mapping_says_where_each_key_moved():
    old = {"num_iterations": 60, "learning_rate": 0.001, "update_epochs": 4, "pool_size": 20, "channels": 16}
    with pytest.raises(MedwssError) as err:
        SelfPlaySettings.from_config({"training": old}, seed=0)
    assert str(err.value) == (
        "selfplay#training: settings in the wrong section, move them: learning_rate, update_epochs -> selfplay#ppo; "
        "pool_size -> selfplay#pool; channels -> selfplay#policy"
    )
    with pytest.raises(MedwssError, match=r"^selfplay#policy: .* gamma -> selfplay#ppo"):
        SelfPlaySettings.from_config({"policy": {"gamma": 0.9}})


def test_config_round_trip_and_defaults_live_in_the_dataclasses():
    assert SelfPlaySettings.from_config(None) == SelfPlaySettings.from_config({}) == SelfPlaySettings()
    stored = json.loads(json.dumps(CHANGED.to_config()))  # as checkpoints and models/policy.json keep it
    assert set(stored) == {"training", "ppo", "pool", "policy"} and stored["ppo"] == dataclasses.asdict(CHANGED.ppo)
    assert SelfPlaySettings.from_config(stored) == CHANGED
    # A bundle config: other keys of the selfplay node are not settings; the seed comes from the bundle.
    node = {"rules": {"turn_reward": 1.0}, "num_threads": 1, **{k: v for k, v in stored.items()}}
    node["training"] = {k: v for k, v in stored["training"].items() if k != "seed"}
    assert SelfPlaySettings.from_config(node, seed=5) == CHANGED
    with pytest.raises(MedwssError, match=r"^selfplay#training#seed: the run's seed is the bundle's top-level"):
        SelfPlaySettings.from_config(stored, seed=5)


def test_flat_view_and_replace_route_by_field_name():
    flat = CHANGED.flat()
    parts = [f.name for f in dataclasses.fields(SelfPlaySettings) if f.name not in SECTIONS]
    parts += [f.name for kind in SECTIONS.values() for f in dataclasses.fields(kind)]
    assert len(parts) == len(set(parts)) == len(flat)  # names are unique across the parts
    assert flat["gamma"] == 0.9 and flat["opponent_sampling"] == "uniform" and flat["num_iterations"] == 7
    assert all(section_of(name) == "training" for name in RESUMABLE_CHANGES)  # only run-level fields may change
    changed = CHANGED.replace(gamma=0.5, pool_size=3, channels=4, num_iterations=2)
    assert (changed.ppo.gamma, changed.pool.pool_size, changed.policy.channels) == (0.5, 3, 4)
    assert changed.num_iterations == 2
    assert changed.ppo.anneal_lr and changed.policy.merge_sides  # the rest of each part is kept
    with pytest.raises(TypeError, match="no setting 'gama'"):
        CHANGED.replace(gama=0.5)
    with pytest.raises(ValueError, match="gamma must be in"):
        CHANGED.replace(gamma=2.0)


def test_network_config_is_what_rebuilds_the_network():
    config = CHANGED.policy.network_config(grid_size=4, in_channels=3)
    assert AgentPolicy(**config).config == config


def test_resume_reads_sectioned_and_pre_split_checkpoints(tmp_path: Path):
    rules = GameRules(grid_size=4)
    state = {"rules": dataclasses.asdict(rules), "settings": CHANGED.to_config()}
    _check_resumable(tmp_path, state, rules, CHANGED.replace(num_iterations=20, eval_every=3))  # resumable changes
    flat_state = {"rules": state["rules"], "settings": CHANGED.flat()}  # what checkpoints stored before the split
    _check_resumable(tmp_path, flat_state, rules, CHANGED)
    with pytest.raises(MedwssError, match=r"other settings \(policy\.channels, ppo\.gamma\)"):
        _check_resumable(tmp_path, state, rules, CHANGED.replace(gamma=0.5, channels=4))
