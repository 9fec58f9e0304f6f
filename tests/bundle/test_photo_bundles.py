"""Shipped photo bundles (coco, voc): metadata verified offline, MONAI's infer property check, configs in sync."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from medwss.data.natural.classes import class_names

REPO = Path(__file__).resolve().parents[2]
SCHEMA = REPO / "bundles" / "schema" / "meta_schema_medwss.json"
PHOTO_BUNDLES = ["coco", "voc"]


def configs(name: str) -> dict:
    folder = REPO / "bundles" / name / "configs"
    return {p.stem: yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")}


@pytest.mark.parametrize("name", PHOTO_BUNDLES)
def test_metadata_verifies_offline(name):
    from monai.bundle import verify_metadata

    verify_metadata(meta_file=str(REPO / "bundles" / name / "configs" / "metadata.json"), filepath=str(SCHEMA))


@pytest.mark.parametrize("name", PHOTO_BUNDLES)
def test_inference_matches_training(name):
    c = configs(name)
    detector = c["train_detector"]["detector"]["network_def"]
    agent = c["train_selfplay"]["selfplay"]["policy"]
    det = c["inference"]["detector_def"]
    assert agent["observation"] == "features"  # the agent's network itself comes from models/inference_parts.json
    for key in ("in_channels", "num_classes", "width", "extra_blocks", "coord_channels", "pooling"):
        assert det[key] == detector[key], key
    assert detector["num_classes"] == len(class_names(c["common"]["data"]["class_set"]))
    assert c["inference"]["class_set"] == c["common"]["data"]["class_set"]
    assert c["inference"]["grid_size"] == c["common"]["grid_size"]
    assert c["inference"]["working_size"] == c["common"]["data"]["working_size"]


@pytest.mark.parametrize("name", PHOTO_BUNDLES)
def test_inference_config_passes_monai_infer_property_check(tmp_path, name, monkeypatch):
    from monai.bundle import ConfigWorkflow

    from tests.data.natural_fixtures import write_jpeg

    write_jpeg(tmp_path / "photos" / "a.jpg", 20, 30)
    folder = REPO / "bundles" / name / "configs"
    monkeypatch.chdir(folder.parent)  # MONAI reads the %models/... includes from the current folder
    workflow = ConfigWorkflow(
        config_file=str(folder / "inference.yaml"),
        meta_file=str(folder / "metadata.json"),
        workflow_type="infer",
        dataset_dir=str(tmp_path / "photos"),
        output_dir=str(tmp_path / "out"),
        bundle_root=str(folder.parent),
    )
    workflow.initialize()
    assert workflow.check_properties() == []
    workflow.run()
    assert (tmp_path / "out" / "a.png").is_file()
