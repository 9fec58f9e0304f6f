"""Detector network: shapes, MIL pooling values, factory."""

from __future__ import annotations

import math

import pytest
import torch

from medwss.detector.network import POOLINGS, PresenceDetector, build_detector, pool_cells, region_cells


@pytest.mark.parametrize(
    ("in_channels", "num_classes", "size", "coords", "extra"),
    [(1, 1, 128, True, 0), (3, 2, 64, False, 1), (2, 5, 40, True, 0)],
)
def test_cell_logit_shape(in_channels: int, num_classes: int, size: int, coords: bool, extra: int) -> None:
    model = build_detector(in_channels=in_channels, num_classes=num_classes, width=8, coord_channels=coords,
                           extra_blocks=extra)
    cells = model(torch.rand(2, in_channels, size, size))
    assert cells.shape == (2, num_classes, math.ceil(size / 8), math.ceil(size / 8))
    assert cells.dtype == torch.float32
    assert model.presence_logits(torch.rand(2, in_channels, size, size)).shape == (2, num_classes)


LOGITS = torch.tensor([[0.0, 1.0], [2.0, -3.0]])


@pytest.mark.parametrize(
    ("pooling", "mask", "expected"),
    [
        ("max", None, 2.0),
        ("mean", None, 0.0),
        ("lse", None, math.log((1 + math.e ** 5 + math.e ** 10 + math.e ** -15) / 4) / 5),
        ("max", torch.tensor([[True, True], [False, True]]), 1.0),
        ("mean", torch.tensor([[True, True], [False, False]]), 0.5),
        ("mean", torch.zeros(2, 2, dtype=torch.bool), 0.0),  # empty bag pools over all cells
        ("lse", torch.tensor([[False, False], [True, False]]), 2.0),  # a single cell is its own pool
    ],
)
def test_pool_cells_cases(pooling: str, mask: torch.Tensor | None, expected: float) -> None:
    assert pool_cells(LOGITS, mask, pooling, 5.0).item() == pytest.approx(expected, abs=1e-5)


def test_lse_lies_between_mean_and_max() -> None:
    x = torch.randn(3, 4, 4)
    for r in (0.5, 5.0, 50.0):
        lse = pool_cells(x, None, "lse", r)
        assert torch.all(lse <= x.flatten(1).max(1).values + 1e-5)
        assert torch.all(lse >= x.flatten(1).mean(1) - 1e-5)


def test_unknown_pooling_raises() -> None:
    with pytest.raises(ValueError, match="unknown pooling"):
        PresenceDetector(pooling="median")
    with pytest.raises(ValueError, match="unknown pooling"):
        pool_cells(LOGITS, None, "median")


def test_region_cells_needs_half_coverage() -> None:
    region = torch.zeros(1, 16, 16, dtype=torch.bool)
    region[0, :8, :4] = True  # half of cell (0, 0)
    region[0, 8:, 8:11] = True  # 3/8 of cell (1, 1)
    assert region_cells(region, (2, 2)).tolist() == [[[True, False], [False, False]]]


def test_all_poolings_are_accepted() -> None:
    for pooling in POOLINGS:
        assert build_detector(width=4, pooling=pooling).pooling == pooling


@pytest.mark.parametrize(("coords", "equivariant"), [(False, True), (True, False)])
def test_only_the_coordinate_free_detector_is_shift_equivariant(coords: bool, equivariant: bool) -> None:
    """Why ``coord_channels: false`` helps the prostate: without position the cells must score content.

    Shifting a slice by whole cells (8 px) must shift the cell logits by as many cells when nothing tells the net
    where it is; with CoordConv channels the same content scores differently at another place.
    """
    torch.manual_seed(0)
    model = build_detector(width=8, coord_channels=coords).eval()
    with torch.no_grad():
        for p in model.parameters():  # break the symmetric init so position would matter if the net sees it
            p.add_(0.1 * torch.randn_like(p))
    image = torch.rand(1, 1, 128, 128)
    shifted = torch.roll(image, shifts=(8, 16), dims=(-2, -1))  # one cell down, two right
    with torch.no_grad():
        cells, cells_shifted = model(image)[0, 0], model(shifted)[0, 0]
    # Compare only cells whose 39 px receptive field stays clear of the borders and of the wrapped rows/columns.
    same = torch.allclose(cells_shifted[4:12, 5:12], cells[3:11, 3:10], atol=1e-4)
    assert same == equivariant


# ------------------------------------------------------------------------------------------ pretrained trunk
def _trunks_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_pretrained_single_detector_initialises_every_member_and_keeps_the_head() -> None:
    from medwss.detector.network import detector_members, load_pretrained_trunk

    torch.manual_seed(0)
    source = build_detector(width=8)
    torch.manual_seed(1)
    ensemble = build_detector(width=8, members=3)
    heads = [m.head.weight.clone() for m in detector_members(ensemble)]
    loaded = load_pretrained_trunk(ensemble, {"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}})
    assert loaded == 3 * len(source.features.state_dict())
    for member, head in zip(detector_members(ensemble), heads, strict=True):
        assert _trunks_equal(member.features, source.features)
        assert torch.equal(member.head.weight, head)  # the head belongs to this bundle's classes


def test_pretrained_ensemble_loads_member_by_member() -> None:
    from medwss.detector.network import detector_members, load_pretrained_trunk

    torch.manual_seed(0)
    source = build_detector(width=8, members=2)
    torch.manual_seed(1)
    target = build_detector(width=8, members=2)
    load_pretrained_trunk(target, source.state_dict())
    for mine, theirs in zip(detector_members(target), detector_members(source), strict=True):
        assert _trunks_equal(mine.features, theirs.features)
    assert not _trunks_equal(detector_members(target)[0].features, detector_members(target)[1].features)


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({"head.weight": torch.zeros(1, 16, 1, 1)}, "no detector trunk weights"),
        ("wider", "has shape"),
        ("shallower", "lacks"),
    ],
)
def test_pretrained_trunk_that_does_not_fit_is_refused(state, problem: str) -> None:
    from medwss.detector.network import load_pretrained_trunk

    if state == "wider":
        state = build_detector(width=16, extra_blocks=1).state_dict()
    elif state == "shallower":
        state = build_detector(width=8, extra_blocks=0).state_dict()
    with pytest.raises(ValueError, match=problem):
        load_pretrained_trunk(build_detector(width=8, extra_blocks=1), state)
