"""The bundle's postprocessing transforms: ``ClipToPriord`` bounds a mask by the organ prior on the scan's grid."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from medwss.data.io import read_mask_array
from medwss.errors import MedwssError
from medwss.inference.loading import ClipToPriord
from tests.bundle.fixtures import write_tiny_prostate

# (name, prior given as, pred dtype): the prior is a path (a bundle whose preprocessing has no prior key) or the
# MetaTensor the preprocessing loaded (the liver bundle)
CASES = [("path", "path", torch.uint8), ("loaded", "loaded", torch.uint8), ("float_pred", "path", torch.float32)]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = write_tiny_prostate(tmp_path_factory.mktemp("clip"), patients=1) / "p0"
    return root / "t2.nii.gz", root / "t2_anatomy_reader1.nii.gz"


@pytest.mark.parametrize(("name", "given", "dtype"), CASES, ids=[c[0] for c in CASES])
def test_clip_to_prior_keeps_only_the_prior(case, name, given, dtype):
    scan, prior_file = case
    inside = read_mask_array(prior_file, scan)[0] > 0
    pred = MetaTensor(torch.ones((1, *inside.shape), dtype=dtype), meta={"filename_or_obj": str(scan)})
    # as loaded by the preprocessing: on the working grid, but with its file in the meta
    loaded = MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": str(prior_file)})
    prior = str(prior_file) if given == "path" else loaded
    image = MetaTensor(torch.zeros(1, 2, 2, 2), meta={"filename_or_obj": str(scan)})
    out = ClipToPriord("pred")({"pred": pred, "prior": prior, "image": image})
    assert out["pred"].dtype == dtype and isinstance(out["pred"], MetaTensor)
    np.testing.assert_array_equal(out["pred"][0].numpy() > 0, inside)
    assert bool(pred.all())  # the input sample is left as it was


def test_clip_without_a_prior_passes_the_mask_through(case):
    scan, _ = case
    pred = torch.ones(1, 4, 4, 2, dtype=torch.uint8)
    out = ClipToPriord("pred")({"pred": pred, "image": str(scan)})
    assert out["pred"] is pred


def test_clip_refuses_a_prior_off_the_scan_grid(case, tmp_path):
    scan, prior_file = case
    other = write_tiny_prostate(tmp_path, patients=1) / "p0" / "t2_anatomy_reader1.nii.gz"
    image = sitk.ReadImage(str(other))
    image.SetSpacing([2 * s for s in image.GetSpacing()])
    sitk.WriteImage(image, str(other))
    pred = torch.ones(1, 4, 4, 2, dtype=torch.uint8)
    with pytest.raises(MedwssError, match="does not match its image"):
        ClipToPriord("pred")({"pred": pred, "prior": str(other), "image": str(scan)})
