"""The detector stage of a bundle: trains from slice labels, exports weights with a note, resumes exactly."""

from __future__ import annotations

import json

import pytest
import torch

from medwss.bundle.stages import train_stage
from medwss.errors import MedwssError
from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return write_tiny_prostate(tmp_path_factory.mktemp("tiny_prostate"))


def test_detector_stage_exports_weights_note_and_curves(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    note = train_stage(bundle, "detector", overrides=tiny_overrides(data_root), run_dir=tmp_path / "runs")
    # The shipped prostate detector is an ensemble of 3: each member trains in its own run folder, from its own seed.
    runs = [tmp_path / "runs" / "detector" / f"member{k}" for k in range(3)]
    assert all((run / "checkpoint_final.pt").is_file() for run in runs)
    assert note["members"] == 3
    run = runs[0]
    assert (run / "progress.png").stat().st_size > 1000
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert (bundle / "models" / "detector.pt").is_file()
    saved = json.loads((bundle / "models" / "detector.json").read_text())
    assert saved["seed"] == note["seed"] == 0
    assert saved["data"]["present_absent"]["gland"] == [24, 16]  # 6 of 10 slices in each of 4 patients
    assert set(saved["data"]["val_patients"]).isdisjoint(saved["data"]["train_patients"])
    # The shipped prostate bundle scores patches with a position prior learned from the training slice labels.
    prior = torch.load(bundle / "models" / "position_prior.pt", weights_only=True)
    assert prior.shape == (4, 4) and float(prior.max()) == 1.0 and float(prior.min()) >= 0.0
    assert saved["scoring"] == {"method": "cam", "gate": True, "prior": True, "prior_shape": "gaussian"}
    assert saved["position_prior"]["shape"] == "gaussian"
    assert float(prior.min()) > 0.0  # a fitted Gaussian is positive everywhere
    assert saved["position_prior"]["present_slices"] + saved["position_prior"]["absent_slices"] <= 40


def test_detector_stage_without_prior_exports_none(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), "scoring#prior": False, "detector#training#epochs": 1}
    note = train_stage(bundle, "detector", overrides=overrides, run_dir=tmp_path / "runs")
    assert note["position_prior"] is None and not (bundle / "models" / "position_prior.pt").exists()


def test_detector_stage_keeps_the_contrast_map_when_asked(tmp_path, data_root):
    from medwss.detector.scoring import gaussian_fit

    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), "scoring#prior_shape": "map", "detector#training#epochs": 1,
                 "detector#network_def#members": 1}
    note = train_stage(bundle, "detector", overrides=overrides, run_dir=tmp_path / "runs")
    assert note["position_prior"]["shape"] == "map"
    prior = torch.load(bundle / "models" / "position_prior.pt", weights_only=True)
    assert float(prior.max()) == pytest.approx(1.0) and float(prior.min()) >= 0.0
    assert not torch.allclose(prior, gaussian_fit(prior), atol=1e-3)  # the map itself, not its fit


def test_a_bad_prior_shape_stops_the_stage_before_it_trains(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    overrides = {**tiny_overrides(data_root), "scoring#prior_shape": "box"}
    with pytest.raises(MedwssError, match="prior_shape"):
        train_stage(bundle, "detector", overrides=overrides, run_dir=tmp_path / "runs")
    assert not list((tmp_path / "runs").rglob("checkpoint_*.pt"))


def test_a_bad_prior_shape_is_named():
    from medwss.bundle.scoring import scoring_settings

    with pytest.raises(MedwssError, match="prior_shape.*'box'"):
        scoring_settings({"scoring": {"prior": True, "prior_shape": "box"}})


@pytest.mark.parametrize(("scoring", "named"), [
    ({"method": "saliency"}, "scoring#method.*'saliency'"),
    ({"method": "contrast", "contrast": {"polarity": "sideways"}}, "scoring#contrast.*polarity"),
    ({"method": "contrast", "contrast": {"radius": 3}}, "scoring#contrast.*radius"),
])
def test_a_bad_scoring_method_or_contrast_setting_is_named(scoring, named):
    from medwss.bundle.scoring import scoring_settings

    with pytest.raises(MedwssError, match=named):
        scoring_settings({"scoring": scoring})


def test_contrast_settings_come_out_complete():
    from medwss.bundle.scoring import scoring_settings

    settings = scoring_settings({"scoring": {"method": "contrast", "contrast": {"erosion": 4}}})
    assert settings["contrast"] == {"polarity": "darker", "sigma": 1.0, "erosion": 4, "span": 0.5}
    assert "contrast" not in scoring_settings({"scoring": {"method": "cam"}})  # other methods' notes stay as they were


def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, data_root, monkeypatch):
    overrides = tiny_overrides(data_root, **{"detector#training#epochs": 4})
    full = tiny_bundle(tmp_path / "a")
    train_stage(full, "detector", overrides=overrides, run_dir=tmp_path / "a" / "runs")

    resumed = tiny_bundle(tmp_path / "b")
    calls = {"n": 0}

    def stop_after_second_checkpoint(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt  # as if killed right after the epoch-2 checkpoint of the second member
        return None

    monkeypatch.setattr("medwss.viz.curves.plot_progress", stop_after_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_stage(resumed, "detector", overrides=overrides, run_dir=tmp_path / "b" / "runs")
    assert not (resumed / "models" / "detector.pt").exists()
    monkeypatch.undo()
    train_stage(resumed, "detector", overrides=overrides, run_dir=tmp_path / "b" / "runs")

    a = torch.load(full / "models" / "detector.pt")
    b = torch.load(resumed / "models" / "detector.pt")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    member = tmp_path / "b" / "runs" / "detector" / "member1"
    steps = [json.loads(line)["step"] for line in (member / "metrics.jsonl").open()]
    assert steps == [1, 2, 3, 4]


def test_bad_override_and_unknown_stage_are_user_errors(tmp_path, data_root):
    bundle = tiny_bundle(tmp_path)
    with pytest.raises(MedwssError, match="no config entry"):
        train_stage(bundle, "detector", overrides={"nothere#epochs": 3})
    with pytest.raises(MedwssError, match="no config for stage"):
        train_stage(bundle, "polish")  # no such stage (refine exists since issue 15)
