"""What an agent sees: the image with taken patches blanked, plus owner planes from its own point of view.

Agents never see detector scores (RLSP §3.2): they must learn where the ROI is from the image itself, and the
planes are relative to the acting agent ("mine", "theirs") so one policy network can play either seat.
"""

from __future__ import annotations

import torch

PLANES: tuple[str, ...] = ("mine", "theirs", "outside_region", "final_phase")
"""Names of the planes `agent_planes` returns, in channel order."""


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


def observe(
    images: torch.Tensor | None,
    owner: torch.Tensor,
    agent: torch.Tensor,
    region: torch.Tensor,
    final_phase: torch.Tensor,
) -> torch.Tensor:
    """The policy input: (B, C + 4, H, W) blanked image + upsampled planes, or (B, 4, G, G) planes without image."""
    planes = agent_planes(owner, agent, region, final_phase)
    if images is None:
        return planes
    blanked = blank_patches(images.to(torch.float32), owner != 0)
    return torch.cat([blanked, upsample_patches(planes, images.shape[-2], images.shape[-1])], dim=1)
