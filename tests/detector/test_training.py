"""Detector training on tiny generated slices: the loss falls, resume is exact, bad input is a user error."""

from __future__ import annotations

import pytest
import torch
from monai.metrics import compute_roc_auc

from medwss.detector.network import build_detector
from medwss.detector.scoring import score_patches
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings, train_detector
from medwss.errors import MedwssError


def _toy(n: int = 24, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Noisy slices; positive ones hold a bright 8 x 8 square at a random cell-aligned spot (the ROI)."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 + 0.05 * torch.randn(n, 1, size, size, generator=g)
    masks = torch.zeros(n, size, size, dtype=torch.bool)
    presence = (torch.arange(n) % 2 == 0).float()[:, None]
    for i in range(0, n, 2):
        y, x = (torch.randint(0, size // 8, (2,), generator=g) * 8).tolist()
        masks[i, y : y + 8, x : x + 8] = True
    images[masks.unsqueeze(1)] += 0.6
    return images, presence, masks, [f"p{i % 3}" for i in range(n)]


SMALL = DetectorTrainingSettings(epochs=6, batch_size=8, learning_rate=1e-2, augment=False)


@pytest.mark.parametrize("loss", ["instance", "bag"])
def test_loss_falls(loss: str) -> None:
    images, presence, _, ids = _toy()
    torch.manual_seed(0)
    trainer = DetectorTrainer(build_detector(width=8), images, presence, patient_ids=ids,
                              settings=DetectorTrainingSettings(epochs=5, batch_size=8, learning_rate=1e-2, loss=loss,
                                                                augment=False))
    losses = [trainer.step()["losses/detector"] for _ in range(5)]
    assert losses[-1] < 0.7 * losses[0]


def test_instance_detector_finds_the_square() -> None:
    # 64 px slices: wider than the 39 px receptive field, so cells away from the square cannot see it.
    images, presence, masks, ids = _toy(n=48, size=64)
    torch.manual_seed(0)
    settings = DetectorTrainingSettings(epochs=10, batch_size=4, learning_rate=1e-2, augment=False)
    model, history = train_detector(images, presence, patient_ids=ids, val_patients=["p2"], settings=settings,
                                    model=build_detector(width=8))
    assert len(history) == 10 and history[-1]["charts/val_slice_auc"] > 0.9
    probs = score_patches(model, images, 8)
    positive = masks.reshape(-1, 8, 8, 8, 8).any(dim=(2, 4))
    assert float(compute_roc_auc(probs.flatten(), positive.flatten().float())) > 0.9


def test_resume_equals_uninterrupted_run() -> None:
    images, presence, _, ids = _toy()
    settings = DetectorTrainingSettings(epochs=4, batch_size=8, augment=True, seed=3)

    def fresh() -> DetectorTrainer:
        torch.manual_seed(0)
        return DetectorTrainer(build_detector(width=4), images, presence, patient_ids=ids, val_patients=["p1"],
                               settings=settings)

    straight = fresh()
    for _ in range(4):
        straight.step()
    first = fresh()
    for _ in range(2):
        first.step()
    state = first.state_dict()
    resumed = fresh()
    for _ in range(1):  # move the new trainer's RNGs on, so load_state_dict has to restore them
        resumed.step()
    resumed.load_state_dict(state)
    for _ in range(2):
        resumed.step()
    assert resumed.history == straight.history
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value)


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"presence": torch.full((4, 1), 2.0)}, "0 or 1"),
        ({"presence": torch.ones(3, 1)}, "expected images"),
        ({"regions": torch.ones(4, 8, 8, dtype=torch.bool)}, "expected regions"),
        ({"patient_ids": ["a", "b"]}, "patient ids"),
        ({"val_patients": ["zz"]}, "unknown validation"),
        ({"val_patients": ["a", "b"]}, "no training slice"),
    ],
)
def test_bad_input_is_a_user_error(kwargs: dict, problem: str) -> None:
    args = {"images": torch.rand(4, 1, 16, 16), "presence": torch.tensor([[1.0], [0.0], [1.0], [0.0]]),
            "patient_ids": ["a", "a", "b", "b"]}
    args.update(kwargs)
    with pytest.raises(MedwssError, match=problem):
        DetectorTrainer(build_detector(width=4), settings=SMALL, **args)
