"""The detector trunk as the agents' frozen encoder: features at the grid, and the detector left as it was."""

from __future__ import annotations

import torch

from medwss.detector.cam import cam_maps
from medwss.detector.features import DetectorEncoder
from medwss.detector.network import build_detector


def test_features_are_pooled_to_the_grid_and_carry_no_gradient():
    torch.manual_seed(0)
    detector = build_detector(in_channels=1, num_classes=1, width=4)
    encoder = DetectorEncoder(detector, grid_size=8)
    features = encoder(torch.rand(2, 1, 64, 64))
    assert features.shape == (2, encoder.out_channels, 8, 8) and not features.requires_grad


def test_wrapping_the_detector_keeps_it_usable_for_grad_cam():
    """Regression: the encoder used to switch requires_grad off on the shared detector, and Grad-CAM++ then failed."""
    torch.manual_seed(0)
    detector = build_detector(in_channels=1, num_classes=1, width=4)
    DetectorEncoder(detector, grid_size=8)
    assert all(p.requires_grad for p in detector.parameters())
    maps = cam_maps(detector, torch.rand(2, 1, 64, 64))
    assert maps.shape[0] == 2 and maps.shape[-2:] == (64, 64)
