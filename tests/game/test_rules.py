"""GameRules: defaults, derived sizes, and rejection of settings that make no game."""

from __future__ import annotations

import dataclasses

import pytest

from medwss.game.rules import GameRules


def test_defaults_and_derived_sizes() -> None:
    rules = GameRules()
    assert (rules.grid_size, rules.turn_reward, rules.termination_reward, rules.roi_threshold) == (16, 1.0, 10.0, 0.5)
    assert rules.turn_reward_mode == "sign" and rules.use_termination_reward and rules.max_turns is None
    assert (rules.num_patches, rules.action_count, rules.terminate_action) == (256, 257, 256)


@pytest.mark.parametrize(
    "kwargs,two_agent,alone",
    [({"grid_size": 16}, 128, 256), ({"grid_size": 3}, 4, 9), ({"grid_size": 3, "max_turns": 2}, 2, 2)],
)
def test_turn_limit(kwargs: dict, two_agent: int, alone: int) -> None:
    rules = GameRules(**kwargs)
    assert rules.turn_limit() == two_agent and rules.turn_limit(single_agent=True) == alone


@pytest.mark.parametrize(
    "kwargs",
    [
        {"grid_size": 1},
        {"grid_size": 2.0},
        {"grid_size": True},
        {"turn_reward": -1.0},
        {"turn_reward": float("nan")},
        {"tie_reward": float("inf")},
        {"termination_reward": -10.0},
        {"termination_reward": "10"},
        {"roi_threshold": 0.0},
        {"roi_threshold": 1.5},
        {"turn_reward_mode": "ratio"},
        {"use_termination_reward": 1},
        {"max_turns": 0},
        {"grid_size": 2, "max_turns": 5},
        {"max_turns": 3.0},
    ],
    ids=str,
)
def test_nonsense_is_rejected(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GameRules(**kwargs)


def test_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GameRules().grid_size = 8  # type: ignore[misc]


def test_every_field_documented() -> None:
    """Each rule carries its docstring (STYLE §3): checked in the source, where dataclass docstrings live."""
    import inspect

    source = inspect.getsource(GameRules)
    for field in dataclasses.fields(GameRules):
        after = source.split(f"    {field.name}:", 1)[1].split("\n", 2)
        assert after[1].strip().startswith('"""'), f"{field.name} has no docstring"
