"""`medwss segment` and the bundle's inference config: masks on exactly the input's grid, for every method."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from medwss import api
from medwss.bundle.stages import train_stage
from medwss.cli import app
from medwss.errors import MedwssError
from medwss.inference.segment import Segmenter
from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate
from tests.bundle.test_selfplay_stage import SMALL


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny prostate bundle trained for seconds, with inference shrunk to its 32 px / 4 x 4 grid."""
    base = tmp_path_factory.mktemp("trained")
    data = write_tiny_prostate(base / "data")
    bundle = tiny_bundle(base)
    overrides = {**tiny_overrides(data), **SMALL, "selfplay#policy#channels": 16}
    train_stage(bundle, "detector", overrides=overrides, run_dir=base / "runs")
    train_stage(bundle, "selfplay", overrides=overrides, run_dir=base / "runs")
    config = bundle / "configs" / "inference.yaml"
    text = (
        config.read_text().replace("grid_size: 16 ", "grid_size: 4 ").replace("working_size: 128 ", "working_size: 32 ")
    )
    # The shipped volume stop gates at a presence of 0.3, which a detector trained for seconds may not reach on
    # any slice: gate at 0 here (the median along slices and the run stay on); the volume stop test sets its own.
    assert "    gate: 0.3 " in text
    config.write_text(text.replace("    gate: 0.3 ", "    gate: 0.0 "))
    return bundle, data


def _geometry(path):
    image = sitk.ReadImage(str(path))
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def _same_geometry(a, b):
    size_a, *rest_a = _geometry(a)
    size_b, *rest_b = _geometry(b)
    assert size_a == size_b
    for x, y in zip(rest_a, rest_b, strict=True):
        np.testing.assert_allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("method", ["rlsp", "single-agent", "cam"])
def test_segment_writes_mask_on_the_scan_grid(tmp_path, trained, method):
    bundle, data = trained
    scan = data / "p0" / "t2.nii.gz"
    out = tmp_path / f"p0_{method}.nii.gz"
    (written,) = api.segment([scan], out, bundle=bundle, method=method, overlay=True)
    assert written == out
    _same_geometry(scan, out)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out)))
    assert set(np.unique(mask)) <= {0, 1}
    assert out.with_name(f"p0_{method}_overlay.png").stat().st_size > 1000


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_other_formats_keep_their_geometry(tmp_path, trained, suffix):
    bundle, data = trained
    scan = tmp_path / f"p1{suffix}"
    sitk.WriteImage(sitk.ReadImage(str(data / "p1" / "t2.nii.gz")), str(scan))
    (written,) = api.segment([scan], tmp_path / "out", bundle=bundle, method="single-agent")
    assert written == tmp_path / "out" / "p1.nii.gz"
    _same_geometry(scan, written)


def test_dicom_series_input(tmp_path, trained):
    bundle, data = trained
    image = sitk.Cast(sitk.ReadImage(str(data / "p2" / "t2.nii.gz")), sitk.sitkInt16)
    folder = tmp_path / "series"
    folder.mkdir()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    direction = image.GetDirection()
    for z in range(image.GetDepth()):
        part = image[:, :, z]
        origin = image.TransformIndexToPhysicalPoint((0, 0, z))
        tags = {
            "0008|0060": "MR",
            "0020|000e": "1.2.826.0.1.3680043.2.1125.1.1",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.2",
            "0020|0032": "\\".join(f"{v:f}" for v in origin),
            "0020|0013": str(z + 1),
            "0020|0037": "\\".join(f"{v:f}" for v in direction[0:3] + direction[3:6]),
            "0028|0030": "\\".join(f"{v:f}" for v in image.GetSpacing()[1::-1]),
            "0018|0050": f"{image.GetSpacing()[2]:f}",
        }
        for tag, value in tags.items():
            part.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"{z:03d}.dcm"))
        writer.Execute(part)
    (written,) = api.segment([folder], tmp_path / "dicom_mask.nii.gz", bundle=bundle, method="single-agent")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    series = reader.Execute()
    out = sitk.ReadImage(str(written))
    assert out.GetSize() == series.GetSize()
    np.testing.assert_allclose(out.GetSpacing(), series.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(out.GetOrigin(), series.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(out.GetDirection(), series.GetDirection(), atol=1e-5)


PROGRESS_LINE = re.compile(r"^segmenting long\.nii\.gz: scan 1 of 1, (.+) (\d+) of 40, \d+:\d\d:\d\d elapsed$")


def test_segment_shows_progress_per_slice_batch_in_a_log_and_keeps_the_mask(tmp_path, trained):
    """A volume longer than one batch: stderr (not a terminal) shows each stage's slices batch by batch, in order,
    counts rising to the last slice; the mask is the one a run without progress writes."""
    bundle, data = trained
    small = tmp_path / "bundle"
    shutil.copytree(bundle, small)
    config = small / "configs" / "inference.yaml"
    text = config.read_text()
    anchor = "  slice_threshold: 0.5 "
    assert anchor in text
    config.write_text(text.replace(anchor, "  batch_size: 16  # games at once: 3 batches\n" + anchor))
    source = sitk.ReadImage(str(data / "p0" / "t2.nii.gz"))  # 10 slices -> 40: more than a Grad-CAM++ batch (32)
    long = sitk.GetImageFromArray(np.concatenate([sitk.GetArrayFromImage(source)] * 4))
    long.SetSpacing(source.GetSpacing())
    long.SetOrigin(source.GetOrigin())
    long.SetDirection(source.GetDirection())
    scan = tmp_path / "long.nii.gz"
    sitk.WriteImage(long, str(scan))

    result = CliRunner().invoke(
        app, ["segment", str(scan), "-o", str(tmp_path / "with.nii.gz"), "--bundle", str(small)]
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    counts: dict[str, list[int]] = {}
    for match in filter(None, map(PROGRESS_LINE.match, lines)):
        counts.setdefault(match[1], []).append(int(match[2]))
    assert list(counts) == ["scoring slices", "Grad-CAM++ on slices", "encoding slices", "playing slices"], lines
    assert counts["playing slices"] == [16, 32, 40]  # one line per batch of games (3 batches of a tenth or more)
    assert len(counts["Grad-CAM++ on slices"]) > 2  # 2 batches for each of the 3 ensemble members, as one count
    for stage, seen in counts.items():
        assert seen == sorted(set(seen)) and seen[-1] == 40, (stage, seen)
    assert re.match(r"^segmenting long\.nii\.gz: scan 1 of 1, \d+:\d\d:\d\d elapsed$", lines[-1])
    assert len(lines) == sum(map(len, counts.values())) + 1  # nothing else on stderr

    quiet = CliRunner().invoke(
        app, ["segment", str(scan), "-o", str(tmp_path / "quiet.nii.gz"), "--bundle", str(small), "--no-progress"]
    )
    assert quiet.exit_code == 0 and quiet.stderr == ""
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "with.nii.gz")))
    np.testing.assert_array_equal(mask, sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "quiet.nii.gz"))))
    assert mask.any()  # a mask to compare, not an empty one
    untold = Segmenter(small).predict(scan)  # no progress callable at all, as under MONAI's evaluator
    np.testing.assert_array_equal(mask, untold.transpose(2, 1, 0).astype(mask.dtype))


def test_segment_refuses_bad_input_in_one_line(tmp_path, trained):
    bundle, _ = trained
    bad = tmp_path / "bad.nii.gz"
    bad.write_text("not an image")
    runner = CliRunner()
    result = runner.invoke(
        app, ["segment", str(bad), "-o", str(tmp_path / "o.nii.gz"), "--bundle", str(bundle), "--no-progress"]
    )
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"error: {bad}:") and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.nii.gz").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.nii.gz"]
    with pytest.raises(MedwssError, match="overwrite an input"):
        api.segment([bad], bad, bundle=bundle)


def test_untrained_bundle_is_a_user_error(tmp_path):
    bundle = tiny_bundle(tmp_path)
    scan = write_tiny_prostate(tmp_path / "d", patients=1) / "p0" / "t2.nii.gz"
    with pytest.raises(MedwssError, match="no trained weights"):
        api.segment([scan], tmp_path / "m.nii.gz", bundle=bundle, method="rlsp")


def test_replay_draws_one_game_and_refuses_a_bad_slice(tmp_path, trained):
    bundle, data = trained
    scan = data / "p3" / "t2.nii.gz"
    out = api.replay(scan, 4, tmp_path / "replay.png", bundle=bundle)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000
    runner = CliRunner()
    result = runner.invoke(
        app, ["replay", str(scan), "--slice", "99", "-o", str(tmp_path / "r2.png"), "--bundle", str(bundle)]
    )
    assert result.exit_code == 2 and "slice 99 is outside the scan" in result.stderr
    assert not (tmp_path / "r2.png").exists()


def test_inferer_opponent_self_plays_the_agent_against_itself(trained):
    """``inferer#opponent: self`` gives agent a's patches from games against the bundle's agent; the default (none)
    stays the solo game, and an unknown opponent is refused when the config is built."""
    from medwss.data.transforms import process_volume
    from medwss.inference.inferer import SelfPlayInferer
    from medwss.selfplay.rollout import play_against, play_alone

    bundle, data = trained
    each_slice = {"inferer#volume_stop": {}}  # the volume stop agrees the solo game's own stops only
    solo, versus = Segmenter(bundle, overrides=each_slice), Segmenter(bundle, overrides={**each_slice,
                                                                                    "inferer#opponent": "self"})
    assert solo.inferer.opponent == "none" and versus.inferer.opponent == "self"
    processed = process_volume({"image": str(data / "p0" / "t2.nii.gz")}, versus.preprocessing)
    slices, region = versus.inferer.slices_and_region(torch.as_tensor(processed["image"]))
    scored = versus.inferer.scorer.score(slices, region)
    base = versus.inferer.agent_base(slices, scored, versus.network)
    args = (versus.network, slices, scored.scores, scored.region, versus.inferer.rules)
    expected = play_against(*args, base=base, stopping=versus.inferer.stopping)
    assert torch.equal(versus.inferer.play(*args[1:4], versus.network, lambda agent: base), expected)
    alone = play_alone(*args, base=base, stopping=solo.inferer.stopping)
    assert torch.equal(solo.inferer.play(*args[1:4], solo.network, lambda agent: base), alone)
    mask = versus.predict(data / "p0" / "t2.nii.gz")
    assert mask.shape == solo.predict(data / "p0" / "t2.nii.gz").shape and mask.dtype == bool
    with pytest.raises(ValueError, match="opponent"):
        SelfPlayInferer(solo.inferer.detector, solo.inferer.rules, opponent="pool")
    with pytest.raises(ValueError, match="volume_stop"):
        SelfPlayInferer(solo.inferer.detector, solo.inferer.rules, opponent="self", stopping="quantile",
                        volume_stop={"count_width": 3})


def test_inferer_volume_stop_agrees_the_agents_counts_along_the_volume(trained):
    """The shipped ``inferer#volume_stop``: the mask is the agent's ranking cut at the counts agreed along the
    volume (``play_volume_stop`` with the slice gate), slices below the gate are empty, and ``{}`` turns it off
    (each slice's own quantile stop, ``play_alone``)."""
    from medwss.data.transforms import process_volume
    from medwss.inference.volume_stop import VolumeStop, play_volume_stop
    from medwss.selfplay.rollout import play_alone

    bundle, data = trained
    shipped, alone = Segmenter(bundle), Segmenter(bundle, overrides={"inferer#volume_stop": {}})
    assert shipped.inferer.volume_stop == VolumeStop(5, 0.0, True) and not alone.inferer.volume_stop.active
    processed = process_volume({"image": str(data / "p0" / "t2.nii.gz")}, shipped.preprocessing)
    slices, region = shipped.inferer.slices_and_region(torch.as_tensor(processed["image"]))
    scored = shipped.inferer.scorer.score(slices, region)
    cut = float(scored.gate.median())  # a gate that turns some slices off, whatever the tiny detector learnt
    volume = Segmenter(bundle, overrides={"inferer#volume_stop": {"count_width": 5, "gate": cut, "one_run": True}})
    inferer = volume.inferer
    assert 0 < int((scored.gate < cut).sum()) < len(slices)
    base = inferer.agent_base(slices, scored, volume.network)
    args = (slices, scored.scores, scored.region, volume.network, lambda agent: base)
    expected = play_volume_stop(volume.network, base, scored.scores, scored.region, inferer.rules,
                                stop_quantile=inferer.stop_quantile, volume_stop=inferer.volume_stop, gate=scored.gate)
    assert torch.equal(inferer.play(*args, gate=scored.gate), expected)
    assert not expected[scored.gate < cut].any()
    with pytest.raises(ValueError, match="slice gate"):
        inferer.play(*args)  # the volume stop never guesses a missing gate
    own = play_alone(volume.network, slices, scored.scores, scored.region, inferer.rules, base=base,
                     stopping="quantile", stop_quantile=alone.inferer.stop_quantile)
    assert torch.equal(alone.inferer.play(*args), own)
    assert volume.predict(data / "p0" / "t2.nii.gz").shape == alone.predict(data / "p0" / "t2.nii.gz").shape
    # Several volumes' slices at once (the refine stage's training slices): ``groups`` keeps each volume's own
    # longest run. Two "volumes" here, the second's first slice gated out: one run for all would drop the second.
    half = len(slices) // 2
    split = torch.ones(len(slices))
    split[half] = 0.0
    names = ["a"] * half + ["b"] * (len(slices) - half)
    grouped = inferer.play(*args, gate=split, groups=names)
    each = [inferer.play(slices[r], scored.scores[r], scored.region[r], volume.network, lambda agent, r=r: base[r],
                         gate=split[r]) for r in (slice(0, half), slice(half, None))]  # fmt: skip
    assert torch.equal(grouped, torch.cat(each))
    assert grouped[half + 1 :].any() and not inferer.play(*args, gate=split)[half + 1 :].any()


def test_inferer_threshold_stop_takes_its_level_and_a_volume_stop(trained):
    """``inferer#stopping: threshold`` at ``inferer#stop_level`` is the solo game stopped at that fraction of the
    ROI threshold; with a ``volume_stop`` its counts are agreed along the volume (``play_volume_stop``); a level
    that is not a positive number is refused when the config is built."""
    from medwss.data.transforms import process_volume
    from medwss.inference.inferer import SelfPlayInferer
    from medwss.inference.volume_stop import median_along_slices, play_volume_stop
    from medwss.selfplay.rollout import play_alone

    bundle, data = trained
    options = {"inferer#stopping": "threshold", "inferer#stop_level": 0.5}
    solo = Segmenter(bundle, overrides={**options, "inferer#volume_stop": {}})
    volume = Segmenter(bundle, overrides={**options, "inferer#volume_stop": {"count_width": 3}})
    assert solo.inferer.stop_level == 0.5
    processed = process_volume({"image": str(data / "p0" / "t2.nii.gz")}, solo.preprocessing)
    slices, region = solo.inferer.slices_and_region(torch.as_tensor(processed["image"]))
    scored = solo.inferer.scorer.score(slices, region)
    base = solo.inferer.agent_base(slices, scored, solo.network)
    rules = solo.inferer.rules
    args = (slices, scored.scores, scored.region, solo.network, lambda agent: base)
    expected = play_alone(solo.network, None, scored.scores, scored.region, rules, base=base, stopping="threshold",
                          stop_level=0.5)  # fmt: skip
    assert torch.equal(solo.inferer.play(*args), expected) and expected.any()
    agreed = play_volume_stop(solo.network, base, scored.scores, scored.region, rules, stop_quantile=0.5,
                              volume_stop=volume.inferer.volume_stop, gate=None, stopping="threshold", stop_level=0.5)
    assert torch.equal(volume.inferer.play(*args), agreed)
    assert torch.equal(agreed.flatten(1).sum(1), median_along_slices(expected.flatten(1).sum(1), 3))
    for bad in (0.0, -1.0, "high", True):
        with pytest.raises(ValueError, match="stop_level"):
            SelfPlayInferer(solo.inferer.detector, rules, stopping="threshold", stop_level=bad)


@pytest.mark.slow
def test_monai_bundle_run_segments_a_folder_like_medwss_segment(tmp_path, trained):
    """`python -m monai.bundle run` with the bundle's inference.yaml writes the same masks as `medwss segment`."""
    import subprocess
    import sys

    bundle, data = trained
    scans = tmp_path / "scans"
    scans.mkdir()
    for patient in ("p0", "p1"):
        (scans / f"{patient}.nii.gz").write_bytes((data / patient / "t2.nii.gz").read_bytes())
    out = tmp_path / "bundle_run"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.yaml"),
           "--bundle_root", str(bundle), "--dataset_dir", str(scans), "--output_dir", str(out), "--method", "rlsp"]
    # in the bundle folder, as MONAI's model zoo runs bundles: MONAI reads the %models/... includes from there
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, cwd=bundle)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = api.segment([scans], tmp_path / "medwss", bundle=bundle, method="rlsp")
    assert sorted(p.name for p in out.iterdir()) == ["p0.nii.gz", "p1.nii.gz"]
    for mine in expected:
        theirs = out / mine.name
        _same_geometry(scans / mine.name, theirs)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(theirs))),
                                      sitk.GetArrayFromImage(sitk.ReadImage(str(mine))))


LIVER = __import__("pathlib").Path(__file__).resolve().parents[2] / "../shared/data/liver"


@pytest.mark.realdata
@pytest.mark.skipif(not LIVER.is_dir(), reason=f"real data folder {LIVER} not found")
def test_shipped_liver_bundle_keeps_its_mask_inside_the_prior_on_the_scan_grid(tmp_path):
    """The organ prior bounds the mask on the original 512 x 512 grid, not only on the 128 x 128 working grid."""
    from pathlib import Path

    scan = LIVER / "imagesTr" / "ircadb01_01.nii.gz"
    prior = LIVER / "labelsTr" / "ircadb01_01" / "liver.nii.gz"
    bundle = Path(__file__).resolve().parents[2] / "bundles" / "liver_tumour"
    (out,) = api.segment([scan], tmp_path / "tumour.nii.gz", bundle=bundle, method="rlsp", roi_mask=prior)
    _same_geometry(scan, out)
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(prior))) > 0
    assert mask.any() and not (mask & ~liver).any()


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.skipif(not LIVER.is_dir(), reason=f"real data folder {LIVER} not found")
def test_liver_bundle_with_a_prior_gives_one_mask_by_every_route(tmp_path):
    """`medwss segment --roi-mask` and `python -m monai.bundle run --prior_dir` give the same mask, voxel for voxel,
    on the scan's grid: one preprocessing and one postprocessing (``ClipToPriord``) for both. (MONAI Label wraps the
    same Segmenter; tests/label checks it against `medwss segment` on this scan and prior.)"""
    import subprocess
    import sys
    from pathlib import Path

    bundle = Path(__file__).resolve().parents[2] / "bundles" / "liver_tumour"
    scans, priors, out = tmp_path / "scans", tmp_path / "priors", tmp_path / "bundle_run"
    scans.mkdir(), priors.mkdir()
    # 16 full-size slices through the tumours of IRCADb 01 (512 x 512: the working grid's clip alone would leak)
    for source, target in ((LIVER / "imagesTr" / "ircadb01_01.nii.gz", scans),
                           (LIVER / "labelsTr" / "ircadb01_01" / "liver.nii.gz", priors)):  # fmt: skip
        sitk.WriteImage(sitk.ReadImage(str(source))[:, :, 60:76], str(target / "ircadb01_01.nii.gz"))
    scan, prior = scans / "ircadb01_01.nii.gz", priors / "ircadb01_01.nii.gz"

    cli = tmp_path / "cli.nii.gz"
    result = CliRunner().invoke(
        app, ["segment", str(scan), "-o", str(cli), "--bundle", str(bundle), "--roi-mask", str(prior), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "configs/inference.yaml", "--bundle_root",
           str(bundle), "--dataset_dir", str(scans), "--prior_dir", str(priors), "--output_dir", str(out)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False, cwd=bundle)
    assert done.returncode == 0, done.stderr[-2000:]

    _same_geometry(scan, out / "ircadb01_01.nii.gz")
    _same_geometry(scan, cli)
    mine = sitk.GetArrayFromImage(sitk.ReadImage(str(cli)))
    theirs = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "ircadb01_01.nii.gz")))
    np.testing.assert_array_equal(theirs, mine)
    liver = sitk.GetArrayFromImage(sitk.ReadImage(str(prior))) > 0
    assert mine.any() and not (mine.astype(bool) & ~liver).any()


def test_inferer_smooth_blurs_the_agents_mask_and_a_bad_setting_is_one_line(tmp_path, trained):
    """``inferer#smooth``: the agent's patch mask of the volume blurred and thresholded (``MaskSmoothing`` at the
    bundle's grid), then clipped to the region (smoothing may round a mask out past it); ``{}`` leaves the patch
    mask; a bad setting stops ``medwss segment`` in one line with exit code 2 and no file."""
    from medwss.data.transforms import process_volume
    from medwss.inference.mask_smoothing import MaskSmoothing

    bundle, data = trained
    setting = {"sigma": 1.0, "sigma_slices": 1.0, "threshold": 0.3}
    off = Segmenter(bundle, overrides={"inferer#smooth": {}})
    on = Segmenter(bundle, overrides={"inferer#smooth": setting})
    assert not off.inferer.smooth.active and on.inferer.smooth == MaskSmoothing(**setting)
    processed = process_volume({"image": str(data / "p0" / "t2.nii.gz")}, on.preprocessing)
    slices, region = on.inferer.slices_and_region(torch.as_tensor(processed["image"]))
    plain = off.inferer.method_masks(slices, None, off.network)
    assert plain.any()
    smoothed = on.inferer.method_masks(slices, None, on.network)
    assert torch.equal(smoothed, MaskSmoothing(**setting)(plain, on.inferer.rules.grid_size))
    assert not torch.equal(smoothed, plain)
    clipped = on.inferer.method_masks(slices, region, on.network)
    assert clipped.any() and not (clipped & ~region).any()  # the region clips the smoothed mask, never widens it

    copy = tmp_path / "bad_bundle"
    shutil.copytree(bundle, copy)
    config = copy / "configs" / "inference.yaml"
    text = config.read_text()
    line = next(x for x in text.splitlines() if x.startswith("    threshold: "))  # the one 4-space threshold: smooth's
    config.write_text(text.replace(line, "    threshold: 1.5", 1))
    scan, out = data / "p0" / "t2.nii.gz", tmp_path / "m.nii.gz"
    result = CliRunner().invoke(app, ["segment", str(scan), "-o", str(out), "--bundle", str(copy), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "smooth threshold must lie in (0, 1)" in result.stderr
    assert not out.exists()
