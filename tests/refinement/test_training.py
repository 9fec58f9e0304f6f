"""Refinement UNet on tiny generated slices: it learns the target masks, is seeded, and respects the region."""

from __future__ import annotations

import pytest
import torch

from medwss.refinement.training import RefinementSettings, refine, refine_probabilities, train_refiner

TINY = RefinementSettings(epochs=12, batch_size=8, learning_rate=2e-2, channels=(4, 8), num_res_units=0, seed=0)


def _toy(n: int = 16, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy slices with a bright square (the ROI) at a random spot; target = the square."""
    g = torch.Generator().manual_seed(1)
    images = 0.2 + 0.05 * torch.randn(n, 1, size, size, generator=g)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        y, x = torch.randint(0, size - 10, (2,), generator=g).tolist()
        masks[i, y : y + 10, x : x + 10] = True
    images[masks[:, None]] += 0.6
    return images, masks


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()).clamp(min=1))


def test_learns_targets_and_loss_falls() -> None:
    torch.set_num_threads(1)
    images, masks = _toy(8)
    losses: list[float] = []
    model = train_refiner(images, masks, TINY, progress=lambda epoch, loss: losses.append(loss))
    assert len(losses) == TINY.epochs and losses[-1] < 0.5 * losses[0]
    assert _dice(refine(model, images), masks) > 0.8


def test_seeded_and_region_limited() -> None:
    torch.set_num_threads(1)
    images, masks = _toy(8)
    settings = RefinementSettings(epochs=2, batch_size=4, channels=(4, 8), seed=3)
    a, b = train_refiner(images, masks, settings), train_refiner(images, masks, settings)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    region = torch.zeros_like(masks)
    region[:, :16] = True
    assert not (refine(a, images, region) & ~region).any()


def test_shape_mismatch_is_rejected() -> None:
    images, masks = _toy(4)
    with pytest.raises(ValueError, match="disagree"):
        train_refiner(images, masks[:3], TINY)


def test_checkpoint_sees_every_epoch_and_thresholds_nest() -> None:
    """The checkpoint hook lets a caller pick the epoch count on validation from one run; thresholds nest."""
    torch.set_num_threads(1)
    images, masks = _toy(8)
    seen: list[int] = []
    model = train_refiner(images, masks, TINY, checkpoint=lambda epoch, net: seen.append(epoch))
    assert seen == list(range(1, TINY.epochs + 1))
    prob = refine_probabilities(model, images)
    assert prob.shape == masks.shape and float(prob.min()) >= 0 and float(prob.max()) <= 1
    low, mid, high = (refine(model, images, threshold=t) for t in (0.3, 0.5, 0.7))
    assert not (high & ~mid).any() and not (mid & ~low).any()
    assert torch.equal(mid, prob > 0.5)
