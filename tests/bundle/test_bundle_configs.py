"""Shipped bundle configs: metadata verified offline, MONAI's inference property check, configs in sync."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "bundles" / "schema" / "meta_schema_medwss.json"
BUNDLES = ["prostate", "liver_tumour"]


@pytest.mark.parametrize("name", BUNDLES)
def test_metadata_verifies_offline(name):
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(REPO / "bundles" / name / "configs" / "metadata.json"), filepath=str(SCHEMA))


def test_schema_rejects_metadata_without_network_data_format(tmp_path):
    from monai.bundle import verify_metadata

    meta = json.loads((REPO / "bundles" / "prostate" / "configs" / "metadata.json").read_text())
    del meta["network_data_format"]
    bad = tmp_path / "metadata.json"
    bad.write_text(json.dumps(meta))
    with pytest.raises(Exception, match="network_data_format"):
        verify_metadata(meta_file=str(bad), filepath=str(SCHEMA))


@pytest.mark.parametrize(
    "name", [b for b in BUNDLES if (REPO / "bundles" / b / "configs" / "inference.yaml").is_file()]
)
def test_inference_config_passes_monai_infer_property_check(name, tmp_path, monkeypatch):
    from monai.bundle import ConfigWorkflow

    from tests.bundle.fixtures import write_tiny_prostate

    scans = tmp_path / "scans"
    scans.mkdir()
    case = write_tiny_prostate(tmp_path / "d", patients=1) / "p0"
    (case / "t2.nii.gz").rename(scans / "p0.nii.gz")
    priors = tmp_path / "priors"  # the liver bundle's organ prior, matched by name (the tiny gland stands in)
    priors.mkdir()
    (case / "t2_anatomy_reader1.nii.gz").rename(priors / "p0.nii.gz")
    configs = REPO / "bundles" / name / "configs"
    monkeypatch.chdir(configs.parent)  # MONAI reads the %models/... includes from the current folder
    workflow = ConfigWorkflow(
        config_file=str(configs / "inference.yaml"),
        meta_file=str(configs / "metadata.json"),
        workflow_type="infer",
        dataset_dir=str(scans),
        prior_dir=str(priors),
        bundle_root=str(configs.parent),
    )
    workflow.initialize()
    assert workflow.check_properties() == []


@pytest.mark.parametrize(
    "name", [b for b in BUNDLES if (REPO / "bundles" / b / "configs" / "inference.yaml").is_file()]
)
def test_inference_data_settings_match_training(name):
    """The slices inference cuts are those training saw (the agent's network and rules come from training itself,
    ``models/inference_parts.json``)."""
    configs = REPO / "bundles" / name / "configs"
    inference = yaml.safe_load((configs / "inference.yaml").read_text())
    common = yaml.safe_load((configs / "common.yaml").read_text())
    detector = yaml.safe_load((configs / "train_detector.yaml").read_text())["detector"]["network_def"]
    assert inference["grid_size"] == common["grid_size"]
    assert inference["working_size"] == common["data"]["working_size"]
    assert inference["preset"] == common["data"]["preset"] and inference["region"] == common["data"]["region"]
    assert inference["detector_def"]["width"] == detector["width"]


@pytest.mark.parametrize(("name", "licence"), [("prostate", "CC BY 4.0"), ("liver_tumour", "CC BY-NC-ND 4.0")])
def test_bundle_docs_name_the_training_data_and_its_licence(name, licence):
    bundle = REPO / "bundles" / name
    readme = (bundle / "docs" / "README.md").read_text()
    assert licence in readme and licence in (bundle / "docs" / "data_license.txt").read_text()
    assert (bundle / "LICENSE").read_text().lstrip().startswith("Apache License")
    for command in ("medwss train", "medwss segment"):
        assert command in readme


@pytest.mark.parametrize("name", BUNDLES)
def test_inference_detector_matches_training(name):
    """inference.yaml rebuilds the detector the detector stage trained (a mismatch cannot load its weights, or, for
    ``positive_box``, loads them and pools other cells than training did)."""
    configs = REPO / "bundles" / name / "configs"
    inference = yaml.safe_load((configs / "inference.yaml").read_text())["detector_def"]
    training = yaml.safe_load((configs / "train_detector.yaml").read_text())["detector"]["network_def"]
    for key in ("num_classes", "width", "coord_channels", "pooling"):
        assert inference[key] == training[key], key
    for key, default in (("extra_blocks", 0), ("members", 1), ("positive_box", 0.0), ("lse_r", 5.0)):
        assert inference.get(key, default) == training.get(key, default), key


ALL_BUNDLES = sorted(p.parent.parent.name for p in (REPO / "bundles").glob("*/configs/train_selfplay.yaml"))


@pytest.mark.parametrize("name", ALL_BUNDLES)
def test_selfplay_config_and_shipped_agent_agree(name):
    """Each bundle's self-play sections build settings; the network config saved beside ``models/model.pt`` is exactly
    what rebuilds the shipped weights, and it is the one the recorded settings (``models/policy.json``) describe."""
    import torch

    from medwss.agents.policy import AgentPolicy
    from medwss.bundle.selfplay_stage import SELFPLAY_KEYS
    from medwss.selfplay.settings import SelfPlaySettings

    bundle = REPO / "bundles" / name
    config = yaml.safe_load((bundle / "configs" / "train_selfplay.yaml").read_text())["selfplay"]
    assert "training" in config and {"ppo", "pool", "policy"} <= set(config)
    SelfPlaySettings.from_config(config, seed=0, node_keys=SELFPLAY_KEYS)  # no stray key either
    note = json.loads((bundle / "models" / "policy.json").read_text())
    network = json.loads((bundle / "models" / "inference_parts.json").read_text())["network_def"]
    assert network.pop("_target_") == "medwss.agents.policy.AgentPolicy" and network == note["policy"]
    policy = AgentPolicy(**network)
    assert policy.config == network  # every constructor argument is written out, none left to a default
    policy.load_state_dict(torch.load(bundle / "models" / "model.pt", map_location="cpu", weights_only=True))
    recorded = SelfPlaySettings.from_config(note["settings"])  # stored as the config's sections
    assert recorded.policy.network_config(network["grid_size"], network["in_channels"]) == network
    assert recorded.num_iterations == note["metrics"]["iterations"] and recorded.seed == note["seed"]
