"""A tiny synthetic RLSP task with a known answer: the ROI is a bright square, the "detector" is its patch coverage.

Used by tests, smoke runs and speed benchmarks of self-play, where a trained detector is not the point: a perfect
detector makes the oracle patch mask reachable, so the learned agent can be compared with the threshold baseline
and the oracle on equal terms.
"""

from __future__ import annotations

import numpy as np
import torch

from medwss.metrics.patches import patch_coverage
from medwss.selfplay.loop import SelfPlayData


def bright_squares(
    count: int, size: int, rng: np.random.Generator, presence: float = 0.7, side: tuple[float, float] = (0.2, 0.45)
) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy slices (count, 1, size, size) and masks (count, size, size): a bright square in a `presence` share.

    Args:
        side: min and max side of the square as fractions of the slice.
    """
    images = rng.normal(0.2, 0.08, size=(count, 1, size, size)).astype(np.float32)
    masks = np.zeros((count, size, size), dtype=bool)
    for i in range(count):
        if rng.random() >= presence:
            continue
        h, w = (int(round(rng.uniform(*side) * size)) for _ in range(2))
        h, w = max(h, 1), max(w, 1)
        top, left = rng.integers(0, size - h + 1), rng.integers(0, size - w + 1)
        masks[i, top : top + h, left : left + w] = True
    images[:, 0][masks] += 0.6
    return torch.from_numpy(images), torch.from_numpy(masks)


def synthetic_data(
    train: int,
    val: int,
    size: int,
    grid_size: int,
    seed: int = 0,
    presence: float = 0.7,
    side: tuple[float, float] = (0.2, 0.45),
) -> SelfPlayData:
    """`SelfPlayData` of bright squares whose patch scores are the squares' patch coverage (a perfect detector)."""
    rng = np.random.default_rng(seed)
    images, masks = bright_squares(train, size, rng, presence, side)
    val_images, val_masks = bright_squares(val, size, rng, presence, side)
    return SelfPlayData(
        images=images,
        scores=patch_coverage(masks, grid_size),
        region=None,
        val_images=val_images,
        val_scores=patch_coverage(val_masks, grid_size),
        val_region=None,
        val_masks=val_masks,
    )
