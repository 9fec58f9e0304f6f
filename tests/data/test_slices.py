from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose, MapTransform

from medwss.data import slices
from medwss.data.io import load_mask, write_mask
from medwss.data.slices import SliceDataset, image_slices, invert_to_original, stack_slices
from medwss.data.transforms import process_volume, volume_transforms
from medwss.errors import MedwssError
from tests.data.fixtures import LPS, OBLIQUE, RAS, Z_FLIP, files_only, write_case

DATA = Path(__file__).resolve().parents[2] / "../shared/data"
WINDOW = (-600.0, 0.0)  # maps the fixture's slice markers (-500 + 50 z HU) to (100 + 50 z) / 600


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a) > 0, np.asarray(b) > 0
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def presence_table(case: dict) -> dict[tuple[str, int], list[float]]:
    label = case["label_array"]
    return {(case["case"], z): [float(label[..., z].any())] for z in range(label.shape[2])}


@pytest.mark.parametrize(
    "context, k, expected",
    [
        (0, 2, [2]),
        (1, 0, [0, 0, 1]),
        (1, 4, [3, 4, 4]),
        (2, 1, [0, 0, 1, 2, 3]),
    ],
)
def test_image_slices_stack_neighbours(context, k, expected):
    volume = torch.arange(5.0).expand(1, 2, 3, 5)
    out = image_slices(volume, context, [k])
    assert out.shape == (1, 2 * context + 1, 2, 3)
    assert out[0, :, 0, 0].tolist() == expected


def test_image_slices_orders_channels_by_offset():
    volume = torch.stack([torch.arange(5.0), 10 + torch.arange(5.0)]).reshape(2, 1, 1, 5).expand(2, 2, 2, 5)
    assert image_slices(volume, 1, [2])[0, :, 0, 0].tolist() == [1, 11, 2, 12, 3, 13]
    assert image_slices(volume).shape == (5, 2, 2, 2)


@pytest.mark.parametrize("shape, out_shape", [((4, 6, 5), (1, 6, 5, 4)), ((4, 3, 6, 5), (3, 6, 5, 4))])
def test_stack_slices_shapes(shape, out_shape):
    slices = torch.randn(shape)
    volume = stack_slices(slices)
    assert volume.shape == out_shape
    torch.testing.assert_close(volume[..., 2], slices[2] if len(shape) == 4 else slices[2][None])


def test_stack_slices_rejects_other_shapes():
    with pytest.raises(ValueError, match="expected"):
        stack_slices(torch.zeros(2, 3))


def test_samples_carry_original_slice_presence_and_marker(tmp_path):
    case = write_case(tmp_path, shape=(20, 16, 7), direction=Z_FLIP)
    transforms = volume_transforms("ct_liver", working_size=12, window=WINDOW)
    dataset = SliceDataset([files_only(case)], transforms, presence_table(case), context=1)
    assert len(dataset) == 7 and dataset.num_classes == 1
    assert [dataset[i]["slice_index"] for i in range(7)] == list(range(6, -1, -1))  # stored superior to inferior
    for i in range(7):
        sample = dataset[i]
        z = sample["slice_index"]
        assert sample["image"].shape == (3, 12, 12) and sample["image"].dtype == torch.float32
        assert float(sample["image"][1].mean()) == pytest.approx((100 + 50 * z) / 600, abs=0.02)
        assert sample["presence"].tolist() == [float(case["label_array"][..., z].any())]
        assert sample["prior"].shape == (1, 12, 12) and sample["prior"].dtype == torch.bool
        assert sample["label"].dtype == torch.int16
        assert all(type(sample[key]) is torch.Tensor for key in ("image", "prior", "label", "presence"))
        assert sample["case"] == sample["patient"] == "case0"


def test_unlabelled_slices_are_skipped(tmp_path):
    case = write_case(tmp_path, shape=(10, 10, 6))
    table = {key: p for key, p in presence_table(case).items() if key[1] != 2}
    dataset = SliceDataset([files_only(case)], volume_transforms("ct_liver", 8), table)
    assert sorted(dataset[i]["slice_index"] for i in range(len(dataset))) == [0, 1, 3, 4, 5]


@pytest.mark.parametrize(
    "table, problem",
    [
        ({("other", 0): [1.0]}, "no presence labels for case 'case0'"),
        ({("case0", 0): [1.0], ("case0", 9): [0.0]}, "names slice z=9 but the scan has 6 slices"),
        ({("case0", 0): [1.0], ("case0", 1): [0.0, 1.0]}, "different lengths"),
    ],
)
def test_bad_presence_tables_raise(tmp_path, table, problem):
    case = write_case(tmp_path, shape=(10, 10, 6))
    with pytest.raises(MedwssError, match=problem):
        SliceDataset([files_only(case)], volume_transforms("ct_liver", 8), table)


def test_pipeline_errors_reach_the_user(tmp_path):
    case = write_case(tmp_path, shape=(10, 10, 6))
    with pytest.raises(MedwssError, match="file not found"):
        SliceDataset([{**files_only(case), "image": tmp_path / "missing.nii.gz"}], volume_transforms("ct_liver", 8))


class CountCalls(MapTransform):
    def __init__(self) -> None:
        super().__init__("image")
        self.calls = 0

    def __call__(self, data):
        self.calls += 1
        return data


def test_volumes_are_processed_once(tmp_path):
    cases = [files_only(write_case(tmp_path, f"case{i}", shape=(10, 10, 4), seed=i)) for i in range(2)]
    counter = CountCalls()
    dataset = SliceDataset(cases, Compose([*volume_transforms("ct_liver", 8).transforms, counter]))
    for _ in range(2):
        assert [dataset[i]["case"] for i in range(len(dataset))] == ["case0"] * 4 + ["case1"] * 4
    assert counter.calls == 2


def round_trip(case: dict, working_size: int, key: str = "label") -> tuple[torch.Tensor, dict]:
    """Push the case's mask through the pipeline as slices, stack them and invert onto the file's grid."""
    transforms = volume_transforms("ct_liver", working_size)
    dataset = SliceDataset([files_only(case)], transforms)
    slices = torch.stack([dataset[i][key] for i in range(len(dataset))])  # processed order
    return invert_to_original(stack_slices(slices), dataset.volumes[0]["image"], transforms), dataset.volumes[0]


@pytest.mark.parametrize("direction", [LPS, RAS, Z_FLIP, OBLIQUE])
def test_inverse_is_exact_at_the_original_size(tmp_path, direction):
    case = write_case(tmp_path, shape=(16, 16, 5), direction=direction, spacing=(0.6, 0.6, 3.0))
    restored, volume = round_trip(case, working_size=16)
    assert restored.shape == (1, 16, 16, 5) and restored.dtype == torch.int16
    np.testing.assert_array_equal(restored[0].numpy(), case["label_array"])
    np.testing.assert_allclose(restored.affine.numpy(), volume["image"].meta["original_affine"], atol=1e-6)
    # Written on the scan's grid, it reads back voxel for voxel where the original mask lies.
    out = write_mask(restored, restored, tmp_path / "out.nii.gz")
    np.testing.assert_array_equal(load_mask(out, reference=load_mask(case["label"])).numpy(), case["label_array"])


@pytest.mark.parametrize("direction", [LPS, OBLIQUE])
def test_inverse_after_a_resize_overlaps(tmp_path, direction):
    case = write_case(tmp_path, shape=(40, 36, 6), direction=direction, spacing=(0.5, 0.55, 2.0))
    restored, _ = round_trip(case, working_size=24)
    assert restored.shape == (1, 40, 36, 6)
    assert dice(restored[0].numpy(), case["label_array"]) > 0.95


def test_inverse_keeps_class_channels_and_bool(tmp_path):
    case = write_case(tmp_path, shape=(20, 18, 4))
    transforms = volume_transforms("ct_liver", 12)
    volume = process_volume(files_only(case), transforms)
    probs = torch.rand(4, 3, 12, 12)  # (Z, K, H, W)
    restored = invert_to_original(stack_slices(probs > 0.5), volume["image"], transforms)
    assert restored.shape == (3, 20, 18, 4) and restored.dtype == torch.bool
    with pytest.raises(ValueError, match="does not match"):
        invert_to_original(torch.zeros(1, 12, 12, 5), volume["image"], transforms)


@pytest.mark.realdata
@pytest.mark.skipif(not DATA.exists(), reason="real data in ../shared/data is absent")
def test_prostate_round_trip_real_scan():
    folder = DATA / "prostate" / "prostate158_subset" / "001"
    gland = load_mask(folder / "gland_reader1.nii.gz").numpy()
    case = {
        "image": folder / "t2.nii.gz",
        "label": folder / "gland_reader1.nii.gz",
        "case": "001",
        "label_array": gland,
    }
    transforms = volume_transforms("mr", 128)
    dataset = SliceDataset([files_only(case)], transforms)
    assert [dataset[i]["slice_index"] for i in range(len(dataset))] == list(range(23))
    assert dataset[10]["image"].shape == (1, 128, 128)
    slices = torch.stack([dataset[i]["label"] for i in range(len(dataset))])
    restored = invert_to_original(stack_slices(slices), dataset.volumes[0]["image"], transforms)
    assert restored.shape == (1, 232, 232, 23)
    assert dice(restored[0].numpy(), gland) > 0.9


@pytest.mark.parametrize("direction", [LPS, OBLIQUE])
def test_uint8_inverse_matches_monai_inverse(tmp_path, direction, monkeypatch):
    # The resize back runs in uint8 (MONAI's casts to float32): same voxels, affine and meta as MONAI's own inverse.
    case = write_case(tmp_path, shape=(40, 36, 6), direction=direction, spacing=(0.5, 0.55, 2.0))
    transforms = volume_transforms("ct_liver", 24)
    image = process_volume(files_only(case), transforms)["image"]
    pred = (torch.rand(1, 24, 24, 6, generator=torch.Generator().manual_seed(0)) > 0.5).to(torch.uint8)
    ours = invert_to_original(pred, image, transforms)
    monkeypatch.setattr(slices, "_resizes_back_exactly", lambda transform, mask: False)
    monai = invert_to_original(pred, image, transforms)
    assert ours.dtype == monai.dtype == torch.uint8 and ours.shape == (1, 40, 36, 6)
    assert torch.equal(ours.as_tensor(), monai.as_tensor())
    assert torch.equal(ours.affine, monai.affine)
    assert ours.applied_operations == monai.applied_operations == []
