"""Weak-label manifests: presence from masks, CSV/JSON round trips, unlabelled slices, bad rows, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medwss.data import manifest as manifest_module
from medwss.data.datalist import DatasetSpec
from medwss.data.manifest import LabelledImage, Manifest, manifest_from_masks, read_manifest, write_manifest
from medwss.errors import MedwssError
from tests.data.dataset_fixtures import (
    IRCADB_SPEC,
    IRCADB_TUMOUR_SLICES_WITHOUT_EXCLUSION,
    presence,
    write_ircadb,
    write_msd,
    write_prostate158,
)

BUILDERS = {
    "msd": lambda base: write_msd(base, "msd"),
    "nnunet_v2": lambda base: write_msd(base, "v2"),
    "ircadb": write_ircadb,
    "prostate158": write_prostate158,
}


def _from_masks(data, progress=None) -> Manifest:
    return manifest_from_masks(data.root, DatasetSpec.load(data.spec) if data.spec else None, progress=progress)


@pytest.mark.parametrize("layout", list(BUILDERS))
def test_manifest_from_masks_per_slice_presence(tmp_path, layout):
    data = BUILDERS[layout](tmp_path)
    calls = []
    manifest = _from_masks(data, progress=calls.append)
    assert manifest.classes == data.classes
    assert [item.case for item in manifest.images] == list(data.expected)
    assert calls == [1] * len(data.expected)
    for item in manifest.images:
        assert item.patient == data.patients[item.case] and item.num_slices == 6
        for name in manifest.classes:
            np.testing.assert_array_equal(item.presence[name], data.expected[item.case][name], err_msg=name)


def test_zonal_rule_gland_is_any_zone(tmp_path):
    # 001: TZ (1) on z 1-3, PZ (2) on z 2-4 -> gland on 1-4; 020: TZ only; 021: PZ only.
    manifest = _from_masks(write_prostate158(tmp_path))
    gland = {item.case: item.presence["gland"].tolist() for item in manifest.images}
    assert gland == {"001": [0, 1, 1, 1, 1, 0], "020": [1, 1, 1, 0, 0, 0], "021": [0, 0, 0, 1, 1, 1]}
    assert manifest.counts() == {"gland": (10, 8), "pz": (6, 12)}


def test_ircadb_union_with_cyst_excluded(tmp_path):
    data = write_ircadb(tmp_path)
    items = {item.case: item for item in _from_masks(data).images}
    # z 0: cyst only (cyst file); z 5: the tumour file's voxels there are all cyst -> both absent.
    assert items["irc_01"].presence["tumour"].tolist() == [0, 1, 0, 1, 1, 0]
    assert items["irc_07"].presence["tumour"].tolist() == [0] * 6  # no tumour file, tumor_not_liver not counted
    assert items["irc_01"].prior == data.files["irc_01/liver"]

    no_exclusion = {**IRCADB_SPEC, "classes": {"tumour": {**IRCADB_SPEC["classes"]["tumour"], "exclude": []}}}
    data = write_ircadb(tmp_path / "again", spec=no_exclusion)
    items = {item.case: item for item in _from_masks(data).images}
    assert items["irc_01"].presence["tumour"].tolist() == presence(
        IRCADB_TUMOUR_SLICES_WITHOUT_EXCLUSION["irc_01"]
    ).tolist()


def _assert_same(read: Manifest, written: Manifest) -> None:
    assert read.classes == written.classes
    assert len(read.images) == len(written.images)
    for a, b in zip(read.images, written.images, strict=True):
        assert a.image.resolve() == b.image.resolve()
        assert (a.case, a.patient) == (b.case, b.patient)
        assert (a.prior.resolve() if a.prior else None) == (b.prior.resolve() if b.prior else None)
        assert a.presence.keys() == b.presence.keys()
        for name in a.presence:
            np.testing.assert_array_equal(a.presence[name], b.presence[name])


@pytest.mark.parametrize("suffix", [".csv", ".json"])
@pytest.mark.parametrize("where", ["beside", "elsewhere"])
def test_round_trip_relative_paths(tmp_path, monkeypatch, suffix, where):
    data = write_ircadb(tmp_path / "data")
    manifest = _from_masks(data)
    out = (data.root if where == "beside" else tmp_path / "runs" / "deep" / "labels") / f"weak{suffix}"
    write_manifest(manifest, out)
    text = out.read_text()
    assert str(tmp_path) not in text  # paths are relative to the manifest's folder
    if where == "elsewhere":
        assert "../" in text
    monkeypatch.chdir(tmp_path / "data" / "liver" / "labelsTr")  # relative paths must not depend on the cwd
    read = read_manifest(out)
    _assert_same(read, manifest)
    assert all(item.image.is_file() and item.prior.is_file() for item in read.images)


def _hand_made(tmp_path: Path) -> Manifest:
    nan = np.nan
    return Manifest(
        ["gland", "pz"],
        [
            LabelledImage(tmp_path / "a.nii.gz", "a", "p1", {"gland": np.array([0, 1, nan, 1, nan]),
                                                               "pz": np.array([nan, 0, 1, nan, nan])}),
            LabelledImage(tmp_path / "b" / "b.nii.gz", "b", "p1", {"gland": np.array([nan, nan]),
                                                                  "pz": np.array([nan, nan])},
                          prior=tmp_path / "b" / "prior.nii.gz"),
            LabelledImage(tmp_path / "c.nii.gz", "c", "p2", {"gland": np.array([1.0, 0.0, 0.0])}),
        ],
    )


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_unlabelled_slices_survive(tmp_path, suffix):
    manifest = _hand_made(tmp_path)
    out = write_manifest(manifest, tmp_path / "out" / f"m{suffix}")
    read = read_manifest(out)
    _assert_same(read, manifest)  # nan in the middle, trailing nans, and an image with no labelled slice at all
    assert read.counts() == {"gland": (3, 3), "pz": (1, 1)}
    assert read.patients() == ["p1", "p2"]


def test_csv_minimal_columns(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("image,slice,class,present\nimg/x.nii.gz,2,gland,1\nimg/x.nii.gz,0,gland,0\n"
                    "./img/x.nii.gz,1,gland,\n")
    manifest = read_manifest(path)
    assert manifest.classes == ["gland"] and len(manifest.images) == 1  # ./img/x and img/x are one image
    item = manifest.images[0]
    assert (item.case, item.patient, item.prior) == ("x", "x", None)
    assert item.image == tmp_path / "img" / "x.nii.gz"
    np.testing.assert_array_equal(item.presence["gland"], [0, np.nan, 1])


def test_csv_with_byte_order_mark_and_spaces(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes("\ufeffimage, slice ,class,present\n/abs/x.nii.gz,0,gland,1\n".encode())
    item = read_manifest(path).images[0]
    assert item.image == Path("/abs/x.nii.gz") and item.presence["gland"].tolist() == [1.0]


HEADER = "image,slice,class,present\n"
GOOD = "a.nii.gz,0,gland,1\n"


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("image,slice,class\na.nii.gz,0,gland\n", "missing columns: present"),
        ("", "missing columns: image, slice, class, present"),
        (HEADER + GOOD + "a.nii.gz,x,gland,1\n", "row 3: slice 'x' is not an integer"),
        (HEADER + GOOD + "a.nii.gz,1.5,gland,1\n", "row 3: slice '1.5' is not an integer"),
        (HEADER + GOOD + "a.nii.gz,-1,gland,1\n", "row 3: slice -1 is negative"),
        (HEADER + GOOD + "a.nii.gz,1,gland,2\n", "row 3: present must be 0, 1 or empty"),
        (HEADER + GOOD + "a.nii.gz,1,gland,yes\n", "row 3: present must be 0, 1 or empty"),
        (HEADER + GOOD + "a.nii.gz,1,,1\n", "row 3: empty class"),
        (HEADER + GOOD + " ,1,gland,1\n", "row 3: empty image"),
        (HEADER + GOOD + "a.nii.gz,1\n", "row 3: no value for class, present"),
        (HEADER + GOOD + "a.nii.gz,0,gland,0\n", "row 3: slice 0 of class 'gland' of a.nii.gz given twice"),
    ],
)
def test_bad_csv_rows(tmp_path, body, match):
    path = tmp_path / "bad.csv"
    path.write_text(body)
    with pytest.raises(MedwssError, match=match) as err:
        read_manifest(path)
    assert err.value.path == str(path)


def test_csv_repeated_identical_row_is_fine(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER + GOOD + GOOD)
    assert read_manifest(path).images[0].presence["gland"].tolist() == [1.0]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ("{not json", "not valid JSON"),
        ({"classes": ["gland"]}, "needs a 'training' list"),
        ([1, 2], "needs a 'training' list"),
        ({"training": [{"image": "a.nii.gz"}]}, r"training\[0\]: needs 'image' and a 'presence' mapping"),
        ({"training": [{"presence": {"gland": [1]}}]}, r"training\[0\]: needs 'image'"),
        ({"training": [{"image": "a", "presence": {"g": [1]}}, {"image": "b", "presence": {"g": [0, 2]}}]},
         r"training\[1\] class 'g': presence must be a list of 0, 1 or null"),
        ({"training": [{"image": "a", "presence": {"g": 1}}]}, r"training\[0\] class 'g'"),
        ({"training": [{"image": "a", "presence": {"g": ["yes"]}}]}, r"training\[0\] class 'g'"),
        ({"training": [{"image": "a", "presence": {"g": [[1, 0]]}}]}, r"training\[0\] class 'g'"),
        ({"classes": "gland", "training": []}, "'classes' must be a list"),
    ],
)
def test_bad_json(tmp_path, data, match):
    path = tmp_path / "bad.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    with pytest.raises(MedwssError, match=match) as err:
        read_manifest(path)
    assert err.value.path == str(path)


def test_read_missing_or_unknown_kind(tmp_path):
    with pytest.raises(MedwssError, match="manifest not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "m.txt").write_text(HEADER + GOOD)
    with pytest.raises(MedwssError, match=r"\.csv or \.json"):
        read_manifest(tmp_path / "m.txt")


def test_write_bad_suffix_writes_nothing(tmp_path):
    with pytest.raises(MedwssError, match=r"\.csv or \.json"):
        write_manifest(_hand_made(tmp_path), tmp_path / "out" / "m.tsv")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch, suffix):
    out = tmp_path / f"m{suffix}"
    out.write_text("previous content")

    def explode(*args, **kwargs):
        raise RuntimeError("disk full halfway")

    monkeypatch.setattr(manifest_module, "_write_csv" if suffix == ".csv" else "_json_data", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_manifest(_hand_made(tmp_path), out)
    assert out.read_text() == "previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_unwritable_output_is_a_user_error(tmp_path):
    (tmp_path / "a_file").write_text("x")
    out = tmp_path / "a_file" / "m.csv"
    with pytest.raises(MedwssError, match="cannot write") as err:
        write_manifest(_hand_made(tmp_path), out)
    assert err.value.path == str(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_manifest_from_masks_geometry_mismatch(tmp_path):
    from tests.data.dataset_fixtures import ORIGIN, draw, write_nifti

    data = write_prostate158(tmp_path)
    write_nifti(data.files["020/label"], draw([1]), origin=(ORIGIN[0], ORIGIN[1] + 2.0, ORIGIN[2]))
    with pytest.raises(MedwssError, match="label does not match its image: origin") as err:
        _from_masks(data)
    assert err.value.path == str(data.files["020/label"])
