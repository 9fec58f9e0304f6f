"""A photo bundle end to end in seconds: train both stages on tiny COCO photos, segment photos, write PNGs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from medwss import api
from medwss.bundle.stages import bundle_splits
from medwss.data.natural.voc import read_label_png
from medwss.errors import MedwssError
from medwss.inference.photo_segment import photo_output_paths
from medwss.runtime.config import is_multiclass_bundle, is_photo_bundle
from tests.cli.helpers import assert_one_error_line, invoke
from tests.data.natural_fixtures import write_coco_sample, write_jpeg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_overrides(annotations: Path) -> dict:
    return {
        "data#datalist#annotation_file": str(annotations),
        "data#datalist#image_dir": str(annotations.parents[1] / "images"),
        "data#working_size": 32, "grid_size": 4, "data#holdout_fraction": 0.2, "detector#val_fraction": 0.25,
        "detector#network_def#width": 4, "detector#training#epochs": 2, "detector#training#batch_size": 4,
        "selfplay#training#num_iterations": 2, "selfplay#training#games_per_iteration": 4,
        "selfplay#ppo#minibatch_size": 32, "selfplay#training#termination_warmup": 0,
        "selfplay#training#eval_every": 1,
    }  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """bundles/coco copied without weights, trained for seconds on 6 tiny photos, inference shrunk alike."""
    base = tmp_path_factory.mktemp("photo")
    annotations = write_coco_sample(base / "coco")
    bundle = base / "coco_bundle"
    shutil.copytree(REPO / "bundles" / "coco", bundle, ignore=shutil.ignore_patterns("models"))
    notes = api.train_bundle(bundle, overrides=tiny_overrides(annotations), run_dir=base / "runs", progress=False)
    config = bundle / "configs" / "inference.yaml"
    text = config.read_text()
    # the agent's network and rules come from training (models/inference_parts.json): only the data and the
    # detector, still stated in inference.yaml, are shrunk here
    for old, new in (("grid_size: 8 ", "grid_size: 4 "), ("working_size: 128 ", "working_size: 32 "),
                     ("width: 32 ", "width: 4 ")):  # fmt: skip
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)
    return bundle, annotations, notes


def test_training_exports_weights_and_notes_with_the_split(trained):
    bundle, _, notes = trained
    assert [n["stage"] for n in notes] == ["detector", "selfplay"]
    held_out = notes[0]["data"]["holdout_patients"]
    trained_on = notes[0]["data"]["train_patients"] + notes[0]["data"]["val_patients"]
    assert len(held_out) == 1 and held_out[0] not in trained_on
    assert notes[0]["data"]["slices"] == 5  # the held-out photo is never trained on
    assert notes[1]["data"]["train_games"] > 0
    for name in ("detector.pt", "model.pt", "detector.json", "policy.json"):
        assert (bundle / "models" / name).is_file()


@pytest.mark.parametrize("method", ["rlsp", "single-agent", "cam"])
def test_segment_photo_writes_label_png_and_overlay_at_the_photo_size(trained, tmp_path, method):
    bundle, annotations, _ = trained
    photo = annotations.parents[1] / "images" / "000000000001.jpg"
    written = api.segment([photo], tmp_path / "out.png", bundle=bundle, method=method)
    assert written == [tmp_path / "out.png"]
    labels = read_label_png(written[0])
    assert labels.shape == (24, 32) and labels.max() <= 80
    assert (tmp_path / "out_overlay.png").is_file()


def test_cli_segment_folder_of_photos(trained, tmp_path):
    bundle, annotations, _ = trained
    result = invoke("segment", annotations.parents[1] / "images", "--bundle", bundle, "--method", "single-agent",
                    "-o", tmp_path / "maps", "--no-progress")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "maps").glob("*_overlay.png"))) == 6
    assert len([p for p in (tmp_path / "maps").glob("*.png") if "overlay" not in p.name]) == 6


def test_cli_errors_for_photos(trained, tmp_path):
    bundle, annotations, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_text("no photo")
    assert_one_error_line(invoke("segment", bad, "--bundle", bundle, "-o", tmp_path / "b.png", "--no-progress"),
                          bad, "cannot read image")  # fmt: skip
    assert not (tmp_path / "b.png").exists()
    prior = write_jpeg(tmp_path / "p.jpg", 4, 4)
    assert_one_error_line(invoke("segment", prior, "--bundle", bundle, "--roi-mask", prior, "--no-progress"),
                          prior, "photo bundles take no organ prior")  # fmt: skip


def test_output_paths_and_bundle_kind(tmp_path):
    photos = [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    assert photo_output_paths(photos, None, "cam") == [Path("a_cam.png"), Path("b_cam.png")]
    assert photo_output_paths(photos, tmp_path / "o", "cam") == [tmp_path / "o" / "a.png", tmp_path / "o" / "b.png"]
    with pytest.raises(MedwssError, match="overwrite an input"):
        photo_output_paths([tmp_path / "a.png"], tmp_path / "a.png", "cam")
    assert is_photo_bundle(REPO / "bundles" / "coco") and is_photo_bundle(REPO / "bundles" / "voc")
    assert not is_photo_bundle(REPO / "bundles" / "prostate")
    assert is_multiclass_bundle(REPO / "bundles" / "voc")
    assert not is_multiclass_bundle(REPO / "bundles" / "liver_tumour")


def split_config(holdout, val, seed=0):
    data = {} if holdout is None else {"holdout_fraction": holdout}
    return {"seed": seed, "data": data, "detector": {"val_fraction": val}}


def test_bundle_splits_are_seeded_disjoint_and_complete():
    from medwss.data.splits import patient_split

    ids = [f"{i:03d}" for i in range(20)]
    splits = bundle_splits(split_config(0.25, 0.2), ids)
    assert splits == bundle_splits(split_config(0.25, 0.2), list(reversed(ids)) * 2)  # slices of the same patients
    assert len(splits["holdout"]) == 5 and len(splits["val"]) == 3
    assert sorted(sum(splits.values(), [])) == ids
    assert bundle_splits(split_config(0.0, 0.2), ids)["holdout"] == []
    assert np.isin(splits["holdout"], bundle_splits(split_config(0.25, 0.2, seed=1), ids)["holdout"]).sum() < 5
    # a declared hold-out draws validation with the next seed; the scan bundles (none declared) keep the seed
    assert bundle_splits(split_config(0.0, 0.2), ids)["val"] == patient_split(ids, 0.2, 1)[1]
    assert bundle_splits(split_config(None, 0.2), ids)["val"] == patient_split(ids, 0.2, 0)[1]
    assert bundle_splits(split_config(None, 0.0), ids) == {"train": ids, "val": [], "holdout": []}


def test_selfplay_stage_records_its_position_prior_and_rejects_an_unknown_one(trained, tmp_path):
    bundle, annotations, notes = trained
    assert notes[1]["position_prior"] == "none"
    before = (bundle / "models" / "model.pt").read_bytes()
    overrides = {**tiny_overrides(annotations), "selfplay#position_prior": "corner"}
    with pytest.raises(MedwssError, match="position_prior"):
        api.train_bundle(bundle, "selfplay", overrides=overrides, run_dir=tmp_path / "runs", progress=False)
    assert (bundle / "models" / "model.pt").read_bytes() == before
