"""Left-right flip augmentation for photos (``flip_prob``): mirrors image and region, off by default."""

from __future__ import annotations

import torch

from medwss.detector.network import build_detector
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings


def trainer(flip_prob: float) -> DetectorTrainer:
    settings = DetectorTrainingSettings(epochs=1, rotate_range=0.0, scale_range=0.0, translate_fraction=0.0,
                                        flip_prob=flip_prob)  # fmt: skip
    images = torch.arange(2 * 8 * 8, dtype=torch.float32).reshape(2, 1, 8, 8)
    model = build_detector(in_channels=1, num_classes=2, width=4)
    return DetectorTrainer(model, images, torch.tensor([[1.0, 0.0], [0.0, 1.0]]), settings=settings)


def test_flip_mirrors_image_and_region_columns():
    t = trainer(1.0)
    t.intensity = []  # geometry only
    x = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8).repeat(2, 1, 1, 1)
    region = torch.zeros(2, 8, 8, dtype=torch.bool)
    region[:, :, :2] = True
    out, out_region = t._augment(x, region)
    torch.testing.assert_close(out, x.flip(-1))
    assert out_region[:, :, -2:].all() and not out_region[:, :, :-2].any()


def test_no_flip_by_default():
    t = trainer(0.0)
    assert t.settings.flip_prob == 0.0
    t.intensity = []
    x = torch.rand(2, 1, 8, 8)
    torch.testing.assert_close(t._augment(x, torch.ones(2, 8, 8, dtype=torch.bool))[0], x)
