"""The distributed helpers on one process (no group): every collective is the identity, the splits cover once."""

from __future__ import annotations

import pytest
import torch

from medwss.runtime import distributed


@pytest.mark.parametrize("n,size", [(10, 3), (3, 4), (0, 2), (8, 2)])
def test_rank_parts_cover_every_item_once(n, size):
    parts = [list(distributed.split_for_rank(list(range(n)), r, size)) for r in range(size)]
    assert sum(parts, []) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_alone_the_collectives_are_the_identity():
    x = torch.tensor([1.0, 2.0])
    assert torch.equal(distributed.all_reduce(x), x) and torch.equal(distributed.all_reduce(x, "mean"), x)
    assert distributed.gather_objects({"a": 1}) == [{"a": 1}]
    model = torch.nn.Linear(2, 1)
    model(x).sum().backward()
    grad = model.weight.grad.clone()
    distributed.average_gradients(model)
    assert torch.equal(model.weight.grad, grad)
    assert distributed.world() == distributed.World(0, 1) and distributed.world().is_main


def test_rank_seeds_differ_and_rank_zero_keeps_the_seed():
    assert distributed.rank_seed(7, 0) == 7
    assert len({distributed.rank_seed(7, r) for r in range(4)}) == 4


def test_env_world_reads_torchrun_variables(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert distributed.env_world() == distributed.World(1, 3) and not distributed.env_world().is_main
