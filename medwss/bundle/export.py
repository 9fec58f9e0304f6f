"""What the self-play stage hands to inference: the agent's network and game rules as config nodes beside its weights.

``models/inference_parts.json`` holds ``network_def`` (the policy's constructor arguments, ``AgentPolicy.config``),
``rules`` (``GameRules`` with the ROI threshold as calibrated) and, for scan bundles, ``agent_planes``: each a MONAI
config node with its ``_target_``. ``configs/inference.yaml`` includes them with MONAI's macro
(``network_def: "%models/inference_parts.json#network_def"``) instead of restating numbers copied by hand, so a
retrained agent cannot meet a stale architecture or threshold. MONAI reads a macro's file relative to the current
folder (its model zoo runs a bundle from the bundle folder); ``bundle.config.anchor_macros`` reads it relative to the
bundle folder wherever medwss runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from medwss.bundle.stages import write_json_atomic

INFERENCE_PARTS = "inference_parts.json"
"""File name of the exported nodes, in the bundle's ``models/`` beside ``model.pt``."""
POLICY_TARGET = "medwss.agents.policy.AgentPolicy"
RULES_TARGET = "medwss.game.rules.GameRules"


def inference_parts(
    policy_config: Mapping[str, Any], rules: Any, agent_planes: Sequence[str] | None = None
) -> dict[str, Any]:
    """The config nodes inference rebuilds the trained agent's game from.

    Args:
        policy_config: ``AgentPolicy.config`` of the trained policy.
        rules: the ``GameRules`` it trained with (or their dict), ROI threshold resolved.
        agent_planes: the extra planes it sees beside the trunk features (scan bundles); None leaves the key out.
    """
    rule_values = asdict(rules) if is_dataclass(rules) else dict(rules)
    parts: dict[str, Any] = {
        "network_def": {"_target_": POLICY_TARGET, **policy_config},
        "rules": {"_target_": RULES_TARGET, **rule_values},
    }
    if agent_planes is not None:
        parts["agent_planes"] = list(agent_planes)
    return parts


def write_inference_parts(
    models: Path, policy_config: Mapping[str, Any], rules: Any, agent_planes: Sequence[str] | None = None
) -> Path:
    """``models/inference_parts.json`` (atomic), from what ``inference_parts`` takes."""
    return write_json_atomic(inference_parts(policy_config, rules, agent_planes), models / INFERENCE_PARTS)
