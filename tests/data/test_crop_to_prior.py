"""Cropping to the organ prior's box before resizing (``data#crop_margin``): the working grid covers the organ, the
inverse puts the mask back on the scan's grid, every slice is kept, and a missing or empty prior is one error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medwss.data.datalist import DatasetSpec
from medwss.data.slice_folder import SliceStack
from medwss.data.slices import SliceDataset, invert_to_original, stack_slices
from medwss.data.transforms import process_volume, volume_transforms
from medwss.errors import MedwssError
from tests.data.fixtures import LPS, OBLIQUE, files_only, write_case, write_volume
from tests.data.test_slice_folder import make_slice_set, write_spec


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / (a.sum() + b.sum()))


def in_plane_box(prior: np.ndarray, margin: int) -> np.ndarray:
    """(x, y) bool: the prior's in-plane box over all slices plus ``margin``, inside the image."""
    xs, ys = np.nonzero(prior.any(axis=-1))
    box = np.zeros(prior.shape[:2], dtype=bool)
    box[max(xs.min() - margin, 0) : xs.max() + margin + 1, max(ys.min() - margin, 0) : ys.max() + margin + 1] = True
    return box


def round_trip(case: dict, working_size: int, crop_margin: int | None, key: str) -> tuple[torch.Tensor, dict]:
    """The case's ``key`` mask through the pipeline as slices, stacked and inverted onto the file's grid."""
    transforms = volume_transforms("ct_liver", working_size, crop_margin=crop_margin)
    dataset = SliceDataset([files_only(case)], transforms)
    slices = torch.stack([torch.as_tensor(dataset[i][key]).to(torch.int16) for i in range(len(dataset))])
    return invert_to_original(stack_slices(slices), dataset.volumes[0]["image"], transforms), dataset.volumes[0]


@pytest.mark.parametrize("direction", [LPS, OBLIQUE])
def test_the_crop_keeps_every_slice_and_inverts_onto_the_scan_grid(tmp_path, direction):
    geometry = {"direction": direction, "spacing": (0.5, 0.55, 2.0)}
    case = write_case(tmp_path, shape=(48, 40, 6), **geometry)
    # A small organ in one corner of the field of view.
    prior = np.zeros((48, 40, 6), np.uint8)
    prior[4:16, 22:34, 1:5] = 1
    case["prior"] = write_volume(tmp_path / "corner_prior.nii.gz", prior, **geometry)
    restored, volume = round_trip(case, working_size=8, crop_margin=2, key="prior")
    assert volume["image"].shape == (1, 8, 8, 6) and volume["slice_index"].tolist() == list(range(6))
    # The working grid is the organ's box: the organ fills most of it (the whole field of view: 7%).
    organ_slices = volume["prior"][0, :, :, 1:5].float()
    assert organ_slices.mean() > 0.5
    whole, volume_whole = round_trip(case, working_size=8, crop_margin=None, key="prior")
    assert volume_whole["prior"][0, :, :, 1:5].float().mean() < 0.15
    # Back on the scan's grid: same shape and affine, nothing outside the box, the organ where it was.
    assert restored.shape == whole.shape == (1, 48, 40, 6)
    np.testing.assert_allclose(restored.affine.numpy(), volume["image"].meta["original_affine"], atol=1e-6)
    assert not restored[0].numpy()[~in_plane_box(prior, 2)].any()
    assert dice(restored[0].numpy() > 0, prior > 0) > 0.9


def test_a_crop_without_a_prior_or_with_an_empty_one_is_one_error(tmp_path):
    case = write_case(tmp_path, shape=(20, 16, 4))
    transforms = volume_transforms("ct_liver", 8, crop_margin=4)
    with pytest.raises(MedwssError, match="crops to the organ prior"):
        process_volume({"image": str(case["image"])}, transforms)
    empty = write_volume(tmp_path / "empty.nii.gz", np.zeros((20, 16, 4), np.uint8))
    with pytest.raises(MedwssError, match="organ prior is empty") as err:
        process_volume({"image": str(case["image"]), "prior": str(empty)}, transforms)
    assert "empty.nii.gz" in str(err.value)
    with pytest.raises(ValueError, match="needs the prior"):
        volume_transforms("ct_liver", 8, keys=("image", "label"), crop_margin=4)


def test_a_slice_stack_crops_to_its_prior_and_says_where(tmp_path):
    root = make_slice_set(tmp_path / "data")
    spec = DatasetSpec.load(write_spec(tmp_path / "spec.yaml"))
    patient = next(p for p in spec.discover(root) if p.patient == "p2")
    whole = SliceStack(root, spec, patient).processed(8)
    cropped = SliceStack(root, spec, patient).processed(8, with_label=True, crop_margin=0)
    assert whole["crop_box"] == (0, 8, 0, 8)
    # The liver is the left half of each 8 x 8 image: after the turn to RAS it is x 4..7, every y.
    assert cropped["crop_box"] == (4, 8, 0, 8)
    liver_slices = [k for k, z in enumerate(cropped["slice_index"].tolist()) if z >= 1]
    assert cropped["prior"][0, :, :, liver_slices].all()  # the organ fills the working grid
    assert cropped["image"].shape == whole["image"].shape == (1, 8, 8, 3)
    no_prior = DatasetSpec.load(write_spec(tmp_path / "no_prior.yaml", prior=None))
    with pytest.raises(MedwssError, match="'prior' rule"):
        SliceStack(root, no_prior, patient).processed(8, crop_margin=0)
