"""``positive_box``: the ROI is taken to lie in the central box; on ROI slices the cells outside it are negatives."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medwss.detector.network import build_detector, central_box
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings


class FixedCells(nn.Module):
    """A 'detector' whose cell logits are a parameter: the loss can be read for any map we choose."""

    def __init__(self, cells: torch.Tensor, positive_box: float) -> None:
        super().__init__()
        self.cells = nn.Parameter(cells.clone())
        self.positive_box, self.pooling, self.lse_r = positive_box, "mean", 5.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cells.expand(x.shape[0], *self.cells.shape[1:])


def _trainer(model: nn.Module, presence: torch.Tensor, loss: str = "instance") -> DetectorTrainer:
    settings = DetectorTrainingSettings(epochs=1, augment=False, loss=loss)
    return DetectorTrainer(model, torch.rand(len(presence), 1, 32, 32), presence, settings=settings)


def _centre_map() -> torch.Tensor:
    """Cell logits high in the central 2 x 2 cells (the central half of a 32 px slice), low elsewhere."""
    cells = torch.full((1, 1, 4, 4), -8.0)
    cells[..., 1:3, 1:3] = 8.0
    return cells


def test_central_box():
    box = central_box(32, 32, 0.5)
    assert box[8:24, 8:24].all() and box.sum() == 16 * 16
    assert not central_box(32, 32, 0.0).any()


def test_region_code_marks_the_central_box_inside_the_region():
    t = _trainer(build_detector(width=4, positive_box=0.5), torch.tensor([[1.0], [0.0]]))
    region = torch.ones(1, 32, 32, dtype=torch.bool)
    region[:, :, :4] = False
    code = t._region_code(region)[0]
    assert (code[8:24, 8:24] == 2).all()
    assert (code[:8, 4:] == 1).all() and (code[24:, 4:] == 1).all()
    assert (code[:, :4] == 0).all()
    plain = _trainer(build_detector(width=4), torch.tensor([[1.0], [0.0]]))
    assert set(plain._region_code(region).unique().tolist()) == {0.0, 1.0}


def test_cells_outside_the_box_of_an_roi_slice_are_negatives():
    presence = torch.ones(2, 1)
    boxed = _trainer(FixedCells(_centre_map(), 0.5), presence)
    plain = _trainer(FixedCells(_centre_map(), 0.0), presence)
    x, region = torch.rand(2, 1, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool)
    assert float(boxed._loss(x, presence, boxed._region_code(region))) < 0.01  # the map is exactly the target
    assert float(plain._loss(x, presence, plain._region_code(region))) > 1.0  # every cell should be positive
    # ROI-free slices: every cell is a negative either way.
    assert float(boxed._loss(x, torch.zeros(2, 1), boxed._region_code(region))) > 1.0


def test_bag_loss_pools_the_box():
    presence = torch.ones(2, 1)
    x, region = torch.rand(2, 1, 32, 32), torch.ones(2, 32, 32, dtype=torch.bool)
    boxed = _trainer(FixedCells(_centre_map(), 0.5), presence, loss="bag")
    plain = _trainer(FixedCells(_centre_map(), 0.0), presence, loss="bag")
    assert float(boxed._loss(x, presence, boxed._region_code(region))) < 0.01  # mean over the box: +8
    assert float(plain._loss(x, presence, plain._region_code(region))) > 0.3  # mean over all cells: -4


def test_presence_logit_pools_the_box_only():
    model = build_detector(width=4, positive_box=0.5, pooling="mean").eval()
    x = torch.rand(2, 1, 32, 32)
    cells = model(x)
    torch.testing.assert_close(model.presence_logits(x), cells[..., 1:3, 1:3].mean((-2, -1)))
    region = torch.zeros(2, 32, 32, dtype=torch.bool)
    region[:, :, :16] = True  # the left half: the box's left column of cells
    torch.testing.assert_close(model.presence_logits(x, region), cells[..., 1:3, 1:2].mean((-2, -1)))
    ensemble = build_detector(width=4, positive_box=0.5, members=2)
    assert ensemble.positive_box == 0.5


def test_bad_positive_box_is_an_error():
    with pytest.raises(ValueError, match="positive_box"):
        build_detector(width=4, positive_box=1.5)


def test_the_box_moves_with_the_augmentation():
    t = _trainer(build_detector(width=4, positive_box=0.5), torch.tensor([[1.0], [0.0]]))
    t.intensity = []
    t.settings = DetectorTrainingSettings(epochs=1, rotate_range=0.0, scale_range=0.0, translate_fraction=0.0,
                                          flip_prob=1.0)  # fmt: skip
    region = torch.zeros(1, 32, 32, dtype=torch.bool)
    region[:, :, :20] = True  # the region covers the left part and half of the box
    _, code = t._augment(torch.rand(1, 1, 32, 32), t._region_code(region))
    torch.testing.assert_close(code, t._region_code(region).flip(-1))
