"""Label rules: voxel tests, rule configs, and the union / exclusion that builds a class mask from label files."""

from __future__ import annotations

import numpy as np
import pytest

from medwss.data.io import Geometry, read_sitk
from medwss.data.rules import LabelRule, VoxelTest, apply_rule
from medwss.errors import MedwssError
from tests.data.dataset_fixtures import BOX_A, BOX_B, ORIGIN, draw, write_nifti, write_prostate158

LABELS = np.array([-1, 0, 1, 2, 3])


@pytest.mark.parametrize(
    ("text", "op", "values", "selected"),
    [
        ("> 0", ">", (0.0,), [1, 2, 3]),
        (">0", ">", (0.0,), [1, 2, 3]),
        ("  >= 1 ", ">=", (1.0,), [1, 2, 3]),
        ("== 2", "==", (2.0,), [2]),
        ("!= 0", "!=", (0.0,), [-1, 1, 2, 3]),
        ("< 1", "<", (1.0,), [-1, 0]),
        ("<= 2", "<=", (2.0,), [-1, 0, 1, 2]),
        ("in 1,2", "in", (1.0, 2.0), [1, 2]),
        ("in [1, 3]", "in", (1.0, 3.0), [1, 3]),
        ("in 2", "in", (2.0,), [2]),
    ],
)
def test_voxel_test_parse(text, op, values, selected):
    test = VoxelTest.parse(text)
    assert (test.op, test.values) == (op, values)
    assert LABELS[test(LABELS)].tolist() == selected
    assert VoxelTest.parse(str(test)) == test  # str() is a parseable round trip (to_config writes it)


@pytest.mark.parametrize("text", ["", "0", "> ", "=> 1", "= 1", "> a", "== 1,2", "in", "in ,", "in []", "gt 0", 3])
def test_voxel_test_parse_rejects(text):
    with pytest.raises(MedwssError, match="voxel test"):
        VoxelTest.parse(text)


def test_label_rule_from_config_defaults_and_bare_pattern():
    rule = LabelRule.from_config("gland", "{case}/seg.nii.gz")
    assert rule == LabelRule(("{case}/seg.nii.gz",), VoxelTest(">", (0.0,)), (), "error")
    rule = LabelRule.from_config("tumour", {"files": "a/{case}/t*.nii.gz", "exclude": "a/{case}/cyst.nii.gz",
                                            "missing": "empty", "test": "in 1,2"})
    assert rule.files == ("a/{case}/t*.nii.gz",) and rule.exclude == ("a/{case}/cyst.nii.gz",)
    assert rule.missing == "empty" and rule.test == VoxelTest("in", (1.0, 2.0))
    assert LabelRule.from_config("tumour", rule.to_config()) == rule


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"test": "> 0"}, "needs 'files'"),
        (["{case}.nii.gz"], "needs 'files'"),
        (None, "needs 'files'"),
        ({"files": ["{case}.nii.gz"], "tset": "> 0"}, "unknown label rule keys: tset"),
        ({"files": ["{case}.nii.gz"], "missing": "skip"}, "'missing' must be 'error' or 'empty'"),
        ({"files": ["{case}.nii.gz"], "test": "bigger than 0"}, "cannot parse voxel test"),
        ({"files": []}, "names no pattern"),
        ({"files": [""]}, "must be a glob pattern"),
        ({"files": [{"path": "x"}]}, "must be a glob pattern"),
        ({"files": 3}, "must be a glob pattern"),
        ({"files": ["/abs/{case}.nii.gz"]}, "relative to the data set root"),
        ({"files": ["{case}.nii.gz"], "exclude": [1]}, "'exclude' must be a glob pattern"),
    ],
)
def test_label_rule_from_config_errors(config, match):
    with pytest.raises(MedwssError, match=match) as err:
        LabelRule.from_config("gland", config)
    assert err.value.path == "class gland"


def test_label_rule_resolve_sorts_and_fills_case(tmp_path):
    for name in ("t2.nii.gz", "t1.nii.gz", "cyst.nii.gz"):
        (tmp_path / "c1" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "c1" / name).write_bytes(b"")
    (tmp_path / "c2").mkdir()
    (tmp_path / "c2" / "t9.nii.gz").write_bytes(b"")
    rule = LabelRule(("{case}/t*.nii.gz",), exclude=("{case}/cyst.nii.gz",))
    assert [p.name for p in rule.resolve(tmp_path, "c1")] == ["t1.nii.gz", "t2.nii.gz"]
    assert [p.name for p in rule.resolve(tmp_path, "c1", rule.exclude)] == ["cyst.nii.gz"]
    assert rule.resolve(tmp_path, "nobody") == []


def _grid(path):
    return Geometry.of(read_sitk(path))


def test_apply_rule_union_of_files_and_exclusion(tmp_path):
    image = write_nifti(tmp_path / "img.nii.gz", np.arange(8 * 8 * 6, dtype=np.float32).reshape(8, 8, 6))
    t1 = write_nifti(tmp_path / "t1.nii.gz", draw([1]))
    t2 = write_nifti(tmp_path / "t2.nii.gz", draw({3: BOX_A, 5: BOX_B}))
    cyst = write_nifti(tmp_path / "cyst.nii.gz", draw({0: BOX_A, 5: BOX_B}))
    rule = LabelRule(("t*.nii.gz",), exclude=("cyst.nii.gz",))

    union = apply_rule(rule, [t1, t2], [], _grid(image))
    assert union.shape == (8, 8, 6) and union.dtype == bool
    assert union.any(axis=(0, 1)).tolist() == [False, True, False, True, False, True]
    assert union.sum() == 3 * 9

    excluded = apply_rule(rule, [t1, t2], [cyst], _grid(image))
    # z 5 held only the cyst, drawn in the tumour file too: gone. z 0 had cyst and no tumour: still absent.
    assert excluded.any(axis=(0, 1)).tolist() == [False, True, False, True, False, False]
    assert np.array_equal(excluded, union & ~(draw({0: BOX_A, 5: BOX_B}) > 0))
    assert not apply_rule(rule, [], [cyst], _grid(image)).any()


def test_apply_rule_zonal_tests(tmp_path):
    data = write_prostate158(tmp_path, zones={"001": {1: [1, 2], 2: [2, 4]}})
    image, labels = data.files["001/image"], data.files["001/label"]
    gland = apply_rule(LabelRule((), VoxelTest.parse("> 0")), [labels], [], _grid(image))
    pz = apply_rule(LabelRule((), VoxelTest.parse("== 2")), [labels], [], _grid(image))
    assert gland.any(axis=(0, 1)).tolist() == [False, True, True, False, True, False]
    assert pz.any(axis=(0, 1)).tolist() == [False, False, True, False, True, False]
    assert gland.sum() == 4 * 9 and pz.sum() == 2 * 9 and not (pz & ~gland).any()


def test_apply_rule_accepts_a_loaded_volume_as_reference(tmp_path):
    from medwss.data.io import load_volume

    image = write_nifti(tmp_path / "img.nii.gz", np.arange(8 * 8 * 6, dtype=np.float32).reshape(8, 8, 6))
    label = write_nifti(tmp_path / "l.nii.gz", draw([2]))
    mask = apply_rule(LabelRule(("l.nii.gz",)), [label], [], load_volume(image))
    assert mask.any(axis=(0, 1)).tolist() == [False, False, True, False, False, False]


@pytest.mark.parametrize("which", ["file", "exclude"])
def test_apply_rule_geometry_mismatch(tmp_path, which):
    image = write_nifti(tmp_path / "img.nii.gz", np.arange(8 * 8 * 6, dtype=np.float32).reshape(8, 8, 6))
    good = write_nifti(tmp_path / "good.nii.gz", draw([1]))
    shifted = write_nifti(tmp_path / "shifted.nii.gz", draw([1]), origin=(ORIGIN[0] + 5.0, *ORIGIN[1:]))
    files, exclude = ([shifted], [good]) if which == "file" else ([good], [shifted])
    with pytest.raises(MedwssError, match="origin") as err:
        apply_rule(LabelRule(("*.nii.gz",)), files, exclude, _grid(image))
    assert err.value.path == str(shifted)


def test_apply_rule_unreadable_and_wrong_size(tmp_path):
    image = write_nifti(tmp_path / "img.nii.gz", np.arange(8 * 8 * 6, dtype=np.float32).reshape(8, 8, 6))
    small = write_nifti(tmp_path / "small.nii.gz", np.zeros((8, 8, 5), dtype=np.uint8))
    with pytest.raises(MedwssError, match="size") as err:
        apply_rule(LabelRule(("*.nii.gz",)), [small], [], _grid(image))
    assert err.value.path == str(small)
    broken = tmp_path / "broken.nii.gz"
    broken.write_bytes(b"not a volume")
    with pytest.raises(MedwssError) as err:
        apply_rule(LabelRule(("*.nii.gz",)), [broken], [], _grid(image))
    assert err.value.path == str(broken)
