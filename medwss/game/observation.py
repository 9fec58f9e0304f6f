"""What an agent sees: the image (or its features) with taken patches blanked, plus the game state planes.

Agents never see detector scores (RLSP §3.2): they must learn where the ROI is from the image itself, and the
planes are relative to the acting agent ("mine", "theirs") so one policy network can play either seat.

`build_observation` is the one builder of policy inputs: self-play training, inference (`selfplay.rollout`), replays
and the PettingZoo env (`game.env`) all call it, so an agent trained in one plays in the others.
"""

from __future__ import annotations

from typing import Literal

import torch

PLANES: tuple[str, ...] = ("mine", "theirs", "outside_region", "final_phase")
"""Names of the planes `agent_planes` returns, in channel order."""
STATE_PLANES = len(PLANES) + 1
"""Planes added to the image channels: the owner planes of `PLANES` and the step fraction."""

ObservationMode = Literal["pixels", "features"]
OBSERVATION_MODES: tuple[str, ...] = ("pixels", "features")


def check_mode(mode: str) -> None:
    if mode not in OBSERVATION_MODES:
        raise ValueError(f"observation must be one of {OBSERVATION_MODES}, got {mode!r}")


def agent_planes(
    owner: torch.Tensor,
    agent: torch.Tensor,
    region: torch.Tensor,
    final_phase: torch.Tensor,
    merge_sides: bool = False,
) -> torch.Tensor:
    """Owner planes seen by `agent`, (B, 4, G, G) float32, in PLANES order.

    With `merge_sides` every taken patch is "mine" and "theirs" stays empty: the agent sees which patches are gone,
    not who took them. Why: whether to terminate ("is any ROI patch left?") depends only on what is still free, and
    a board without an opponent's patches is then the same input in self-play and in solo play at inference (with
    split sides the agent never saw a solo board in training and rarely terminated alone).

    Args:
        owner: (B, G, G) integer, 0 free, 1 taken by a, 2 taken by b.
        agent: (B,) integer, 0 or 1: whose point of view.
        region: (B, G, G) bool, patches that may be taken at all.
        final_phase: (B,) bool, True while the final picks are played (TERMINATE is then not allowed).
        merge_sides: see above.
    """
    if merge_sides:
        mine = owner != 0
        theirs = torch.zeros_like(mine)
    else:
        mine = owner == (agent.to(owner.dtype) + 1).view(-1, 1, 1)
        theirs = (owner != 0) & ~mine
    final = final_phase.view(-1, 1, 1).expand_as(mine)
    return torch.stack([mine, theirs, ~region, final], dim=1).to(torch.float32)


def upsample_patches(grid: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Repeat each patch cell of (B, K, G, G) to pixels (B, K, H, W); H and W must be multiples of G."""
    g = grid.shape[-1]
    if height % g or width % g:
        raise ValueError(f"image size {height}x{width} is not a multiple of the grid size {g}")
    return grid.repeat_interleave(height // g, dim=-2).repeat_interleave(width // g, dim=-1)


def blank_patches(images: torch.Tensor, taken: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Images (B, C, H, W) with the taken patches (B, G, G) bool set to `fill`, as the next agent sees them."""
    hidden = upsample_patches(taken.unsqueeze(1), images.shape[-2], images.shape[-1])
    return images.masked_fill(hidden, fill)


def build_observation(
    base: torch.Tensor,
    owner: torch.Tensor,
    agent: torch.Tensor,
    region: torch.Tensor,
    final_phase: torch.Tensor,
    step_fraction: torch.Tensor,
    mode: ObservationMode,
    merge_sides: bool = False,
) -> torch.Tensor:
    """Policy input (n, base channels + STATE_PLANES, ...) of n games from `agent`'s point of view.

    Args:
        base: (n, K, ., .) rows of `agents.inputs.observation_base` for these games: "pixels" images (K = C,
            H and W multiples of G) or "features" (K = F, at G x G); K may be 0 (the state planes alone).
        owner: (n, G, G) integer, 0 free, 1 taken by a, 2 taken by b.
        agent: (n,) whose point of view.
        region: (n, G, G) bool legal region.
        final_phase: (n,) bool.
        step_fraction: (n,) float, turn / turns of a self-play game, in [0, 1].
        mode: "pixels" blanks taken patches' pixels and upsamples the planes to the image; "features" zeroes taken
            patches' features at G x G.
        merge_sides: the owner planes do not tell the agent's patches from the opponent's (`agent_planes`).
    """
    planes = agent_planes(owner, agent, region, final_phase, merge_sides)
    g = owner.shape[-1]
    step = step_fraction.to(planes.dtype).view(-1, 1, 1, 1).expand(-1, 1, g, g)
    state = torch.cat([planes, step], dim=1)
    taken = owner != 0
    if mode == "features":
        return torch.cat([base.float().masked_fill(taken[:, None], 0.0), state], dim=1)
    h, w = base.shape[-2:]
    return torch.cat([blank_patches(base.float(), taken), upsample_patches(state, h, w)], dim=1)
