"""Refinement: a small MONAI UNet trained on RLSP's patch masks so borders stop being patch-shaped.

Why: the agent's masks are unions of 8 x 8 px patches; a network trained on many such masks learns the organ's
appearance and draws pixel borders (standard in weakly-supervised segmentation: pseudo-labels, then a segmenter).
Nothing here reads a reference mask: the targets are whatever masks the caller passes (RLSP's, or - for the
fully-supervised upper bound of the accuracy benchmark - the real masks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from monai.utils import set_determinism

from medwss.runtime.progress import batches
from medwss.runtime.seeding import named_generator

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefinementSettings:
    """UNet training hyper-parameters (small defaults: the CPU trains it in about a minute)."""

    epochs: int = 100
    """Passes over the training slices (measured on prostate: 20 epochs still predict nothing, 100 reach Dice 0.30
    supervised on a held-out patient and the loss is still falling)."""
    batch_size: int = 16
    """Slices per optimizer step."""
    learning_rate: float = 3e-3
    """Adam step size."""
    channels: tuple[int, ...] = (8, 16, 32, 64)
    """UNet channels per level (MONAI ``UNet``)."""
    num_res_units: int = 1
    """Residual units per UNet block."""
    flip: bool = True
    """Random left-right flips: anatomy is near-symmetric, and the pseudo-labels' errors are not."""
    seed: int = 0
    """Seeds weights, batch order and flips."""


def build_refiner(in_channels: int, settings: RefinementSettings) -> torch.nn.Module:
    """MONAI ``UNet`` (2D, one foreground logit): small, fully convolutional, any size divisible by 8."""
    from monai.networks.nets import UNet

    strides = (2,) * (len(settings.channels) - 1)
    return UNet(2, in_channels, 1, settings.channels, strides, num_res_units=settings.num_res_units)


def train_refiner(
    images: torch.Tensor,
    targets: torch.Tensor,
    settings: RefinementSettings,
    *,
    progress: Callable[[int, float], None] | None = None,
    checkpoint: Callable[[int, torch.nn.Module], None] | None = None,
) -> torch.nn.Module:
    """Train a UNet on (N, C, H, W) slices and (N, H, W) bool target masks; returns it in eval mode.

    Slices whose target is empty stay in training: they teach the network where the ROI is *not*.

    Args:
        images: float slices as the detector sees them.
        targets: masks to learn (RLSP pseudo-masks, or reference masks for an upper bound).
        settings: hyper-parameters and seed.
        progress: called as ``progress(epoch, mean_loss)`` after every epoch.
        checkpoint: called as ``checkpoint(epoch, model)`` after every epoch (the model is still training: copy
            its ``state_dict`` to keep it). Why: the epoch count can then be picked on validation data from one
            training run instead of one run per candidate.
    """
    from monai.losses import DiceCELoss

    if images.dim() != 4 or targets.shape != (images.shape[0], *images.shape[-2:]):
        raise ValueError(f"images (N, C, H, W) and targets (N, H, W) disagree: {images.shape} vs {targets.shape}")
    set_determinism(settings.seed)
    model = build_refiner(images.shape[1], settings)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    loss_fn = DiceCELoss(sigmoid=True, batch=True)  # batch Dice: a batch of empty targets still has a gradient
    order_rng, flip_rng = named_generator(settings.seed, "refine-order"), named_generator(settings.seed, "refine-flip")
    y_all = targets[:, None].float()
    model.train()
    for epoch in range(settings.epochs):
        losses = []
        order = torch.from_numpy(order_rng.permutation(len(images)))
        for part in batches(len(images), settings.batch_size):
            idx = order[part]
            x, y = images[idx], y_all[idx]
            if settings.flip:
                flip = torch.from_numpy(flip_rng.random(len(idx)) < 0.5)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                y = torch.where(flip[:, None, None, None], y.flip(-1), y)
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        if progress is not None:
            progress(epoch + 1, sum(losses) / len(losses))
        if checkpoint is not None:
            checkpoint(epoch + 1, model)
    return model.eval()


@torch.no_grad()
def refine_probabilities(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """(N, H, W) foreground probabilities of a trained refiner.

    Why separate from `refine`: a caller that picks the probability threshold (or a slice gate) on validation
    data runs the network once and thresholds many times.
    """
    model.eval()
    return torch.cat([torch.sigmoid(model(images[part])[:, 0]) for part in batches(len(images), batch_size)])


def refine(
    model: torch.nn.Module,
    images: torch.Tensor,
    region: torch.Tensor | None = None,
    batch_size: int = 64,
    threshold: float = 0.5,
) -> torch.Tensor:
    """(N, H, W) bool masks from a trained refiner (probability > threshold), limited to the region if given."""
    out = refine_probabilities(model, images, batch_size) > threshold
    return out & region.bool() if region is not None else out
