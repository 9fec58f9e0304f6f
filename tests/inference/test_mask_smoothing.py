"""medwss.inference.mask_smoothing: the patch mask blurred along the volume and thresholded."""

from __future__ import annotations

import pytest
import torch

from medwss.inference.mask_smoothing import MaskSmoothing


def _square(slices: int = 5, size: int = 64, lo: int = 16, hi: int = 48) -> torch.Tensor:
    masks = torch.zeros(slices, size, size, dtype=torch.bool)
    masks[:, lo:hi, lo:hi] = True
    return masks


def test_defaults_change_nothing():
    masks = torch.rand(3, 16, 16) > 0.5
    smooth = MaskSmoothing()
    assert not smooth.active
    assert torch.equal(smooth(masks, grid=4), masks)


def test_corners_round_off_and_straight_borders_stay():
    """A 32 x 32 square on a 4 x 4 grid of a 64 px slice (16 px patches), blurred in plane only at half a patch:
    its corner pixels go, the middle of each side stays where it was, the centre stays."""
    masks = _square()
    out = MaskSmoothing(sigma=0.5, threshold=0.5)(masks, grid=4)
    assert out.dtype == torch.bool and out.shape == masks.shape
    mid = out[2]
    assert not mid[16, 16] and not mid[47, 47]  # corners cut
    assert mid[16, 32] and mid[32, 16] and not mid[15, 32]  # a straight border keeps its place at 0.5
    assert mid[32, 32]
    assert torch.equal(out[0], out[2])  # no blur across slices: every slice alike


def test_sigma_counts_patch_widths_not_pixels():
    """The same mask at twice the pixels per patch gives the same shape, twice as large (up to a pixel's rounding):
    one setting means the same at any working size, where a sigma in pixels would cut relatively smaller corners."""
    small, large = _square(size=32, lo=8, hi=24), _square(size=64, lo=16, hi=48)
    smooth = MaskSmoothing(sigma=0.5, threshold=0.5)
    cut = lambda m, g: 1 - smooth(m, grid=g)[2].sum().item() / m[2].sum().item()  # noqa: E731  share of area lost
    assert cut(small, 4) > 0.02
    assert cut(large, 4) == pytest.approx(cut(small, 4), rel=0.2)
    assert cut(large, 8) < 0.6 * cut(large, 4)  # half the sigma in pixels: smaller corners cut


def test_notches_fill_and_specks_go():
    masks = _square(slices=1)
    masks[0, 30:34, 30:34] = False  # a hole inside
    masks[0, 2, 2] = True  # a stray pixel far from the mask
    out = MaskSmoothing(sigma=0.5, threshold=0.5)(masks, grid=4)
    assert out[0, 30:34, 30:34].all() and not out[0, 2, 2]


def test_ends_along_the_scan_round_off():
    """Outside the volume is background: a mask on every slice loses its first and last slices at a threshold above
    one half, and keeps its middle."""
    masks = _square(slices=9)
    out = MaskSmoothing(sigma_slices=2.0, threshold=0.6)(masks, grid=4)
    assert not out[0].any() and not out[-1].any()
    assert torch.equal(out[4], masks[4])


def test_no_blur_crosses_from_one_volume_to_the_next():
    """Two volumes' slices in one call: the first ends on a full slice, the second starts empty. With ``groups``
    the second stays empty; without, the blur leaks into it (so the test can fail)."""
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    masks[:3] = True
    smooth = MaskSmoothing(sigma_slices=1.5, threshold=0.2)
    grouped = smooth(masks, grid=4, groups=["a"] * 3 + ["b"] * 3)
    assert not grouped[3:].any()
    assert smooth(masks, grid=4)[3].any()
    assert torch.equal(grouped[:3], smooth(masks[:3], grid=4))


@pytest.mark.parametrize(("kwargs", "message"), [({"sigma": -1.0}, "must be >= 0"),
                                                 ({"sigma_slices": -0.5}, "must be >= 0"),
                                                 ({"threshold": 0.0}, "must lie in"),
                                                 ({"threshold": 1.0}, "must lie in")])  # fmt: skip
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MaskSmoothing(**kwargs)


def test_the_inferer_builds_it_and_refuses_it_for_label_maps():
    """``inferer#smooth`` becomes the inferer's ``MaskSmoothing``; a multi-class bundle's label maps are refused."""
    from medwss.inference.inferer import SelfPlayInferer

    rules = type("R", (), {"grid_size": 4})()
    inferer = SelfPlayInferer(torch.nn.Conv2d(1, 1, 1), rules=rules, scorer=object(),
                              smooth={"sigma": 1.5, "sigma_slices": 3, "threshold": 0.3})  # fmt: skip
    assert inferer.smooth == MaskSmoothing(1.5, 3, 0.3)
    with pytest.raises(ValueError, match="multi-class"):
        SelfPlayInferer(torch.nn.Conv2d(1, 1, 1), rules=rules, scorer=object(), multiclass=True,
                        smooth={"sigma": 1.0})  # fmt: skip
