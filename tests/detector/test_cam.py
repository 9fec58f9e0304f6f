"""Grad-CAM++ maps and masks of the presence detector: range, batching, gating, threshold choice, geometry."""

from __future__ import annotations

import pytest
import torch
from monai.visualize import GradCAMpp

from medwss.data.io import Geometry, read_sitk, write_mask
from medwss.data.slices import SliceDataset, invert_to_original, stack_slices
from medwss.data.transforms import volume_transforms
from medwss.detector.cam import (
    PresenceLogits,
    cam_maps,
    cam_masks,
    choose_cam_thresholds,
    normalise_maps,
    slice_probabilities,
    target_layer,
    threshold_maps,
)
from medwss.detector.network import build_detector
from medwss.detector.training import DetectorTrainingSettings, train_detector
from tests.data.fixtures import OBLIQUE, files_only, write_case


def _squares(n: int = 32, size: int = 64, side: int = 16, seed: int = 0):
    """Noisy slices; every other one holds a bright ``side`` px square (the ROI) at a random spot."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 + 0.05 * torch.randn(n, 1, size, size, generator=g)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(0, n, 2):
        y, x = torch.randint(0, size - side + 1, (2,), generator=g).tolist()
        masks[i, y : y + side, x : x + side] = True
    images[masks.unsqueeze(1)] += 0.6
    return images, (torch.arange(n) % 2 == 0).float(), masks


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from two threads, and on a busy 2-core machine two spinning threads run 10-100x
    slower than one (measured: 3 s vs 0.035 s per toy epoch)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def square_detector(one_thread):
    """A detector trained on slice labels only (bag loss; no CoordConv, since position carries no signal here)."""
    images, presence, _ = _squares()
    torch.manual_seed(0)
    settings = DetectorTrainingSettings(epochs=8, batch_size=8, learning_rate=1e-2, loss="bag", augment=False)
    model, _ = train_detector(images, presence[:, None], settings=settings,
                              model=build_detector(width=8, coord_channels=False))
    return model


def _dice(pred: torch.Tensor, truth: torch.Tensor) -> float:
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()))


@pytest.mark.parametrize(("height", "width", "channels"), [(40, 56, 1), (32, 32, 3)])
def test_maps_have_the_slice_size_and_unit_range(height: int, width: int, channels: int) -> None:
    torch.manual_seed(0)
    model = build_detector(in_channels=channels, width=4)
    maps = cam_maps(model, torch.rand(3, channels, height, width), batch_size=2)
    assert maps.shape == (3, height, width) and maps.dtype == torch.float32
    assert torch.allclose(maps.amin((1, 2)), torch.zeros(3)) and torch.allclose(maps.amax((1, 2)), torch.ones(3))


def test_batched_maps_equal_monai_per_slice() -> None:
    torch.manual_seed(0)
    model = build_detector(width=4)
    images = torch.rand(4, 1, 32, 32)
    region = torch.zeros(4, 32, 32, dtype=torch.bool)
    region[:, 4:28, 8:30] = True
    batched = cam_maps(model, images, region=region)
    stock = GradCAMpp(PresenceLogits(model), target_layer(model), postprocessing=normalise_maps)
    with torch.enable_grad():
        per_slice = torch.cat([stock(images[i : i + 1], class_idx=0, region=region[i : i + 1])[:, 0] for i in range(4)])
    torch.testing.assert_close(batched, per_slice, atol=1e-5, rtol=1e-4)


def test_normalise_maps_flat_map_is_zero() -> None:
    maps = torch.stack([torch.full((1, 2, 2), 3.0), torch.tensor([[[1.0, 2.0], [3.0, 5.0]]])])
    out = normalise_maps(maps)
    torch.testing.assert_close(out[0], torch.zeros(1, 2, 2))
    torch.testing.assert_close(out[1], torch.tensor([[[0.0, 0.25], [0.5, 1.0]]]))


MAPS = torch.tensor([[[0.9, 0.2], [0.6, 0.0]], [[1.0, 0.7], [0.1, 0.5]]])
SCORES = torch.tensor([0.8, 0.3])
REGION = torch.tensor([[[True, True], [False, True]], [[True, True], [True, True]]])


@pytest.mark.parametrize(
    ("cam_t", "slice_t", "region", "expected"),
    [
        (0.5, 0.5, None, [[[1, 0], [1, 0]], [[0, 0], [0, 0]]]),
        (0.5, 0.2, None, [[[1, 0], [1, 0]], [[1, 1], [0, 1]]]),
        (0.5, 0.2, REGION, [[[1, 0], [0, 0]], [[1, 1], [0, 1]]]),
        (0.0, 0.0, None, [[[1, 1], [1, 1]], [[1, 1], [1, 1]]]),
        (0.95, 0.9, None, [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]),
    ],
)
def test_threshold_maps_by_hand(cam_t: float, slice_t: float, region, expected: list) -> None:
    masks = threshold_maps(MAPS, SCORES, cam_threshold=cam_t, slice_threshold=slice_t, region=region)
    assert masks.dtype == torch.bool
    assert masks.int().tolist() == expected


def test_threshold_maps_rejects_wrong_score_count() -> None:
    with pytest.raises(ValueError, match="slice scores"):
        threshold_maps(MAPS, torch.ones(3), cam_threshold=0.5, slice_threshold=0.5)


def test_choose_thresholds_finds_the_pair_that_reproduces_the_masks() -> None:
    # Truth = map >= 0.6 on positive slices (scored 0.7); negative slices (scored 0.2) have bright maps too.
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(6, 8, 8, generator=g)
    scores = torch.tensor([0.7, 0.2, 0.7, 0.2, 0.7, 0.2])
    truth = (maps >= 0.6) & (scores >= 0.5)[:, None, None]
    best = choose_cam_thresholds(maps, scores, truth, groups=["a", "a", "a", "b", "b", "b"])
    # Every slice threshold in (0.2, 0.7] reproduces the truth; ties go to the first candidate.
    assert (best.cam_threshold, best.slice_threshold, best.dice) == (0.6, 0.3, 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        choose_cam_thresholds(maps, scores, truth[:, :4])


def test_trained_toy_detector_cam_covers_the_square(square_detector) -> None:
    images, presence, masks = _squares(seed=1)  # new slices, new square positions
    probs = slice_probabilities(square_detector, images)
    assert probs[presence == 1].min() > probs[presence == 0].max()
    told = cam_masks(square_detector, images, cam_threshold=0.5, slice_threshold=0.5, slice_labels=presence)
    assert _dice(told, masks) > 0.5
    detected = cam_masks(square_detector, images, cam_threshold=0.5, slice_threshold=0.5)
    assert _dice(detected, masks) > 0.5
    # With a region (the left half), the masks stay inside it.
    region = torch.zeros_like(masks)
    region[..., :32] = True
    inside = cam_masks(square_detector, images, cam_threshold=0.5, slice_threshold=0.5, region=region)
    assert inside.any() and not (inside & ~region).any()


def test_cam_mask_goes_back_onto_the_scan_grid(tmp_path) -> None:
    case = write_case(tmp_path, shape=(20, 18, 5), direction=OBLIQUE, spacing=(0.7, 0.6, 2.5))
    transforms = volume_transforms("ct_liver", 16)
    dataset = SliceDataset([files_only(case)], transforms)
    slices = torch.stack([dataset[i]["image"] for i in range(len(dataset))])
    torch.manual_seed(0)
    masks = cam_masks(build_detector(width=4), slices, cam_threshold=0.5, slice_threshold=0.5,
                      slice_labels=torch.ones(len(slices)))
    assert masks.shape == (5, 16, 16) and masks.any()
    restored = invert_to_original(stack_slices(masks), dataset.volumes[0]["image"], transforms)
    assert restored.shape == (1, *case["image_array"].shape) and restored.dtype == torch.bool
    out = write_mask(restored, case["image"], tmp_path / "cam.nii.gz")
    assert Geometry.of(read_sitk(case["image"])).mismatch(Geometry.of(read_sitk(out))) is None
