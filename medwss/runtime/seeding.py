"""Named generators passed explicitly, and every RNG state for checkpoints.

A run seeds the global RNGs with ``monai.utils.set_determinism(seed)`` (Python, numpy, torch, cuDNN flags) and is
reproducible from its seed; a resumed run restores every RNG state from the checkpoint (``rng_states`` /
``restore_rng_states``), which nnU-Net's checkpoints lack.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def named_generator(seed: int, name: str) -> np.random.Generator:
    """An independent numpy generator per consumer (game, pool, data), stable when another consumer changes."""
    key = sum((i + 1) * ord(c) for i, c in enumerate(name))
    return np.random.default_rng([seed, key])


def rng_states(generators: dict[str, np.random.Generator] | None = None) -> dict[str, Any]:
    """Every global RNG state plus the named generators', for a checkpoint."""
    states: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    states["named"] = {k: g.bit_generator.state for k, g in (generators or {}).items()}
    return states


def restore_rng_states(states: dict[str, Any], generators: dict[str, np.random.Generator] | None = None) -> None:
    """Inverse of ``rng_states``: the run continues as if it had never stopped."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, state in states.get("named", {}).items():
        if generators and name in generators:
            generators[name].bit_generator.state = state
