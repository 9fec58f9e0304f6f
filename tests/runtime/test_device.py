"""``--device`` names, thread pinning for CPU runs only, mixed precision only on GPUs."""

from __future__ import annotations

import pytest
import torch

from medwss.errors import MedwssError
from medwss.runtime.device import amp_enabled, configure_threads, resolve_device


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu_names(name):
    assert resolve_device(name) == torch.device("cpu")


def test_auto_takes_a_gpu_only_when_there_is_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected and resolve_device(None).type == expected


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "tpu", "cuda:0:1"])
def test_unknown_names_are_user_errors(name):
    with pytest.raises(MedwssError, match="unknown device"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without a GPU")
def test_a_missing_gpu_is_a_user_error():
    with pytest.raises(MedwssError, match="no GPU"):
        resolve_device("cuda:0")


def test_threads_are_pinned_for_cpu_runs_only():
    before = torch.get_num_threads()
    try:
        configure_threads(torch.device("cpu"), 1)
        assert torch.get_num_threads() == 1
        configure_threads(torch.device("cuda", 0), 3)  # a GPU run leaves the host threads alone
        assert torch.get_num_threads() == 1
        with pytest.raises(MedwssError, match="at least 1"):
            configure_threads(torch.device("cpu"), 0)
    finally:
        torch.set_num_threads(before)


def test_mixed_precision_is_never_on_for_the_cpu():
    assert not amp_enabled(torch.device("cpu"), True)
    assert amp_enabled(torch.device("cuda", 0), True) and not amp_enabled(torch.device("cuda", 0), False)
