"""Frozen per-slice image encoders for the "features" observation: image (N, C, H, W) -> features (N, F, G, G).

The features observation computes image features ONCE per slice and only zeroes the taken patches each step, which
makes a policy step cost a small conv net at G x G instead of one over the whole image. The detector's trunk is the
intended encoder (any callable with this signature plugs in); these two need no training and serve as the default
and in tests.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _patch_blocks(images: torch.Tensor, grid: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, G, G, ph*pw): the pixels of every patch, on the game's row-major grid."""
    n, c, h, w = images.shape
    if h % grid or w % grid:
        raise ValueError(f"image size {h}x{w} is not a multiple of the grid size {grid}")
    ph, pw = h // grid, w // grid
    return images.reshape(n, c, grid, ph, grid, pw).permute(0, 1, 2, 4, 3, 5).reshape(n, c, grid, grid, ph * pw)


class PatchStatsEncoder(nn.Module):
    """Per-patch intensity statistics (mean, std, min, max per channel): F = 4 * C, no parameters.

    Args:
        grid_size: G, patches per side.
    """

    def __init__(self, grid_size: int) -> None:
        super().__init__()
        self.grid_size = grid_size

    def out_channels(self, in_channels: int) -> int:
        return 4 * in_channels

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blocks = _patch_blocks(images.float(), self.grid_size)
        stats = (blocks.mean(-1), blocks.std(-1, correction=0), blocks.amin(-1), blocks.amax(-1))
        return torch.cat(stats, dim=1)


class RandomConvEncoder(nn.Module):
    """A frozen random 3x3 conv bank with ReLU, average- and max-pooled per patch, plus the patch mean: F = 2K + C.

    Random features separate textures and edges that plain statistics miss (a cheap stand-in for a trained trunk);
    its weights come from its own seeded generator, so it never consumes the global torch RNG.

    Args:
        in_channels: image channels C.
        grid_size: G.
        filters: K random filters.
        seed: seed of the weights.
    """

    def __init__(self, in_channels: int, grid_size: int, filters: int = 8, seed: int = 0) -> None:
        super().__init__()
        self.grid_size, self.seed = grid_size, seed
        gen = torch.Generator().manual_seed(seed)
        weight = torch.randn(filters, in_channels, 3, 3, generator=gen)
        weight = weight - weight.mean(dim=(1, 2, 3), keepdim=True)  # edge/texture detectors, blind to offset
        self.register_buffer("weight", weight / weight.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        self.register_buffer("bias", 0.1 * torch.randn(filters, generator=gen))

    def out_channels(self, in_channels: int) -> int:
        return 2 * self.weight.shape[0] + in_channels

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float()
        response = F.relu(F.conv2d(images, self.weight, self.bias, padding=1))
        g = self.grid_size
        pooled = (F.adaptive_avg_pool2d(response, g), F.adaptive_max_pool2d(response, g))
        return torch.cat([*pooled, _patch_blocks(images, g).mean(-1)], dim=1)


def encoder_config(encoder: object) -> dict[str, object]:
    """What a checkpoint records of the features encoder, so inference can rebuild a built-in one."""
    if isinstance(encoder, RandomConvEncoder):
        filters, in_channels = encoder.weight.shape[:2]
        return {"name": "RandomConvEncoder", "in_channels": int(in_channels), "grid_size": encoder.grid_size,
                "filters": int(filters), "seed": encoder.seed}  # fmt: skip
    if isinstance(encoder, PatchStatsEncoder):
        return {"name": "PatchStatsEncoder", "grid_size": encoder.grid_size}
    return {"name": type(encoder).__name__}


def encoder_from_config(config: dict[str, object]) -> nn.Module:
    """Rebuild a built-in encoder from `encoder_config`; a custom one (the detector trunk) must be passed again.

    Raises:
        ValueError: the config names an encoder that is not built in.
    """
    args = {k: v for k, v in config.items() if k != "name"}
    if config.get("name") == "RandomConvEncoder":
        return RandomConvEncoder(**args)  # type: ignore[arg-type]
    if config.get("name") == "PatchStatsEncoder":
        return PatchStatsEncoder(**args)  # type: ignore[arg-type]
    raise ValueError(f"encoder {config.get('name')!r} is not built in: pass the encoder the policy was trained with")
