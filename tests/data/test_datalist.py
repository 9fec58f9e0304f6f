"""Data set discovery: MSD (both dataset.json forms), per-structure files, folder per patient, and spec errors."""

from __future__ import annotations

import json

import pytest

from medwss.data.datalist import DatasetSpec, discover_cases
from medwss.data.rules import LabelRule, VoxelTest
from medwss.errors import MedwssError
from tests.data.dataset_fixtures import (
    IRCADB_SPEC,
    P158_SPEC,
    write_ircadb,
    write_msd,
    write_prostate158,
    write_spec,
)


@pytest.mark.parametrize("form", ["msd", "v2"])
def test_discover_msd(tmp_path, form):
    data = write_msd(tmp_path, form)
    spec, cases = discover_cases(data.root)
    assert [c.case for c in cases] == ["prostate_00", "prostate_01"]  # the v2 channel _0001 is not a case
    assert spec.classes == {
        "PZ": LabelRule(("labelsTr/{case}.nii.gz",), VoxelTest("==", (1.0,))),
        "TZ": LabelRule(("labelsTr/{case}.nii.gz",), VoxelTest("==", (2.0,))),
    }
    assert spec.modality == "MR" and spec.preset == "mr"
    for record in cases:
        assert record.image == data.files[f"{record.case}/image"].resolve()
        assert record.patient == record.case and record.prior is None
        assert record.class_files == dict.fromkeys(["PZ", "TZ"], (data.root / "labelsTr" / f"{record.case}.nii.gz",))


def test_discover_msd_ct_modality_and_name(tmp_path):
    data = write_msd(tmp_path, "v2")
    meta = json.loads(data.files["dataset.json"].read_text())
    meta["channel_names"] = {"0": "CT"}
    data.files["dataset.json"].write_text(json.dumps(meta))
    spec, _ = discover_cases(data.root)
    assert (spec.modality, spec.preset, spec.name) == ("CT", "ct_abdomen", "Task05_v2")


def test_discover_msd_with_a_spec_of_rules(tmp_path):
    data = write_msd(tmp_path, "msd")
    spec = DatasetSpec.from_config({"name": "gland", "classes": {"gland": "labelsTr/{case}.nii.gz"}})
    used, cases = discover_cases(data.root, spec)
    assert used is spec and list(used.classes) == ["gland"] and len(cases) == 2


def test_discover_msd_spec_without_classes_keeps_dataset_json_classes(tmp_path):
    data = write_msd(tmp_path, "msd")
    used, cases = discover_cases(data.root, DatasetSpec.from_config({"name": "msd_ct", "modality": "CT"}))
    assert list(used.classes) == ["PZ", "TZ"] and used.modality == "CT" and used.name == "msd_ct"
    assert len(cases) == 2


def test_discover_msd_without_training_list_keeps_four_digit_case_ids(tmp_path):
    # MSD form (no file_ending): a name ending in _0001 is a case id, not an nnU-Net channel.
    data = write_msd(tmp_path, "msd")
    for old, new in {"prostate_00": "case_0001", "prostate_01": "case_0002"}.items():
        for folder in ("imagesTr", "labelsTr"):
            (data.root / folder / f"{old}.nii.gz").rename(data.root / folder / f"{new}.nii.gz")
    meta = json.loads(data.files["dataset.json"].read_text())
    del meta["training"]
    data.files["dataset.json"].write_text(json.dumps(meta))
    _, cases = discover_cases(data.root)
    assert [c.case for c in cases] == ["case_0001", "case_0002"]


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"labels": {"0": "background"}}, "declares no foreground label"),
        ({"labels": ["background", "PZ"]}, "'labels' must map"),
        (["not", "a", "mapping"], "must hold a mapping"),
    ],
)
def test_discover_msd_bad_dataset_json(tmp_path, meta, match):
    data = write_msd(tmp_path, "msd")
    data.files["dataset.json"].write_text(json.dumps(meta))
    with pytest.raises(MedwssError, match=match) as err:
        discover_cases(data.root)
    assert err.value.path == str(data.files["dataset.json"])


def test_discover_msd_unparsable_dataset_json(tmp_path):
    data = write_msd(tmp_path, "msd")
    data.files["dataset.json"].write_text('{"labels": ')
    with pytest.raises(MedwssError, match="cannot parse"):
        discover_cases(data.root)


def test_discover_msd_missing_label(tmp_path):
    data = write_msd(tmp_path, "msd")
    data.files["prostate_01/label"].unlink()
    with pytest.raises(MedwssError, match="no label file for class 'PZ'") as err:
        discover_cases(data.root)
    assert err.value.path == str(data.root / "labelsTr" / "prostate_01.nii.gz")


def test_discover_ircadb_layout(tmp_path):
    data = write_ircadb(tmp_path)
    spec, cases = discover_cases(data.root, DatasetSpec.load(data.spec))
    assert spec.modality == "CT" and spec.preset == "ct_liver"
    assert [c.case for c in cases] == ["irc_01", "irc_07"]
    irc01, irc07 = cases
    assert [p.name for p in irc01.class_files["tumour"]] == ["livertumor01.nii.gz", "livertumor02.nii.gz"]
    assert irc01.exclude_files["tumour"] == (data.files["irc_01/cyst"],)
    assert irc01.prior == data.files["irc_01/liver"] and irc01.image == data.files["irc_01/image"]
    # Tumour-free patient: no livertumor file, the class is simply empty (tumor_not_liver is not matched).
    assert irc07.class_files["tumour"] == () and irc07.exclude_files["tumour"] == ()
    assert irc07.prior == data.files["irc_07/liver"]


def test_discover_prostate158_layout(tmp_path):
    data = write_prostate158(tmp_path)
    spec, cases = discover_cases(data.root, DatasetSpec.load(data.spec))
    assert [c.case for c in cases] == ["001", "020", "021"]
    assert list(spec.classes) == ["gland", "pz"]
    for record in cases:
        assert record.image == data.files[f"{record.case}/image"]
        assert record.class_files["gland"] == record.class_files["pz"] == (data.files[f"{record.case}/label"],)


def test_patient_regex_groups_several_scans_of_one_patient(tmp_path):
    zones = {"p01_t0": {1: [1]}, "p01_t1": {1: [2]}, "p02_t0": {2: [3]}}
    data = write_prostate158(tmp_path, zones=zones, spec={**P158_SPEC, "patient": r"^(p\d+)_"})
    _, cases = discover_cases(data.root, DatasetSpec.load(data.spec))
    assert {c.case: c.patient for c in cases} == {"p01_t0": "p01", "p01_t1": "p01", "p02_t0": "p02"}
    spec = DatasetSpec.from_config({**P158_SPEC, "patient": r"^(p\d+)_"})
    assert spec.patient_of("other") == "other"  # no match: the case is its own patient


def test_image_pattern_with_case_as_file_name(tmp_path):
    data = write_ircadb(tmp_path, spec={**IRCADB_SPEC, "image": "imagesTr/{case}"})
    _, cases = discover_cases(data.root, DatasetSpec.load(data.spec))
    assert [c.case for c in cases] == ["irc_01", "irc_07"]  # the volume suffix is not part of the case id


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({**P158_SPEC, "labels": "x"}, "unknown dataset spec keys: labels"),
        ({**P158_SPEC, "classes": {}}, "needs at least one class"),
        ({k: v for k, v in P158_SPEC.items() if k != "classes"}, "needs at least one class"),
        ({**P158_SPEC, "classes": ["gland"]}, "'classes' must map"),
        ({**P158_SPEC, "image": "t2.nii.gz"}, "needs '{case}'"),
        ({**P158_SPEC, "image": ["{case}/t2.nii.gz"]}, "'image' must be one path pattern"),
        ({**P158_SPEC, "prior": {"files": "{case}/p.nii.gz"}}, "'prior' must be one path pattern"),
        ({**P158_SPEC, "patient": "(p\\d+"}, "not a regular expression"),
        ({**P158_SPEC, "patient": "p\\d+"}, "needs a group"),
        ({**P158_SPEC, "classes": {"gland": {"files": ["x"], "test": "~ 1"}}}, "cannot parse voxel test"),
        ("gland", "must be a mapping"),
    ],
)
def test_spec_errors(config, match):
    with pytest.raises(MedwssError, match=match):
        DatasetSpec.from_config(config, "my_spec.yaml")


@pytest.mark.parametrize(
    ("text", "name", "match"),
    [
        ("name: [unclosed", "spec.yaml", "cannot parse"),
        ('{"name": ', "spec.json", "cannot parse"),
        ("", "spec.yaml", "must be a mapping"),
    ],
)
def test_spec_file_errors(tmp_path, text, name, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(MedwssError, match=match) as err:
        DatasetSpec.load(path)
    assert err.value.path == str(path)


def test_spec_file_binary_and_missing(tmp_path):
    binary = tmp_path / "spec.yaml"
    binary.write_bytes(b"\xff\xfe\x00\x81 not text")
    with pytest.raises(MedwssError, match="cannot parse"):
        DatasetSpec.load(binary)
    with pytest.raises(MedwssError, match="dataset spec not found"):
        DatasetSpec.load(tmp_path / "none.yaml")


def test_shipped_specs_load():
    from pathlib import Path

    configs = Path(__file__).resolve().parents[2] / "configs" / "datasets"
    specs = {p.stem: DatasetSpec.load(p) for p in sorted(configs.glob("*.yaml"))}
    assert {"ircadb", "prostate158", "promise12_resampled"} <= set(specs)
    assert specs["ircadb"].classes["tumour"].missing == "empty" and specs["ircadb"].modality == "CT"
    assert specs["prostate158"].classes["gland"].test == VoxelTest(">", (0.0,))


def test_missing_label_file_is_an_error(tmp_path):
    data = write_prostate158(tmp_path)
    data.files["020/label"].unlink()
    with pytest.raises(MedwssError, match="no label file for class 'gland'") as err:
        discover_cases(data.root, DatasetSpec.load(data.spec))
    assert err.value.path == str(data.root / "020" / "t2_anatomy_reader1.nii.gz")


def test_missing_label_problems_are_collected_when_asked(tmp_path):
    data = write_prostate158(tmp_path)
    data.files["001/label"].unlink()
    data.files["021/label"].unlink()
    problems: list[MedwssError] = []
    _, cases = discover_cases(data.root, DatasetSpec.load(data.spec), problems=problems)
    assert [c.case for c in cases] == ["020"]
    assert [p.path for p in problems] == [str(data.files["001/label"]), str(data.files["021/label"])]


def test_missing_empty_gives_an_empty_class(tmp_path):
    data = write_prostate158(tmp_path)
    data.files["020/label"].unlink()
    spec = {**P158_SPEC, "classes": {"gland": {"files": ["{case}/t2_anatomy_reader1.nii.gz"], "missing": "empty"}}}
    _, cases = discover_cases(data.root, DatasetSpec.from_config(spec))
    assert {c.case: len(c.class_files["gland"]) for c in cases} == {"001": 1, "020": 0, "021": 1}


def test_missing_prior_file(tmp_path):
    data = write_ircadb(tmp_path)
    data.files["irc_07/liver"].unlink()
    with pytest.raises(MedwssError, match="organ prior mask not found") as err:
        discover_cases(data.root, DatasetSpec.load(data.spec))
    assert err.value.path == str(data.files["irc_07/liver"])


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda root: root / "missing", "data set folder not found"),
        (lambda root: root, "no dataset.json here"),
    ],
)
def test_discover_folder_errors(tmp_path, make, match):
    with pytest.raises(MedwssError, match=match):
        discover_cases(make(tmp_path))


def test_discover_no_image_matches(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", {**P158_SPEC, "image": "{case}/t1.nii.gz"})
    write_prostate158(tmp_path)
    with pytest.raises(MedwssError, match="no image matches the pattern"):
        discover_cases(tmp_path / "prostate158", DatasetSpec.load(spec))
