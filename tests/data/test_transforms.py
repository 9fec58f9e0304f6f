from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from medwss.data.transforms import (
    PRESETS,
    get_preset,
    intensity_transforms,
    process_volume,
    unwrap_errors,
    volume_transforms,
)
from medwss.errors import MedwssError
from tests.data.fixtures import LPS, OBLIQUE, RAS, SAGITTAL, Z_FLIP, files_only, write_case, write_volume


def scale(preset, values, window=None) -> np.ndarray:
    image = MetaTensor(torch.tensor(values, dtype=torch.float32).reshape(1, 1, 1, -1))
    out = Compose(intensity_transforms(get_preset(preset, window)))({"image": image})["image"]
    return out.numpy().reshape(-1)


@pytest.mark.parametrize(
    "preset, window, values, expected",
    [
        ("ct_liver", None, [-1000, -100, 75, 250, 3000], [0, 0, 0.5, 1, 1]),
        ("ct_abdomen", None, [-1000, -175, 37.5, 250, 400], [0, 0, 0.5, 1, 1]),
        ("ct_liver", (0, 100), [-50, 0, 25, 100, 200], [0, 0, 0.25, 1, 1]),
        ("mr", None, list(range(101)), [0, 0] + [(v - 1) / 98 for v in range(2, 99)] + [1, 1]),
    ],
)
def test_presets_map_values(preset, window, values, expected):
    np.testing.assert_allclose(scale(preset, values, window), expected, atol=1e-6)


def test_mr_preset_is_per_volume():
    values = np.linspace(3.0, 700.0, 50)
    np.testing.assert_allclose(scale("mr", values), scale("mr", values * 7.5 + 40), atol=1e-6)


@pytest.mark.parametrize(
    "preset, window, problem",
    [
        ("ct_lung", None, "unknown intensity preset"),
        ("mr", (-100, 200), "only applies to CT"),
        ("ct_liver", (200, 100), "is empty"),
    ],
)
def test_bad_presets_raise(preset, window, problem):
    with pytest.raises(MedwssError, match=problem):
        get_preset(preset, window)


def test_presets_are_frozen():
    with pytest.raises(AttributeError):
        PRESETS["ct_liver"].window = (0, 1)


@pytest.mark.parametrize(
    "low, high, raises",
    [
        (0.0, 1.0, True),  # an already normalised export
        (100.0, 130.0, True),  # range under 50 HU
        (-1000.0, 400.0, False),
        (-40.0, 60.0, False),  # narrow but plausible: fat to soft tissue
    ],
)
def test_ct_check_names_the_file(tmp_path, low, high, raises):
    array = np.linspace(low, high, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3)
    path = write_volume(tmp_path / "scan.nii.gz", array)
    transforms = volume_transforms("ct_liver", working_size=8)
    if not raises:
        assert process_volume({"image": path}, transforms)["image"].max() <= 1.0
        return
    with pytest.raises(MedwssError, match="do not look like CT Hounsfield units") as err:
        process_volume({"image": path}, transforms)
    assert err.value.path == str(path)
    assert f"values {low:g}..{high:g}" in err.value.problem


def test_mr_preset_skips_the_ct_check(tmp_path):
    path = write_volume(tmp_path / "t2.nii.gz", np.linspace(0, 1, 8 * 8 * 3, dtype=np.float32).reshape(8, 8, 3))
    assert process_volume({"image": path}, volume_transforms("mr", working_size=8))["image"].shape == (1, 8, 8, 3)


def test_shapes_and_dtypes(tmp_path):
    case = write_case(tmp_path, shape=(20, 16, 7), direction=OBLIQUE)
    out = process_volume(files_only(case), volume_transforms("ct_liver", working_size=12))
    assert out["image"].shape == (1, 12, 12, 7) and out["image"].dtype == torch.float32
    assert out["label"].shape == out["prior"].shape == (1, 12, 12, 7)
    assert out["label"].dtype == out["prior"].dtype == torch.int16
    assert out["slice_index"].dtype == torch.int64 and out["slice_index"].shape == (7,)
    assert 0.0 <= float(out["image"].min()) and float(out["image"].max()) <= 1.0
    assert set(torch.unique(out["label"]).tolist()) == {0, 1}
    assert out["case"] == "case0"


@pytest.mark.parametrize(
    "direction, flips, reversed_z",
    [(LPS, (0, 1), False), (RAS, (), False), (Z_FLIP, (0, 1), True), (OBLIQUE, (0,), False)],
)
def test_slice_index_follows_reorientation(tmp_path, direction, flips, reversed_z):
    shape = (12, 12, 6)
    markers = np.broadcast_to(np.arange(1, 7, dtype=np.int16), shape).copy()  # label value z + 1 on slice z
    markers[0, 0, :] = 0  # a corner tells whether x and y were flipped
    image = write_volume(tmp_path / "s.nii.gz", np.random.default_rng(0).normal(0, 300, shape), direction=direction)
    label = write_volume(tmp_path / "l.nii.gz", markers, direction=direction)
    out = process_volume({"image": image, "label": label}, volume_transforms("ct_liver", working_size=12))
    order = out["slice_index"].tolist()
    assert order == (list(range(5, -1, -1)) if reversed_z else list(range(6)))
    processed = out["label"][0].numpy()
    for k, z in enumerate(order):
        expected = np.flip(markers[:, :, z], flips) if flips else markers[:, :, z]
        np.testing.assert_array_equal(processed[:, :, k], expected)


def test_non_axial_scan_is_refused(tmp_path):
    path = write_volume(tmp_path / "sag.nii.gz", np.random.default_rng(0).normal(0, 300, (6, 8, 5)), direction=SAGITTAL)
    with pytest.raises(MedwssError, match="slice axis is not axial after reorientation") as err:
        process_volume({"image": path}, volume_transforms("ct_liver", working_size=8))
    assert err.value.path == str(path)


def test_mask_off_the_image_grid_is_refused(tmp_path):
    case = write_case(tmp_path, shape=(10, 10, 4))
    shifted = write_volume(tmp_path / "other.nii.gz", case["label_array"], spacing=(0.8, 0.7, 3.0))
    with pytest.raises(MedwssError, match="label does not match its image: spacing") as err:
        process_volume({"image": case["image"], "label": shifted}, volume_transforms("ct_liver", working_size=8))
    assert err.value.path == str(shifted)


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(MedwssError, match="file not found"):
        process_volume({"image": tmp_path / "nope.nii.gz"}, volume_transforms("mr"))


def test_unwrap_errors_keeps_other_errors():
    with pytest.raises(RuntimeError, match="a bug"), unwrap_errors():
        raise RuntimeError("a bug") from ValueError("inner")


@pytest.mark.parametrize("stored", [np.int16, np.uint8, np.float64])
def test_stored_type_does_not_change_the_processed_scan(tmp_path, stored):
    # The lean path keeps an int16 (or uint8) scan so until after reorientation, then casts it to float32.
    values = np.random.default_rng(0).normal(40, 60, (20, 16, 7)).round().clip(0, 255)
    values[0, 0, 0] = -1000 if stored != np.uint8 else 0
    transforms = volume_transforms("ct_liver" if stored != np.uint8 else "mr", working_size=12)
    reference = process_volume({"image": write_volume(tmp_path / "f.nii.gz", values.astype(np.float32))}, transforms)
    out = process_volume({"image": write_volume(tmp_path / "s.nii.gz", values.astype(stored))}, transforms)
    assert out["image"].dtype == torch.float32
    torch.testing.assert_close(out["image"].as_tensor(), reference["image"].as_tensor(), rtol=0, atol=0)
    assert torch.equal(out["image"].affine, reference["image"].affine)


def test_masks_resize_in_their_own_dtype(tmp_path):
    case = write_case(tmp_path, shape=(20, 16, 7))
    out = process_volume(files_only(case), volume_transforms("ct_liver", working_size=12))
    resizes = {key: [op for op in out[key].applied_operations if op["class"] == "Resize"] for key in ("image", "prior")}
    assert resizes["image"][0]["extra_info"]["dtype"] == "float32"
    assert resizes["prior"][0]["extra_info"]["dtype"] == "uint8"  # no full-size float32 copy of the prior
