"""Policy inputs: a per-slice base computed once, plus the game state planes rebuilt at every step.

Agents see the image, never the detector scores (RLSP §3.2). Two encodings of the same information:

- "pixels": the slice resized to `pixels_per_patch` pixels per patch, taken patches blanked, plus the owner planes
  upsampled to pixels; the policy's strided stem brings it to G x G.
- "features": image features at G x G from a frozen encoder (the detector's trunk, or `agents.encoders`), taken
  patches' features zeroed (the blanking), plus the planes at G x G. No pixel work per step.

Both add a step-fraction plane (turn / turns of a self-play game) so the termination head knows how far the game
is. The builder of the per-step inputs is `game.observation.build_observation`, the one the PettingZoo env uses too.
Storing only the game state (owner grid, phase, turn) per step and rebuilding inputs in PPO minibatches keeps the
rollout memory at bytes per patch instead of a float image per step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from medwss.game.observation import (  # noqa: F401  (re-exported: the policy inputs' names)
    OBSERVATION_MODES,
    STATE_PLANES,
    ObservationMode,
    build_observation,
    check_mode,
)

Encoder = Callable[[torch.Tensor], torch.Tensor]
"""Frozen image encoder: (N, C, H, W) -> (N, F, G, G)."""


@torch.no_grad()
def observation_base(
    images: torch.Tensor,
    mode: ObservationMode,
    grid_size: int,
    *,
    features: torch.Tensor | None = None,
    encoder: Encoder | None = None,
    pixels_per_patch: int = 4,
    batch_size: int = 256,
) -> torch.Tensor:
    """The per-slice part of the observation, computed once per slice.

    Args:
        images: (N, C, H, W) slices; H and W multiples of G.
        mode: "pixels" -> (N, C, G*p, G*p) resized images; "features" -> (N, F, G, G).
        grid_size: G.
        features: precomputed (N, F, G, G) features (features mode); used instead of `encoder`.
        encoder: frozen callable images -> features, run in chunks of `batch_size` (features mode).
        pixels_per_patch: p, the pixel resolution of a patch the pixels policy sees (area downsampling).
    """
    check_mode(mode)
    g = grid_size
    if mode == "features":
        if features is None:
            if encoder is None:
                raise ValueError('observation "features" needs precomputed features or an encoder')
            features = torch.cat([encoder(chunk) for chunk in images.split(batch_size)]) if len(images) else None
        if features is None or features.dim() != 4 or features.shape[-2:] != (g, g):
            shape = None if features is None else tuple(features.shape)
            raise ValueError(f"features must be (N, F, {g}, {g}), got {shape}")
        return features.float()
    size = g * pixels_per_patch
    images = images.float()
    if images.shape[-2:] == (size, size):
        return images
    interp = "area" if images.shape[-2] >= size and images.shape[-1] >= size else "nearest"
    return F.interpolate(images, size=(size, size), mode=interp)
