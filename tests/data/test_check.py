"""Data set check: clean data passes; every bad input is one problem line, and the check goes on past the first."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from medwss.data.check import check_path
from medwss.data.datalist import DatasetSpec
from medwss.data.manifest import manifest_from_masks, write_manifest
from medwss.errors import MedwssError
from tests.data.dataset_fixtures import (
    IRCADB_SPEC,
    ORIGIN,
    P158_SPEC,
    SHAPE,
    draw,
    garbage,
    mr_image,
    write_ircadb,
    write_msd,
    write_nifti,
    write_prostate158,
    write_spec,
)

BUILDERS = {
    "msd": lambda base: write_msd(base, "msd"),
    "nnunet_v2": lambda base: write_msd(base, "v2"),
    "ircadb": write_ircadb,
    "prostate158": write_prostate158,
}
SHIFTED = (ORIGIN[0], ORIGIN[1], ORIGIN[2] + 4.0)


def _problems(report) -> list[tuple[str, str]]:
    return [(p.path, p.problem) for p in report.problems or []]


@pytest.mark.parametrize("layout", list(BUILDERS))
def test_clean_data_set_is_ok(tmp_path, layout):
    data = BUILDERS[layout](tmp_path)
    totals, steps = [], []
    report = check_path(data.root, data.spec, progress=steps.append, on_total=totals.append)
    assert report.ok and report.problems == [], _problems(report)
    assert report.kind == "data set" and report.items == len(data.expected)
    assert totals == [len(data.expected)] and steps == [1] * len(data.expected)
    assert f"{len(data.expected)} cases of" in report.summary


def test_clean_summary_counts_cases_with_each_class(tmp_path):
    data = write_ircadb(tmp_path)
    report = check_path(data.root, data.spec)
    assert report.summary == "2 cases of ircadb_tiny (CT); tumour in 1/2 cases"
    data = write_prostate158(tmp_path)
    assert check_path(data.root, data.spec).summary.endswith("gland in 3/3 cases, pz in 2/3 cases")


def test_dataset_json_path_checks_its_folder(tmp_path):
    data = write_msd(tmp_path, "msd")
    assert check_path(data.files["dataset.json"]).ok


# One broken thing per case; (file key, what to do to it, expected problem) ------------------------------------------
def _4d(path):
    write_nifti(path, np.stack([mr_image(0), mr_image(1)], axis=-1))


def _nan(path):
    image = mr_image(0)
    image[1, 2, 3] = np.nan
    write_nifti(path, image)


BREAKAGES = {
    "unreadable image": ("image", garbage, r"unreadable or not an image"),
    "4D image": ("image", _4d, r"4D image where a 3D volume is expected"),
    "NaN voxels": ("image", _nan, r"1 NaN/Inf voxels"),
    "constant image": ("image", lambda p: write_nifti(p, np.zeros(SHAPE, np.float32)), r"constant image"),
    "label geometry": ("label", lambda p: write_nifti(p, draw([1]), origin=SHIFTED), r"label does not match its image"),
    "label size": ("label", lambda p: write_nifti(p, np.zeros((8, 8, 5), np.uint8)), r"label does not match.*size"),
    "unreadable label": ("label", garbage, r"unreadable or not an image"),
    "missing label": ("label", lambda p: p.unlink(), r"no label file for class 'gland'"),
    "non-integer label": ("label", lambda p: write_nifti(p, draw([1]) * 0.5), r"non-integer values"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_each_bad_input_is_one_problem(tmp_path, breakage):
    key, breaks, match = BREAKAGES[breakage]
    data = write_prostate158(tmp_path)
    broken = data.files[f"020/{key}"]
    breaks(broken)
    report = check_path(data.root, data.spec)
    assert not report.ok
    [(path, problem)] = _problems(report)  # one problem, even though two classes read the label map
    assert path == str(broken)
    assert re.search(match, problem), problem


def test_check_goes_on_past_the_first_problem(tmp_path):
    zones = {f"{i:03d}": {1: [1, 2], 2: [2, 3]} for i in range(1, len(BREAKAGES) + 2)}
    data = write_prostate158(tmp_path, zones=zones)
    expected = []
    for case, (breakage, (key, breaks, match)) in zip(list(zones)[1:], BREAKAGES.items(), strict=True):
        breaks(data.files[f"{case}/{key}"])
        expected.append((str(data.files[f"{case}/{key}"]), match, breakage))
    report = check_path(data.root, data.spec)
    problems = _problems(report)
    assert len(problems) == len(BREAKAGES), problems
    # Discovery problems (a missing label) come first, then the cases in order.
    for path, match, breakage in expected:
        [found] = [problem for p, problem in problems if p == path]
        assert re.search(match, found), (breakage, found)
    assert report.items == len(zones) - 1  # the case with no label file cannot be read further


def test_msd_missing_image_and_undeclared_label_values(tmp_path):
    data = write_msd(tmp_path, "msd")
    data.files["prostate_00/image"].unlink()
    label = draw([1], 3, draw([2], 1))
    write_nifti(data.files["prostate_01/label"], label)
    report = check_path(data.root)
    assert _problems(report) == [
        (str(data.files["prostate_00/image"]), "file not found"),
        # PZ and TZ both read this file: the problem is reported once.
        (str(data.files["prostate_01/label"]), "label values [3] are not declared in dataset.json"),
    ]


def test_msd_label_geometry_reported_once_for_two_classes(tmp_path):
    data = write_msd(tmp_path, "v2")
    write_nifti(data.files["prostate_01/label"], draw([1]), spacing=(0.9, 0.8, 2.0))
    [(path, problem)] = _problems(check_path(data.root))
    assert path == str(data.files["prostate_01/label"]) and "spacing" in problem


def test_ct_data_that_is_not_hounsfield(tmp_path):
    data = write_ircadb(tmp_path)
    scaled = np.random.default_rng(0).uniform(0.0, 1.0, SHAPE).astype(np.float32)
    write_nifti(data.files["irc_07/image"], scaled)
    [(path, problem)] = _problems(check_path(data.root, data.spec))
    assert path == str(data.files["irc_07/image"]) and "do not look like CT Hounsfield units" in problem
    # The same values are fine for MR, where intensities have no units.
    spec = write_spec(tmp_path / "mr.yaml", {**IRCADB_SPEC, "modality": "MR", "preset": "mr"})
    assert check_path(data.root, spec).ok
    # A CT intensity preset needs HU whatever the modality says.
    spec = write_spec(tmp_path / "mr_ct.yaml", {**IRCADB_SPEC, "modality": "MR", "preset": "ct_liver"})
    assert len(check_path(data.root, spec).problems) == 1


def test_prior_problems(tmp_path):
    data = write_ircadb(tmp_path)
    write_nifti(data.files["irc_01/liver"], np.zeros(SHAPE, np.uint8))
    write_nifti(data.files["irc_07/liver"], draw([1]), origin=SHIFTED)
    problems = _problems(check_path(data.root, data.spec))
    assert [p for p, _ in problems] == [str(data.files["irc_01/liver"]), str(data.files["irc_07/liver"])]
    assert problems[0][1] == "organ prior mask is empty" and "origin" in problems[1][1]


def test_missing_prior_and_exclusion_problems(tmp_path):
    data = write_ircadb(tmp_path)
    data.files["irc_07/liver"].unlink()
    garbage(data.files["irc_01/cyst"])
    problems = _problems(check_path(data.root, data.spec))
    assert problems[0] == (str(data.files["irc_07/liver"]), "organ prior mask not found")
    assert problems[1][0] == str(data.files["irc_01/cyst"]) and len(problems) == 2


def test_discovery_failure_is_one_problem(tmp_path):
    data = write_prostate158(tmp_path)
    spec = write_spec(tmp_path / "t1.yaml", {**P158_SPEC, "image": "{case}/t1.nii.gz"})
    [(path, problem)] = _problems(check_path(data.root, spec))
    assert path == str(data.root) and "no image matches" in problem


# Manifests -------------------------------------------------------------------------------------------------------
def _manifest(tmp_path, data, name="weak.csv"):
    manifest = manifest_from_masks(data.root, DatasetSpec.load(data.spec) if data.spec else None)
    return write_manifest(manifest, tmp_path / "labels" / name)


@pytest.mark.parametrize("name", ["weak.csv", "weak.json"])
def test_clean_manifest_is_ok(tmp_path, name):
    data = write_ircadb(tmp_path)
    path = _manifest(tmp_path, data, name)
    report = check_path(path, data.spec)
    assert report.ok, _problems(report)
    assert report.kind == "manifest" and report.items == 2
    assert report.summary == "2 images, 2 patients; tumour: 3 present / 9 absent slices"


def test_manifest_problems_each_one_line(tmp_path):
    data = write_prostate158(tmp_path)
    path = tmp_path / "weak.csv"
    root = data.root.name
    path.write_text(
        "image,slice,class,present\n"
        f"{root}/001/t2.nii.gz,0,gland,1\n"
        f"{root}/001/t2.nii.gz,10,gland,1\n"  # the image has 6 slices
        f"{root}/999/t2.nii.gz,0,gland,1\n"  # no such image
        f"{root}/020/t2.nii.gz,0,lesion,1\n"  # not a class of the spec
        f"{root}/021/t2.nii.gz,0,gland,0\n"
    )
    report = check_path(path, data.spec)
    assert _problems(report) == [
        (str(path), "class 'lesion' is not declared (gland, pz)"),
        (str(path), "t2.nii.gz: class 'gland' names slices [10] but the image has 6 slices"),
        (str(tmp_path / root / "999" / "t2.nii.gz"), "file not found"),
    ]
    assert report.items == 4  # every image was read, past the first problem


def test_manifest_ct_values_prior_and_bad_rows(tmp_path):
    data = write_ircadb(tmp_path)
    path = _manifest(tmp_path, data, "weak.json")
    write_nifti(data.files["irc_01/image"], np.random.default_rng(0).uniform(0, 1, SHAPE).astype(np.float32))
    write_nifti(data.files["irc_07/liver"], draw([1]), origin=SHIFTED)
    problems = _problems(check_path(path, data.spec))
    assert [p for p, _ in problems] == [str(data.files["irc_01/image"]), str(data.files["irc_07/liver"])]
    assert "Hounsfield" in problems[0][1] and "origin" in problems[1][1]
    # Without a CT spec the values are not judged.
    assert [p for p, _ in _problems(check_path(path))] == [str(data.files["irc_07/liver"])]

    path.write_text(json.dumps({"training": [{"image": "x.nii.gz", "presence": {"tumour": [0, 5]}}]}))
    [(where, problem)] = _problems(check_path(path))
    assert where == str(path) and problem.startswith("training[0] class 'tumour'")


# Single volumes and paths that are nothing -----------------------------------------------------------------------
def test_single_volume(tmp_path):
    good = write_nifti(tmp_path / "good.nii.gz", mr_image(0))
    report = check_path(good)
    assert report.ok and report.kind == "volume" and report.items == 1
    bad = write_nifti(tmp_path / "bad.nii.gz", np.stack([mr_image(0)] * 3, axis=-1))
    [(path, problem)] = _problems(check_path(bad))
    assert path == str(bad) and problem.startswith("4D image")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda tmp: tmp / "nothing_here", "file not found"),
        (lambda tmp: tmp, "not a data set"),
        (lambda tmp: (tmp / "notes.txt").write_text("x") and tmp / "notes.txt", "not a manifest"),
    ],
)
def test_paths_that_cannot_be_checked_raise(tmp_path, make, match):
    with pytest.raises(MedwssError, match=match):
        check_path(make(tmp_path))


def test_bad_spec_raises(tmp_path):
    data = write_prostate158(tmp_path)
    spec = write_spec(tmp_path / "bad.yaml", {**P158_SPEC, "colour": "red"})
    with pytest.raises(MedwssError, match="unknown dataset spec keys: colour") as err:
        check_path(data.root, spec)
    assert err.value.path == str(spec)
