"""benchmarks/contrast_study.py: the contrast score's fold results (AUCs, the score rule's pick) and its report."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from tests.benchmarks import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("contrast_study.py")


def liver_slices():
    """Eight one-slice patients: a liver (rows/cols 4-27) at 0.6; p0-p5 with a dark tumour, p6-p7 tumour-free."""
    n, size = 8, 32
    images = torch.full((n, 1, size, size), 0.6)
    masks = torch.zeros(n, 1, size, size, dtype=torch.int16)
    for i in range(6):
        images[i, 0, 12:20, 12:20] = 0.2
        masks[i, 0, 12:20, 12:20] = 1
    images[6:, 0, 4:28, 4:28] += torch.rand(2, 24, 24, generator=torch.Generator().manual_seed(0)) * 0.02
    regions = torch.zeros(n, size, size, dtype=torch.bool)
    regions[:, 4:28, 4:28] = True
    presence = masks.flatten(1).any(1).float()[:, None]
    return SimpleNamespace(images=images, masks=masks, presence=presence, patients=[f"p{i}" for i in range(n)]), regions


def test_a_fold_measures_the_contrast_score_and_its_score_rule(bench):
    data, regions = liver_slices()
    fold = {"fold": 0, "train": ["p0", "p1", "p6"], "val": ["p2", "p3", "p7"], "test": ["p4", "p5"]}
    design = bench.OrganContrast(sigma=0.0, erosion=2)
    out = bench.study_design(data, regions, [fold], 8, design)[0]
    assert out["patch_auc"] == pytest.approx(1.0)
    assert out["roi_quantile"] in bench.QUANTILES and out["threshold"] < 0.8  # (0.6 - 0.2) / 0.5 = 0.8 in the tumour
    assert out["dice"] == {"p4": pytest.approx(1.0), "p5": pytest.approx(1.0)}
    assert out["oracle"] == {"p4": pytest.approx(1.0), "p5": pytest.approx(1.0)}


def test_the_report_names_every_design_and_the_shipped_one_per_patient(bench):
    fold = {"fold": 0, "patch_auc": 0.9, "slice_auc": 0.8, "roi_quantile": 0.99, "threshold": 0.2, "dice_val": 0.5,
            "dice": {"a": 0.4, "b": 0.6}, "oracle": {"a": 0.9, "b": 0.8}}
    result = {"designs": {"G32 (shipped)": [fold], "G16": [fold]}, "patients": 2, "slices": 10,
              "kinds": {"a": "ircadb", "b": "lits"}, "meta": {"git": {"commit": "abc", "dirty": False}}}
    text = bench.report(result)
    assert "| G32 (shipped) | 0.900 | 0.80 | 0.99 | 0.500 | 0.500 |" in text
    assert "| a | ircadb | 0.400 |" in text and "| G16 |" in text
