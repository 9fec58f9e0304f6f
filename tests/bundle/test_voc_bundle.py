"""The shipped PASCAL VOC bundle: its config reads the shared VOC folder, its weights are the ones its configs build,
its notes say where they came from, and it segments a real VOC photo end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from medwss.runtime.config import load_config, parsed, stage_config_file, stages_of

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "voc"
VOC = REPO.parent / "shared" / "data" / "voc"
realdata = pytest.mark.skipif(not VOC.is_dir(), reason=f"real data folder {VOC} is absent")


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def training_config(overrides: dict | None = None):
    return load_config(BUNDLE, [stage_config_file(BUNDLE, s) for s in stages_of(BUNDLE)], overrides)


def test_config_reads_the_voc_folder_and_split_settings():
    config = training_config({"dataset_dir": "/data"})
    assert config.get_parsed_content("voc_dir") == "/data/voc"
    assert config.get_parsed_content("data#datalist#root") == "/data/voc"
    assert config.get_parsed_content("data#datalist#split") == "val"
    assert config["data"]["datalist"]["_target_"] == "medwss.data.natural.voc.voc_datalist"
    config = training_config({"voc_dir": "/copies/VOCdevkit/VOC2012", "voc_split": "train"})
    assert config.get_parsed_content("data#datalist#root") == "/copies/VOCdevkit/VOC2012"
    assert config.get_parsed_content("data#datalist#split") == "train"


def test_shipped_weights_load_strictly_into_the_inference_networks():
    from medwss.runtime.config import load_config as load

    inference = load(BUNDLE, [BUNDLE / "configs" / "inference.yaml"])
    for key, weights in (("detector_def", "detector.pt"), ("network_def", "model.pt")):
        network = parsed(inference, key)
        state = torch.load(BUNDLE / "models" / weights, map_location="cpu", weights_only=True)
        network.load_state_dict(state, strict=True)  # a shape or key mismatch raises
    sizes = sum(p.stat().st_size for p in (BUNDLE / "models").iterdir())
    assert sizes < 5 * 2**20  # the bundle stays small


def test_provenance_notes_match_the_training_configs():
    detector = json.loads((BUNDLE / "models" / "detector.json").read_text())
    policy = json.loads((BUNDLE / "models" / "policy.json").read_text())
    configs = {p.stem: yaml.safe_load(p.read_text()) for p in (BUNDLE / "configs").glob("*.yaml")}
    common = configs["common"]
    for note in (detector, policy):
        assert note["command"].startswith("medwss train bundles/voc")
        assert note["seed"] == common["seed"] and len(note["medwss_commit"]) >= 7
    assert detector["data"]["train"] + detector["data"]["val"] == 225 and detector["data"]["holdout"] == 0
    assert detector["data"]["val"] == round(configs["train_detector"]["detector"]["val_fraction"] * 225)
    training = configs["train_detector"]["detector"]["training"]
    for key, value in training.items():
        assert detector["settings"][key] == value, key
    selfplay = configs["train_selfplay"]["selfplay"]
    for section in ("training", "ppo", "pool", "policy"):  # the note stores the settings in the config's sections
        for key, value in selfplay[section].items():
            assert policy["settings"][section][key] == value, (section, key)
    for key, value in selfplay["rules"].items():
        assert policy["rules"][key] == value, key
    inference = configs["inference"]
    # the inferer plays on the game scores the agent was trained on
    assert inference["inferer"]["position_prior"] == policy["position_prior"] == selfplay["position_prior"]
    assert policy["rules"]["grid_size"] == common["grid_size"]


def test_bundle_docs_name_the_data_licence_and_commands():
    readme = (BUNDLE / "docs" / "README.md").read_text()
    licence = (BUNDLE / "docs" / "data_license.txt").read_text()
    for text in (readme, licence):
        assert "research" in text and "Flickr" in text
    assert (BUNDLE / "LICENSE").read_text().lstrip().startswith("Apache License")
    for command in ("medwss train bundles/voc", "medwss segment", "benchmarks/coco.py --task voc"):
        assert command in readme
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    assert meta["version"] in meta["changelog"] and meta["version"] != "0.1.0"


@realdata
@pytest.mark.realdata
def test_voc_datalist_of_the_shared_folder():
    config = training_config({"dataset_dir": str(VOC.parent)})
    items = parsed(config, "data#datalist")
    assert len(items) == 225 and all(it["labels"] for it in items)


@realdata
@pytest.mark.realdata
@pytest.mark.parametrize("method", ["rlsp", "cam"])
def test_segment_a_shared_voc_photo_end_to_end(tmp_path, method):
    from PIL import Image

    from medwss import api
    from medwss.data.natural.voc import read_label_png

    photo = VOC / "JPEGImages" / "2007_000033.jpg"
    written = api.segment([photo], tmp_path / "out.png", bundle=BUNDLE, method=method)
    assert written == [tmp_path / "out.png"]
    with Image.open(written[0]) as img:
        assert img.format == "PNG" and img.mode == "P"
    labels = read_label_png(written[0])
    with Image.open(photo) as img:
        assert labels.shape == (img.height, img.width)
    assert labels.max() <= 20 and set(np.unique(labels).tolist()) <= set(range(21))
