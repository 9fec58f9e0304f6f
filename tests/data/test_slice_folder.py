"""Slice-folder data sets: grouping, order, label rules, channels, check problems, training tensors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from medwss.data.check import check_path
from medwss.data.datalist import DatasetSpec
from medwss.data.manifest import manifest_from_masks, read_manifest, write_manifest
from medwss.data.slice_folder import SliceSetSpec
from medwss.errors import MedwssError
from tests.cli.helpers import assert_one_error_line, invoke

SPEC = {
    "kind": "slices",
    "name": "toy",
    "table": "slices.csv",
    "columns": {"patient": "pid", "order": "z", "image": "img", "mask": "seg"},
    "channels": [1],
    "intensity": [0, 255],
    "labels": [0, 1, 2],
    "classes": {"tumour": "== 2"},
    "prior": "> 0",
}


def _mask(z: int, size: int = 8) -> np.ndarray:
    """Slice z: liver (1) in the left half from z >= 1, a tumour (2) at row 1, column 2 when z is odd."""
    mask = np.zeros((size, size), np.uint8)
    if z >= 1:
        mask[:, : size // 2] = 1
    if z % 2 == 1:
        mask[1, 2] = 2
    return mask


def make_slice_set(root: Path, patients=(("p2", [4, 0, 2]), ("p1", [3, 1])), size: int = 8) -> Path:
    """RGB PNG slices (channel c = 10 * c + z) and label-map PNGs; the CSV lists rows out of order."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    (root / "seg").mkdir(exist_ok=True)
    rows = []
    for patient, orders in patients:
        for z in orders:
            rgb = np.stack([np.full((size, size), 10 * c + z, np.uint8) for c in range(3)], axis=-1)
            rgb[0, 0] = 255  # mark the image's top-left pixel
            Image.fromarray(rgb).save(root / "img" / f"{patient}_{z}.png")
            Image.fromarray(_mask(z, size)).save(root / "seg" / f"{patient}_{z}.png")
            rows.append({"pid": patient, "z": z, "img": f"img/{patient}_{z}.png", "seg": f"seg/{patient}_{z}.png"})
    with (root / "slices.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, ["pid", "z", "img", "seg"])
        writer.writeheader()
        writer.writerows(rows)
    return root


def write_spec(path: Path, **changes) -> Path:
    path.write_text(yaml.safe_dump({**SPEC, **changes}))
    return path


def test_grouping_and_order_from_table(tmp_path):
    root = make_slice_set(tmp_path / "data")
    spec = DatasetSpec.load(write_spec(tmp_path / "spec.yaml"))
    assert isinstance(spec, SliceSetSpec)
    patients = spec.discover(root)
    assert [p.patient for p in patients] == ["p1", "p2"]
    assert [p.orders for p in patients] == [[1, 3], [0, 2, 4]]
    assert patients[1].rows[0].image == root / "img" / "p2_0.png"


def test_grouping_from_file_name_pattern(tmp_path):
    root = make_slice_set(tmp_path / "data", patients=(("a", [10, 2]), ("b", [5])))
    config = {k: v for k, v in SPEC.items() if k not in ("table", "columns")}
    spec = SliceSetSpec.from_config(
        {**config, "pattern": {"image": "img/{patient}_{order}.png", "mask": "seg/{patient}_{order}.png"}}
    )
    patients = spec.discover(root)
    assert [(p.patient, p.orders) for p in patients] == [("a", [2, 10]), ("b", [5])]
    assert patients[0].rows[1].mask == root / "seg" / "a_10.png"


def test_label_rules_give_presence_per_slice_in_order(tmp_path):
    root = make_slice_set(tmp_path / "data")
    manifest = manifest_from_masks(root, DatasetSpec.load(write_spec(tmp_path / "spec.yaml")))
    assert manifest.classes == ["tumour"]
    by_patient = {item.patient: item.presence["tumour"].tolist() for item in manifest.images}
    assert by_patient == {"p1": [1.0, 1.0], "p2": [0.0, 0.0, 0.0]}  # odd slices hold the tumour


@pytest.mark.parametrize(
    ("channels", "expected"), [([1], [12.0]), ([2, 0], [22.0, 2.0]), ("grey", [12.0]), ("all", [2.0, 12.0, 22.0])]
)
def test_channels(tmp_path, channels, expected):
    root = make_slice_set(tmp_path / "data")
    spec = SliceSetSpec.from_config({**SPEC, "channels": channels})
    image, labels = spec.read_patient(spec.discover(root)[1])  # p2: orders 0, 2, 4
    assert image.shape == (len(expected), 8, 8, 3) and labels.shape == (8, 8, 3)
    assert np.allclose(image[:, 3, 3, 1] * 255, expected, atol=1e-4)  # order 2 is stack position 1
    assert image[0, 0, 0, 0] == 1.0  # (x, y) = (column, row): the marked top-left pixel


def test_training_tensors_are_turned_to_ras(tmp_path):
    from medwss.bundle.data import build_slices

    root = make_slice_set(tmp_path / "data")
    manifest = manifest_from_masks(root, DatasetSpec.load(write_spec(tmp_path / "spec.yaml")))
    slices = build_slices(manifest, "ct_liver", 8, mask_files={})
    assert slices.images.shape == (5, 1, 8, 8) and slices.patients == ["p1", "p1", "p2", "p2", "p2"]
    assert slices.slice_index.tolist() == [0, 1, 0, 1, 2]
    # LP display flipped to RAS: the marked top-left pixel ends at the far corner; the liver (image's left) at high x
    assert slices.images[0, 0, 7, 7] == 1.0
    assert slices.prior[1, 4:, :].all() and not slices.prior[1, :4, :].any()
    tumour = slices.masks[0, 0]
    assert tumour.sum() == 1 and tumour[7 - 2, 7 - 1]  # image (row 1, column 2) -> x = 7 - 2, y = 7 - 1
    assert slices.presence[:, 0].tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_written_manifest_names_slice_files_and_trains(tmp_path):
    from medwss.bundle.data import build_slices

    root = make_slice_set(tmp_path / "data")
    manifest = manifest_from_masks(root, DatasetSpec.load(write_spec(tmp_path / "spec.yaml")))
    write_manifest(manifest, tmp_path / "labels.csv")
    back = read_manifest(tmp_path / "labels.csv")
    assert len(back.images) == 5 and {i.patient for i in back.images} == {"p1", "p2"}
    assert back.images[0].image.suffix == ".png" and back.images[0].prior.parent.name == "seg"
    slices = build_slices(back, "ct_liver", 8)
    assert slices.images.shape == (5, 3, 8, 8) and slices.prior is not None


def test_check_passes_and_counts(tmp_path):
    root = make_slice_set(tmp_path / "data")
    result = invoke("check", root, "--spec", write_spec(tmp_path / "spec.yaml"), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "2 patients, 5 slices of toy; tumour in 1/2 patients" in result.stdout


def _break_missing_image(root: Path) -> tuple[Path, str]:
    (root / "img" / "p1_3.png").unlink()
    return root / "img" / "p1_3.png", "file not found"


def _break_size(root: Path) -> tuple[Path, str]:
    Image.fromarray(np.zeros((8, 6), np.uint8)).save(root / "seg" / "p2_2.png")
    return root / "seg" / "p2_2.png", "mask size 6x8 does not match its image 8x8"


def _break_labels(root: Path) -> tuple[Path, str]:
    Image.fromarray(np.full((8, 8), 7, np.uint8)).save(root / "seg" / "p1_1.png")
    return root / "seg" / "p1_1.png", "mask values [7] are not among the declared labels [0, 1, 2]"


def _break_empty_patient(root: Path) -> tuple[Path, str]:
    with (root / "slices.csv").open("a", newline="") as handle:
        handle.write("p3,,,\n")
    return root / "slices.csv", "patient 'p3' has no slices"


def _break_column(root: Path) -> tuple[Path, str]:
    text = (root / "slices.csv").read_text().replace("pid,", "case,", 1)
    (root / "slices.csv").write_text(text)
    return root / "slices.csv", "no patient column 'pid' (columns: case, z, img, seg)"


BREAKAGES = [_break_missing_image, _break_size, _break_labels, _break_empty_patient, _break_column]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__)
def test_check_reports_each_bad_input_in_one_line(tmp_path, breakage):
    root = make_slice_set(tmp_path / "data")
    path, problem = breakage(root)
    report = check_path(root, write_spec(tmp_path / "spec.yaml"))
    assert [str(p) for p in report.problems] == [f"{path}: {problem}"]
    result = invoke("check", root, "--spec", tmp_path / "spec.yaml", "--no-progress")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"error: {path}: {problem}"]


@pytest.mark.parametrize("breakage", BREAKAGES, ids=lambda f: f.__name__)
def test_labels_from_masks_stops_with_the_one_line_error(tmp_path, breakage):
    root = make_slice_set(tmp_path / "data")
    path, problem = breakage(root)
    out = tmp_path / "labels.csv"
    result = invoke(
        "labels", "from-masks", root, "--spec", write_spec(tmp_path / "spec.yaml"), "-o", out, "--no-progress"
    )
    assert_one_error_line(result, path, problem)
    assert not out.exists()


def test_declared_patient_without_slices(tmp_path):
    root = make_slice_set(tmp_path / "data")
    spec = SliceSetSpec.from_config({**SPEC, "patients": ["p1", "p9"]})
    with pytest.raises(MedwssError, match="patient 'p9' has no slices"):
        spec.discover(root)


def test_channel_the_image_lacks(tmp_path):
    root = make_slice_set(tmp_path / "data")
    report = check_path(root, write_spec(tmp_path / "spec.yaml", channels=[3]))
    assert len(report.problems) == 5
    assert report.problems[0].problem == "channel 3 asked for, but the image has 3 channel(s)"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"table": None}, "needs one of 'table'"),
        ({"channels": "blue"}, "'channels' must be"),
        ({"columns": {"subject": "pid"}}, "'columns' maps roles"),
        ({"classes": {}}, "'classes' must map"),
        ({"labels": ["a"]}, "'labels' must be a list"),
        ({"orientation": "XY"}, "'orientation' names"),
        ({"intensity": [5, 5]}, "range 5..5 is empty"),
        ({"kind": "frames"}, "unknown dataset spec kind 'frames'"),
        ({"colour": 1}, "unknown slice-folder spec keys: colour"),
    ],
)
def test_bad_specs(tmp_path, change, problem):
    config = {k: v for k, v in {**SPEC, **change}.items() if v is not None}
    with pytest.raises(MedwssError, match=problem.replace("(", r"\(").replace(".", r"\.")):
        DatasetSpec.from_config(config, "spec.yaml")


REPO = Path(__file__).resolve().parents[2]
LITS = REPO.parent / "shared" / "data" / "liver" / "lits_slices_2d"


def test_shipped_lits_spec_loads():
    spec = DatasetSpec.load(REPO / "configs" / "datasets" / "lits_slices.yaml")
    assert isinstance(spec, SliceSetSpec)
    assert spec.reading.channels == (1,) and spec.labels == (0, 1, 2) and spec.orientation == "LP"
    assert str(spec.classes["tumour"]) == "== 2" and str(spec.prior) == "> 0"


@pytest.mark.skipif(not (LITS / "slices.csv").is_file(), reason="shared LiTS slices not present")
def test_shipped_lits_spec_reads_a_real_patient():
    spec = DatasetSpec.load(REPO / "configs" / "datasets" / "lits_slices.yaml")
    spec = SliceSetSpec(**{**spec.__dict__, "patients": ("volume-50",)})
    (patient,) = spec.discover(LITS)
    assert len(patient.rows) == 38 and patient.orders == list(range(90, 165, 2))
    manifest = manifest_from_masks(LITS, spec)
    assert manifest.images[0].presence["tumour"].sum() == 4  # the data README: 4 tumour slices
