"""The optional refine stage: a UNet learns the trained agent's masks and inference uses it only when asked."""

from __future__ import annotations

import json

import pytest
import torch

from medwss.bundle.refine_stage import agent_masks
from medwss.bundle.stages import stage_slices, train_stage, training_regions
from medwss.errors import MedwssError
from medwss.inference.inferer import METHODS, SelfPlayInferer
from medwss.inference.loading import load_inference, load_refiner
from medwss.refinement.training import RefinementSettings, build_refiner, refine
from medwss.runtime.config import load_config, parsed, stages_of
from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate
from tests.bundle.test_selfplay_stage import SMALL

TINY_REFINER = {
    "refine#training#epochs": 2,
    "refine#training#batch_size": 8,
    "refine#training#channels": [4, 8],
    "refine#training#num_res_units": 0,
}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_prostate(tmp_path_factory.mktemp("tiny_prostate_refine"))


def test_refine_is_optional_and_needs_a_trained_agent(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    assert "refine" not in stages_of(bundle)  # `medwss train` alone never runs it
    with pytest.raises(MedwssError, match="train the bundle first"):
        train_stage(bundle, "refine", overrides={**tiny_overrides(data_root), **TINY_REFINER}, run_dir=tmp_path / "r")


def test_refine_stage_learns_the_agents_masks_and_inference_uses_it_when_set(tmp_path, data_root, monkeypatch):
    torch.set_num_threads(1)
    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), **SMALL}
    for stage in ("detector", "selfplay"):
        train_stage(bundle, stage, overrides=overrides, run_dir=tmp_path / "runs")
    note = train_stage(bundle, "refine", overrides={**overrides, **TINY_REFINER}, run_dir=tmp_path / "runs")
    saved = json.loads((bundle / "models" / "refiner.json").read_text())
    assert saved["network"] == {"in_channels": 1, "channels": [4, 8], "num_res_units": 0}
    assert note["settings"]["epochs"] == 2 and (tmp_path / "runs" / "refine" / "metrics.jsonl").is_file()
    refiner = load_refiner(bundle / "models" / "refiner.pt")
    # The targets are the agent's masks as `medwss segment` makes them (patch unions inside the region).
    monkeypatch.chdir(tmp_path)
    parser = load_config(bundle, [bundle / "configs" / f"train_{s}.yaml" for s in ("detector", "selfplay")], overrides)
    slices = stage_slices(parser)
    regions = training_regions(slices, str(parsed(parser, "data")["region"]))
    targets = agent_masks(bundle, parser, slices.images, regions, slices.patients)
    assert targets.shape == slices.images[:, 0].shape and targets.dtype == torch.bool
    # The shipped volume stop agrees counts per patient, as `medwss segment` sees one scan at a time (gate 0: the
    # detector trained for seconds may not reach the shipped gate on any slice).
    config = bundle / "configs" / "inference.yaml"
    config.write_text(config.read_text().replace("    gate: 0.3 ", "    gate: 0.0 "))
    targets = agent_masks(bundle, parser, slices.images, regions, slices.patients)
    rows = {p: torch.tensor([q == p for q in slices.patients]) for p in dict.fromkeys(slices.patients)}
    assert len(rows) > 1
    one_by_one = torch.zeros_like(targets)
    for r in rows.values():
        one_by_one[r] = agent_masks(bundle, parser, slices.images[r], regions[r])
    assert torch.equal(targets, one_by_one)
    # Off unless inference.yaml (or --set) names the refiner; then the mask is the refiner's.
    tiny = {"grid_size": 4}
    _, off_parser, network = load_inference(bundle, "rlsp", METHODS, tiny)
    assert parsed(off_parser, "inferer").refiner is None
    expression = "$medwss.inference.loading.load_refiner(@bundle_root + '/models/refiner.pt')"
    on = {**tiny, "refiner": expression, "inferer#refine_gate": 0.0}
    _, on_parser, _ = load_inference(bundle, "rlsp", METHODS, on)
    inferer = parsed(on_parser, "inferer")
    volume = slices.images[:6, :1].permute(1, 2, 3, 0)  # (C, H, W, Z)
    mask = inferer(volume[None], network)[0, 0].permute(2, 0, 1).bool()
    image_slices, region = inferer.slices_and_region(volume)
    expected = refine(refiner, image_slices, threshold=inferer.refine_threshold) & region
    assert torch.equal(mask, expected)


class _Scorer:
    """Stands in for the PatchScorer: fixed slice presence probabilities."""

    prior = None

    def __init__(self, probabilities: torch.Tensor) -> None:
        self.probabilities = probabilities

    def slice_probabilities(self, slices, region=None, progress=None):
        return self.probabilities


def test_refined_masks_keep_the_region_and_the_slice_gate():
    torch.set_num_threads(1)
    refiner = build_refiner(1, RefinementSettings(channels=(4, 8), num_res_units=0))
    slices = torch.rand(3, 1, 16, 16)
    region = torch.zeros(3, 16, 16, dtype=torch.bool)
    region[:, 4:12, 4:12] = True
    gate = torch.tensor([0.9, 0.1, 0.6])
    inferer = SelfPlayInferer(torch.nn.Conv2d(1, 1, 1), rules=type("R", (), {"grid_size": 4})(),
                              scorer=_Scorer(gate), refiner=refiner, refine_threshold=0.0, refine_gate=0.5,
                              region="none")  # fmt: skip
    assert bool(refine(refiner, slices, threshold=0.0).all())  # threshold 0: the refiner alone marks everything
    out = inferer.refined_masks(slices, region)
    assert torch.equal(out, region & (gate >= 0.5)[:, None, None])  # inside the region, slice 1 gated out


def test_refined_masks_on_the_agents_slices_only(monkeypatch):
    """``refine_gate: agent``: the refiner draws the borders, the method's own mask (the agent's) picks the slices."""
    torch.set_num_threads(1)
    refiner = build_refiner(1, RefinementSettings(channels=(4, 8), num_res_units=0))
    slices = torch.rand(3, 1, 16, 16)
    region = torch.ones(3, 16, 16, dtype=torch.bool)
    inferer = SelfPlayInferer(torch.nn.Conv2d(1, 1, 1), rules=type("R", (), {"grid_size": 4})(),
                              scorer=_Scorer(torch.ones(3)), refiner=refiner, refine_threshold=0.0,
                              refine_gate="agent", region="none")  # fmt: skip
    agent = torch.zeros(3, 16, 16, dtype=torch.bool)
    agent[0, :4, :4] = agent[2, 8:, 8:] = True
    seen = []
    monkeypatch.setattr(inferer, "method_masks", lambda s, r, network, progress=None: seen.append(network) or agent)
    out = inferer.refined_masks(slices, region, network="the agent")
    assert seen == ["the agent"]
    assert torch.equal(out, region & torch.tensor([True, False, True])[:, None, None])  # whole slices: the refiner's
    with pytest.raises(ValueError, match="refine_gate"):
        SelfPlayInferer(torch.nn.Conv2d(1, 1, 1), rules=type("R", (), {"grid_size": 4})(), scorer=_Scorer(None),
                        refine_gate="agents")  # fmt: skip
