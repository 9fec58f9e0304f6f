"""benchmarks/detector_variants.py: the organ-relative input and the hypodensity yardstick of the liver study."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("detector_variants.py")  # it imports the cohort benchmark's helpers


def test_organ_relative_moves_the_organ_median_to_half_and_blanks_the_rest(bench):
    images = torch.full((2, 1, 8, 8), 0.9)
    images[0, 0, 2:6, 2:6] = 0.7  # organ at 0.7 on slice 0 ...
    images[0, 0, 3, 3] = 0.2  # ... with a dark lesion
    images[1, 0, 2:6, 2:6] = 0.3  # organ at 0.3 on slice 1 (another window, another patient)
    regions = torch.zeros(2, 8, 8, dtype=torch.bool)
    regions[:, 2:6, 2:6] = True
    out = bench.organ_relative(images, regions)
    assert torch.allclose(out[:, 0, 2, 2], torch.tensor([0.5, 0.5]))  # the parenchyma lines up
    assert out[0, 0, 3, 3] == pytest.approx(0.0)  # the lesion keeps its contrast (0.5 - 0.5, clipped at 0)
    assert torch.all(out[:, 0][~regions] == 0.5) and images[0, 0, 0, 0] == 0.9  # outside blanked; input untouched


def test_hypodensity_reference_finds_dark_patches_and_picks_its_threshold_on_validation(bench):
    n, size = 6, 32  # one slice per patient: p0..p5; the grid of 4 x 4 patches of 8 px
    images = torch.full((n, 1, size, size), 0.6)
    masks = torch.zeros(n, 1, size, size, dtype=torch.int16)
    for i in range(n):
        images[i, 0, 8:16, 8:16] = 0.3  # a dark tumour in every slice's liver
        masks[i, 0, 8:16, 8:16] = 1
    regions = torch.zeros(n, size, size, dtype=torch.bool)
    regions[:, 4:28, 4:28] = True
    data = SimpleNamespace(images=images, masks=masks, patients=[f"p{i}" for i in range(n)])
    fold = {"train": ["p0", "p1"], "val": ["p2", "p3"], "test": ["p4", "p5"]}
    ref = bench.hypodensity_reference(data, regions, fold, grid=4)
    assert ref["patch_auc"] == pytest.approx(1.0)
    assert ref["dice"] == pytest.approx(1.0) and 0.0 <= ref["threshold"] < 0.3


class Slices(SimpleNamespace):
    """The fields of ``SliceData`` the yardsticks read, with its length."""

    def __len__(self) -> int:
        return len(self.images)


def test_centre_reference_scores_closeness_to_the_centre_within_roi_slices(bench):
    n, size = 6, 32  # 4 x 4 patches of 8 px
    images = torch.zeros(n, 1, size, size)
    masks = torch.zeros(n, 1, size, size, dtype=torch.int16)
    masks[:, 0, 8:24, 8:24] = 1  # the ROI fills the central 2 x 2 patches ...
    masks[5] = 0  # ... except on one ROI-free slice, which the within-slice AUC must skip
    presence = (masks.flatten(1).amax(1) > 0).float()[:, None]
    regions = torch.ones(n, size, size, dtype=torch.bool)
    data = Slices(images=images, masks=masks, presence=presence, patients=[f"p{i}" for i in range(n)])
    fold = {"train": ["p0", "p1"], "val": ["p2", "p3"], "test": ["p4", "p5"]}
    ref = bench.centre_reference(data, regions, fold, grid=4)
    assert ref["patch_auc_slice"] == pytest.approx(1.0)
    assert ref["patch_auc"] < 1.0  # pooled over slices, the ROI-free slice's centre is a false positive
    masks[4, 0] = 0
    masks[4, 0, :8, :8] = 1  # the ROI in a corner: the centre ranks it last
    ref = bench.centre_reference(data, regions, fold, grid=4)
    assert ref["patch_auc_slice"] == pytest.approx(1.5 / 15)  # last but for ties with the 3 other corners


def test_evaluate_with_scorings_scores_the_same_network_every_way_and_reports_it(bench):
    """``--scorings``: every entry of ``SCORINGS`` gets its AUCs and a score rule picked on validation; the report
    gets a row per scoring beside the bundle's."""
    from medwss.detector.network import PresenceDetector

    n, size = 8, 32  # one slice per patient, 4 x 4 patches of 8 px; ROI slices and ROI-free slices in every split
    torch.manual_seed(0)
    images = torch.rand(n, 1, size, size) * 0.2
    masks = torch.zeros(n, 1, size, size, dtype=torch.int16)
    for i in range(0, n, 2):
        images[i, 0, 8:24, 8:24] += 0.7
        masks[i, 0, 8:24, 8:24] = 1
    presence = (masks.flatten(1).amax(1) > 0).float()[:, None]
    data = Slices(images=images, masks=masks, presence=presence, patients=[f"p{i}" for i in range(n)])
    fold = {"train": ["p0", "p1", "p2", "p3"], "val": ["p4", "p5"], "test": ["p6", "p7"]}
    regions = torch.ones(n, size, size, dtype=torch.bool)
    detector = PresenceDetector(in_channels=1, width=4, pooling="mean")
    out = bench.evaluate({"grid_size": 4}, data, regions, fold, detector, scorings=True)
    assert set(out["scorings"]) == set(bench.SCORINGS)
    for row in out["scorings"].values():
        assert row["rule_quantile"] in bench.QUANTILES
        assert 0.0 <= row["rule_dice_val"] <= 1.0 and 0.0 <= row["rule_dice"] <= 1.0
        assert 0.0 <= row["auc"] <= 1.0
    run = {"variant": "box_instance", "fold": 0, "seed": 0, "train_s": 1.0} | out
    report = bench.markdown({"box_instance/0/0": run})
    assert "| box_instance | mil x prior x gate | 1 |" in report and "| box_instance | mil | 1 |" in report
