"""Body masks from hand-made slices, and patch membership of a region on a grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.data.regions import body_mask
from medwss.metrics.patches import patch_labels


def _phantom() -> np.ndarray:
    """Two 32x32 slices: a bright disc 'body' with a dark hole (and a dark line) inside, plus a bright speck."""
    yy, xx = np.mgrid[:32, :32]
    disc = (yy - 16) ** 2 + (xx - 15) ** 2 <= 11**2
    image = np.zeros((2, 32, 32), np.float32)
    image[:, disc] = 0.8
    image[:, 14:18, 13:17] = 0.0  # gas inside the body: a hole to fill
    image[0, 10, disc[10]] = 0.0  # a dark one-pixel line that cuts the body in two (e.g. fat): closing bridges it
    image[:, 1:3, 29:31] = 0.9  # a speck outside the body (coil, noise): not the largest component
    return image, disc


def test_body_mask_fills_holes_and_drops_specks() -> None:
    image, disc = _phantom()
    body = body_mask(image)
    assert body.shape == image.shape and body.dtype == bool
    np.testing.assert_array_equal(body[1], disc)
    # Closing rejoins the two halves the line cut apart (else the smaller one would be dropped as a second
    # component); only the line's two end pixels on the outline stay notches.
    assert not (body[0] & ~disc).any() and int((disc & ~body[0]).sum()) == 2


def test_body_mask_keeps_tensor_kind_and_extra_dims() -> None:
    image, disc = _phantom()
    body = body_mask(torch.from_numpy(image)[:, None])
    assert isinstance(body, torch.Tensor) and body.shape == (2, 1, 32, 32)
    np.testing.assert_array_equal(body[:, 0].numpy(), body_mask(image))


def test_body_touching_the_border_is_not_eroded() -> None:
    image = np.zeros((1, 16, 16), np.float32)
    image[0, :, 4:] = 0.7  # body runs off three edges of the field of view
    image[0, 3:6, 2] = 0.2  # dim tissue that is still above half of Otsu's threshold
    body = body_mask(image)
    assert body[0, :, 4:].all() and not body[0, :, :2].any()


@pytest.mark.parametrize("value", [0.0, 0.5])
def test_empty_or_constant_volumes(value: float) -> None:
    image = np.full((2, 8, 8), value, np.float32)
    assert bool(body_mask(image).all()) == (value > 0.02)


# 4x4 region; on a 2x2 grid its patch coverage is [[1, .5], [.25, 0]].
REGION = np.array([[1, 1, 1, 0], [1, 1, 1, 0], [0, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)


@pytest.mark.parametrize(
    ("grid", "min_coverage", "expected"),
    [
        (2, 0.5, [[True, True], [False, False]]),
        (2, 0.6, [[True, False], [False, False]]),
        (2, 0.25, [[True, True], [True, False]]),
        (2, 0.0, [[True, True], [True, False]]),
        (1, 0.4, [[True]]),
        (1, 0.5, [[False]]),
        (4, 0.5, REGION.tolist()),
    ],
)
def test_region_patches_on_a_grid_by_hand(grid: int, min_coverage: float, expected: list) -> None:
    out = patch_labels(REGION[None], grid, min_coverage)
    assert out.shape == (1, grid, grid) and out.dtype == bool
    np.testing.assert_array_equal(out[0], expected)
    as_tensor = patch_labels(torch.from_numpy(REGION)[None], grid, min_coverage)
    assert isinstance(as_tensor, torch.Tensor)
    np.testing.assert_array_equal(as_tensor[0].numpy(), expected)


@pytest.mark.parametrize(("grid", "min_coverage"), [(3, 0.5), (2, 1.5), (2, -0.1)])
def test_region_patches_reject_bad_arguments(grid: int, min_coverage: float) -> None:
    with pytest.raises(ValueError):
        patch_labels(REGION[None], grid, min_coverage)
