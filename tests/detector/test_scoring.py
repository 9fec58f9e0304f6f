"""Batched patch scoring equals a one-patch-at-a-time reference."""

from __future__ import annotations

import math

import pytest
import torch

from medwss.detector.network import build_detector
from medwss.detector.scoring import score_patches


def _reference(model, slices: torch.Tensor, grid: int, region: torch.Tensor | None) -> torch.Tensor:
    """Explicit per-patch, per-pixel pooling in Python: slow but obviously right (one forward per slice)."""
    b, _, h, w = slices.shape
    ph, pw = h // grid, w // grid
    out = torch.zeros(b, grid, grid)
    model.eval()
    with torch.no_grad():
        for n in range(b):
            cells = model(slices[n : n + 1])[0, 0]
            for i in range(grid):
                for j in range(grid):
                    values = []
                    for y in range(i * ph, (i + 1) * ph):
                        for x in range(j * pw, (j + 1) * pw):
                            if region is None or region[n, y, x]:
                                values.append(float(cells[y * cells.shape[0] // h, x * cells.shape[1] // w]))
                    if not values:
                        continue  # outside the prior: probability 0
                    if model.pooling == "max":
                        logit = max(values)
                    elif model.pooling == "mean":
                        logit = sum(values) / len(values)
                    else:
                        r = model.lse_r
                        logit = math.log(sum(math.exp(r * v) for v in values) / len(values)) / r
                    out[n, i, j] = 1 / (1 + math.exp(-logit))
    return out


@pytest.mark.parametrize(
    ("pooling", "grid", "with_region"),
    [("lse", 4, False), ("lse", 8, True), ("max", 2, True), ("mean", 8, False), ("lse", 16, True)],
)
def test_batched_scores_equal_reference(pooling: str, grid: int, with_region: bool) -> None:
    torch.manual_seed(0)
    model = build_detector(width=4, pooling=pooling)
    with torch.no_grad():  # random head so the cells differ visibly
        model.head.bias.fill_(0.0)
    slices = torch.rand(2, 1, 32, 32)
    region = None
    if with_region:
        region = torch.zeros(2, 32, 32, dtype=torch.bool)
        region[0, 3:20, 5:30] = True
        region[1, 10:, :17] = True
    fast = score_patches(model, slices, grid, region)
    assert fast.shape == (2, grid, grid) and fast.dtype == torch.float32
    torch.testing.assert_close(fast, _reference(model, slices, grid, region), atol=1e-5, rtol=1e-5)


def test_scores_do_not_depend_on_batch_size_and_are_probabilities() -> None:
    torch.manual_seed(1)
    model = build_detector(in_channels=3, num_classes=2, width=4)
    slices = torch.rand(5, 3, 64, 64)
    a = score_patches(model, slices, 16, class_index=1, batch_size=2)
    b = score_patches(model, slices, 16, class_index=1, batch_size=64)
    torch.testing.assert_close(a, b)
    assert torch.all((a >= 0) & (a <= 1))


def test_grid_must_divide_image() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        score_patches(build_detector(width=4), torch.rand(1, 1, 30, 30), 4)
