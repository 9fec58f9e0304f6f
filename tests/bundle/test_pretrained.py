"""``detector#pretrained: PATH``: the detector stage starts its trunk from a local state dict the test writes."""

from __future__ import annotations

import json

import pytest
import torch

from medwss import api
from medwss.detector.network import build_detector
from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate
from tests.cli.helpers import assert_one_error_line, invoke


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_prostate(tmp_path_factory.mktemp("tiny_prostate"))


def _trunk(width: int = 16, seed: int = 7) -> dict[str, torch.Tensor]:
    """A detector state dict of the tiny prostate bundle's architecture (one input channel, one extra block)."""
    torch.manual_seed(seed)
    return build_detector(in_channels=1, width=width, extra_blocks=1).state_dict()


def test_detector_stage_starts_from_the_pretrained_trunk(tmp_path, data_root) -> None:
    source = tmp_path / "trunk.pt"
    state = _trunk()
    torch.save({"state_dict": state}, source)
    bundle = tiny_bundle(tmp_path)
    # A zero learning rate and no weight decay leave the convolutions where they started: the pretrained ones.
    overrides = {**tiny_overrides(data_root), "detector#pretrained": str(source),
                 "detector#training#learning_rate": 0.0, "detector#training#weight_decay": 0.0}  # fmt: skip
    api.train_bundle(bundle, stage="detector", overrides=overrides, run_dir=tmp_path / "runs")
    exported = torch.load(bundle / "models" / "detector.pt", weights_only=True)
    convs = [k for k in state if k.startswith("features.") and k.endswith("conv.weight")]
    assert convs
    for k in range(3):  # every ensemble member
        for name in convs:
            assert torch.equal(exported[f"members.{k}.{name}"], state[name]), name
    note = json.loads((bundle / "models" / "detector.json").read_text())
    assert note["pretrained"]["file"] == str(source.resolve())
    assert note["pretrained"]["tensors"] == 3 * len([k for k in state if k.startswith("features.")])


def test_without_pretrained_the_trunk_is_not_the_file(tmp_path, data_root) -> None:
    state = _trunk()
    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), "detector#training#learning_rate": 0.0}
    api.train_bundle(bundle, stage="detector", overrides=overrides, run_dir=tmp_path / "runs")
    exported = torch.load(bundle / "models" / "detector.pt", weights_only=True)
    name = next(k for k in state if k.endswith("conv.weight"))
    assert not torch.equal(exported[f"members.0.{name}"], state[name])
    assert json.loads((bundle / "models" / "detector.json").read_text())["pretrained"] is None


def test_resume_from_another_trunk_is_refused(tmp_path, data_root) -> None:
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(_trunk(seed=1), first)
    torch.save(_trunk(seed=2), second)
    bundle = tiny_bundle(tmp_path)
    runs = tmp_path / "runs"
    overrides = {**tiny_overrides(data_root), "detector#pretrained": str(first)}
    api.train_bundle(bundle, stage="detector", overrides=overrides, run_dir=runs)
    result = invoke("train", bundle, "--stage", "detector", "--run-dir", runs, "--no-progress",
                    *[a for k, v in tiny_overrides(data_root, **{"detector#pretrained": str(second)}).items()
                      for a in ("--set", f"{k}={json.dumps(v)}")])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert len(result.stderr.splitlines()) == 1 and "--restart" in result.stderr, result.stderr


@pytest.mark.parametrize("problem", ["missing", "wrong width", "not a checkpoint"])
def test_a_bad_pretrained_file_is_one_line(tmp_path, data_root, problem: str) -> None:
    path = tmp_path / "trunk.pt"
    expected = {"missing": "detector#pretrained: no such file", "wrong width": "detector#pretrained: ",
                "not a checkpoint": "corrupt or unsafe checkpoint"}[problem]  # fmt: skip
    if problem == "wrong width":
        torch.save(_trunk(width=8), path)
    elif problem == "not a checkpoint":
        path.write_text("not torch")
    bundle = tiny_bundle(tmp_path)
    result = invoke("train", bundle, "--stage", "detector", "--run-dir", tmp_path / "runs", "--no-progress",
                    *[a for k, v in tiny_overrides(data_root, **{"detector#pretrained": str(path)}).items()
                      for a in ("--set", f"{k}={json.dumps(v)}")])
    assert_one_error_line(result, path, expected)
    assert not (bundle / "models" / "detector.pt").exists()
