"""Scan I/O: every format's geometry survives load and mask write-back; every bad input is a one-line MedwssError."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
import torch

from medwss.data import io
from medwss.data.io import Geometry, load_mask, load_volume, strip_suffix, validate_array, volume_suffix, write_mask
from medwss.errors import MedwssError
from medwss.runtime import atomic
from tests.data.io_fixtures import (
    CT_SERIES_UID,
    FORMATS,
    MR_SERIES_UID,
    NIFTI_FORMATS,
    RAS_FROM_LPS,
    mr_volume,
    oblique_volume,
    volume_for,
    write_dicom_series,
    write_nifti,
    write_nifti_array,
    write_sitk,
    write_volume,
)

DATA = Path(__file__).resolve().parents[2] / "../shared/data"
realdata = pytest.mark.skipif(not DATA.is_dir(), reason=f"real data folder {DATA} is absent")


def sitk_geometry(path: Path) -> tuple:
    image = sitk.ReadImage(str(path))
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def assert_same_grid(actual: tuple, expected: tuple, atol: float = 1e-5) -> None:
    assert actual[0] == tuple(expected[0])
    for a, e in zip(actual[1:], expected[1:], strict=True):
        np.testing.assert_allclose(a, e, atol=atol, rtol=0)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_line_error(err: pytest.ExceptionInfo, path: Path, words: str) -> None:
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    assert words in err.value.problem


# ---------------------------------------------------------------------------------------------------------------
# Names and grids
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "suffix", "case"),
    [
        ("case_001.nii.gz", ".nii.gz", "case_001"),
        ("Case.NII.GZ", ".nii.gz", "Case"),
        ("a.b.nii", ".nii", "a.b"),
        ("scan.mha", ".mha", "scan"),
        ("scan.mhd", ".mhd", "scan"),
        ("scan.nrrd", ".nrrd", "scan"),
        ("scan.nhdr", ".nhdr", "scan"),
        ("notes.txt", "", "notes.txt"),
        ("image.gz", "", "image.gz"),
    ],
)
def test_volume_suffix_and_case_id(name: str, suffix: str, case: str) -> None:
    assert volume_suffix(name) == suffix
    assert strip_suffix(name) == case


GRID = Geometry((7, 6, 5), (0.7, 0.9, 2.5), (-12.5, 30.25, 101.0), tuple(np.eye(3).ravel()))


@pytest.mark.parametrize(
    ("other", "words"),
    [
        (GRID, None),
        (Geometry(GRID.size, (0.70001, 0.9, 2.5), GRID.origin, GRID.direction), None),
        (Geometry((7, 6, 6), GRID.spacing, GRID.origin, GRID.direction), "size"),
        (Geometry(GRID.size, (0.7, 0.9, 3.0), GRID.origin, GRID.direction), "spacing"),
        (Geometry(GRID.size, GRID.spacing, (-12.5, 30.25, 102.0), GRID.direction), "origin"),
        (Geometry(GRID.size, GRID.spacing, GRID.origin, tuple(np.diag([-1.0, 1, 1]).ravel())), "direction"),
    ],
)
def test_geometry_mismatch(other: Geometry, words: str | None) -> None:
    problem = GRID.mismatch(other)
    assert problem is None if words is None else problem.startswith(words)


def test_geometry_from_collated_meta() -> None:
    """After MONAI collation the meta lists hold 0-d tensors; the grid must still compare and write."""
    meta = {k: [torch.tensor(v, dtype=torch.float64) for v in values] for k, values in GRID.to_meta().items()}
    geometry = Geometry.from_meta(meta)
    assert geometry == GRID
    assert all(type(v) is int for v in geometry.size)
    assert all(type(v) is float for v in geometry.spacing + geometry.origin + geometry.direction)


# ---------------------------------------------------------------------------------------------------------------
# Geometry round trip, every format
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_volume_gives_xyz_array_and_ras_affine(fmt: str, tmp_path: Path) -> None:
    volume = volume_for(fmt)
    loaded = load_volume(write_volume(volume, tmp_path, fmt))
    assert loaded.shape == volume.array.shape
    np.testing.assert_array_equal(loaded.numpy(), volume.array)
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ volume.lps_affine()
    np.testing.assert_allclose(loaded.affine.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(loaded.meta["original_affine"].numpy(), expected, atol=1e-6)
    assert loaded.meta["space"] == "RAS"
    geometry = Geometry.from_meta(loaded.meta["geometry"])
    assert_same_grid(
        (geometry.size, geometry.spacing, geometry.origin, geometry.direction),
        (volume.array.shape, volume.spacing, volume.origin, volume.direction.ravel()),
        atol=1e-6,
    )
    assert loaded.meta["modality"] == ("CT" if fmt == "dicom" else "")


@pytest.mark.parametrize("fmt", FORMATS)
def test_write_mask_keeps_the_input_grid(fmt: str, tmp_path: Path) -> None:
    volume = volume_for(fmt)
    source = write_volume(volume, tmp_path, fmt)
    loaded = load_volume(source)
    mask = (volume.array % 3 == 0).astype(np.uint8)
    out = write_mask(mask, loaded, tmp_path / "pred" / "mask.nii.gz")
    assert out == tmp_path / "pred" / "mask.nii.gz"
    expected_grid = (volume.array.shape, volume.spacing, volume.origin, volume.direction.ravel())
    assert_same_grid(sitk_geometry(out), expected_grid)
    if fmt != "dicom":
        assert_same_grid(sitk_geometry(out), sitk_geometry(source))
    back = load_mask(out, loaded)
    assert back.dtype == torch.uint8
    np.testing.assert_array_equal(back.numpy(), mask)
    np.testing.assert_allclose(back.affine.numpy(), loaded.affine.numpy(), atol=1e-5)


@pytest.mark.parametrize("fmt", NIFTI_FORMATS)
def test_write_mask_keeps_the_nifti_header_exactly(fmt: str, tmp_path: Path) -> None:
    source = write_volume(volume_for(fmt), tmp_path, fmt)
    out = write_mask(load_volume(source) > 0, load_volume(source), tmp_path / "mask.nii")
    src, dst = nib.load(str(source)), nib.load(str(out))
    np.testing.assert_array_equal(dst.affine, src.affine)
    q_dst, q_code_dst = dst.get_qform(coded=True)
    q_src, q_code_src = src.get_qform(coded=True)
    s_dst, s_code_dst = dst.get_sform(coded=True)
    s_src, s_code_src = src.get_sform(coded=True)
    assert (q_code_dst, s_code_dst) == (q_code_src, s_code_src)
    np.testing.assert_array_equal(q_dst, q_src)
    np.testing.assert_array_equal(s_dst, s_src)  # both None for the qform-only file
    assert dst.header.get_xyzt_units() == src.header.get_xyzt_units()
    assert dst.get_data_dtype() == np.uint8
    assert dst.header.get_slope_inter() in ((1.0, 0.0), (None, None))


def test_write_mask_with_a_geometry_or_a_path_as_reference(tmp_path: Path) -> None:
    volume = oblique_volume()
    source = write_sitk(volume, tmp_path / "scan.mha")
    grid = Geometry.from_meta(load_volume(source).meta["geometry"])
    mask = np.ones(volume.array.shape, dtype=bool)
    for reference, name in ((grid, "a.nii.gz"), (str(source), "b.nii.gz"), (source, "c.nii")):
        out = write_mask(mask, reference, tmp_path / name)
        assert_same_grid(sitk_geometry(out), sitk_geometry(source))


def test_write_mask_accepts_a_channel_first_tensor(tmp_path: Path) -> None:
    source = write_nifti(oblique_volume(), tmp_path / "scan.nii.gz")
    loaded = load_volume(source)
    mask = (loaded > 0)[None]  # (1, x, y, z) as MONAI transforms leave it
    out = write_mask(mask, loaded, tmp_path / "mask.nii.gz")
    np.testing.assert_array_equal(nib.load(str(out)).get_fdata(), (loaded > 0).numpy())


# ---------------------------------------------------------------------------------------------------------------
# DICOM series
# ---------------------------------------------------------------------------------------------------------------


def test_dicom_slices_are_stacked_by_position_and_rescaled(tmp_path: Path) -> None:
    volume = oblique_volume(right_handed=True)
    files = write_dicom_series(volume, tmp_path / "series")
    assert files != sorted(files), "the fixture must shuffle file names against slice order"
    assert [Path(f) for f in io.dicom_series_files(tmp_path / "series")] == files
    stored = pydicom.dcmread(files[2])
    assert float(stored.RescaleIntercept) == -1024.0
    raw = stored.pixel_array.T  # pydicom gives (rows, columns) = (y, x)
    assert not np.array_equal(raw, volume.array[:, :, 2]), "the stored values must differ from the HU values"
    np.testing.assert_array_equal(raw * float(stored.RescaleSlope) - 1024, volume.array[:, :, 2])
    np.testing.assert_array_equal(load_volume(tmp_path / "series").numpy(), volume.array)


def test_dicom_folder_with_two_series(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    ct, mr = oblique_volume(right_handed=True), mr_volume()
    folder = tmp_path / "study"
    write_dicom_series(ct, folder, series_uid=CT_SERIES_UID, prefix="ct", seed=1)
    write_dicom_series(mr, folder, series_uid=MR_SERIES_UID, modality="MR", prefix="mr", seed=2)
    assert sorted(io.dicom_series_ids(folder)) == sorted([CT_SERIES_UID, MR_SERIES_UID])
    with caplog.at_level(logging.WARNING, logger="medwss.data.io"):
        largest = load_volume(folder)
    assert "2 DICOM series" in caplog.text and CT_SERIES_UID in caplog.text
    assert largest.meta["modality"] == "CT"
    np.testing.assert_array_equal(largest.numpy(), ct.array)
    chosen = load_volume(folder, series_uid=MR_SERIES_UID)
    assert chosen.meta["modality"] == "MR"
    np.testing.assert_array_equal(chosen.numpy(), mr.array)
    np.testing.assert_allclose(chosen.affine.numpy(), RAS_FROM_LPS @ mr.lps_affine(), atol=1e-6)
    with pytest.raises(MedwssError) as err:
        load_volume(folder, series_uid="1.2.3.4")
    assert_one_line_error(err, folder, "no DICOM series with UID 1.2.3.4")


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file
# ---------------------------------------------------------------------------------------------------------------


def _missing(tmp: Path) -> Path:
    return tmp / "absent.nii.gz"


def _text_as_nifti(tmp: Path) -> Path:
    (tmp / "notes.nii.gz").write_text("not a scan\n")
    return tmp / "notes.nii.gz"


def _unknown_suffix(tmp: Path) -> Path:
    (tmp / "scan.png").write_bytes(b"\x89PNG\r\n")
    return tmp / "scan.png"


def _four_d(tmp: Path) -> Path:
    return write_nifti_array(np.random.default_rng(0).random((7, 6, 5, 3), dtype=np.float32), tmp / "dwi.nii.gz")


def _two_d(tmp: Path) -> Path:
    return write_nifti_array(np.arange(42, dtype=np.float32).reshape(7, 6), tmp / "slice.nii.gz")


def _with_value(value: float, suffix: str = ".nii.gz"):
    """ITK 5 reads NIfTI NaN/Inf as 0 (MetaImage keeps them): both must be caught."""

    def make(tmp: Path) -> Path:
        array = np.arange(210, dtype=np.float32).reshape(7, 6, 5)
        array[3, 2, 1] = value
        if suffix == ".mha":
            return write_sitk(replace(oblique_volume(), array=array), tmp / "bad.mha")
        return write_nifti_array(array, tmp / f"bad{suffix}")

    return make


def _constant(tmp: Path) -> Path:
    return write_nifti_array(np.full((7, 6, 5), 12, dtype=np.int16), tmp / "flat.nii.gz")


def _vector(tmp: Path) -> Path:
    image = sitk.GetImageFromArray(np.zeros((5, 6, 7, 3), dtype=np.float32), isVector=True)
    sitk.WriteImage(image, str(tmp / "rgb.mha"))
    return tmp / "rgb.mha"


def _no_dicom_folder(tmp: Path) -> Path:
    folder = tmp / "folder"
    folder.mkdir()
    (folder / "readme.txt").write_text("no scans here\n")
    write_nifti(oblique_volume(), folder / "scan.nii.gz")
    return folder


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_missing, "file not found"),
        (_text_as_nifti, "unreadable or not an image"),
        (_unknown_suffix, "not a volume file"),
        (_four_d, "4D image where a 3D volume is expected"),
        (_two_d, "2D image where a 3D volume is expected"),
        (_with_value(np.nan), "1 NaN/Inf voxels"),
        (_with_value(np.inf), "1 NaN/Inf voxels"),
        (_with_value(-np.inf, ".nii"), "1 NaN/Inf voxels"),
        (_with_value(np.nan, ".mha"), "1 NaN/Inf voxels"),
        (_constant, "constant image"),
        (_vector, "3 components per voxel"),
        (_no_dicom_folder, "no DICOM series found"),
    ],
    ids=["missing", "text", "suffix", "4d", "2d", "nan", "inf", "-inf", "nan-mha", "constant", "vector", "no-dicom"],
)
def test_bad_scan_is_a_one_line_error_naming_the_file(make, words: str, tmp_path: Path) -> None:
    path = make(tmp_path)
    with pytest.raises(MedwssError) as err:
        load_volume(path)
    assert_one_line_error(err, path, words)


def test_constant_scan_is_allowed_on_request(tmp_path: Path) -> None:
    assert float(load_volume(_constant(tmp_path), allow_constant=True).max()) == 12.0


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((7, 6, 0), dtype=np.float32), "empty image"),
        (np.zeros((0, 6, 5), dtype=np.int16), "empty image"),
        (np.zeros((7, 6, 5, 2), dtype=np.float32), "4D image"),
        (np.full((7, 6, 5), np.nan, dtype=np.float32), "210 NaN/Inf voxels"),
        (np.ones((7, 6, 5), dtype=np.uint8), "constant image"),
    ],
)
def test_validate_array_rejects(array: np.ndarray, words: str) -> None:
    with pytest.raises(MedwssError) as err:
        validate_array(array, "case.nii.gz")
    assert_one_line_error(err, Path("case.nii.gz"), words)


def test_validate_array_accepts_a_trailing_singleton_axis() -> None:
    validate_array(np.arange(210.0).reshape(7, 6, 5, 1), "case.nii.gz")


def test_single_time_point_4d_volume_is_read_as_3d(tmp_path: Path) -> None:
    """MetaImage keeps a 4th axis of length 1 (NIfTI readers drop it); it must not reach the affine or the mask."""
    volume = oblique_volume()
    image = sitk.GetImageFromArray(volume.array.transpose(2, 1, 0)[None], isVector=False)
    direction = np.eye(4)
    direction[:3, :3] = volume.direction
    image.SetSpacing((*volume.spacing, 1.0))
    image.SetOrigin((*volume.origin, 0.0))
    image.SetDirection(direction.ravel().tolist())
    sitk.WriteImage(image, str(tmp_path / "scan.mha"))
    assert sitk.ReadImage(str(tmp_path / "scan.mha")).GetDimension() == 4
    loaded = load_volume(tmp_path / "scan.mha")
    np.testing.assert_array_equal(loaded.numpy(), volume.array)
    np.testing.assert_allclose(loaded.affine.numpy(), volume.ras_affine(), atol=1e-6)
    out = write_mask(loaded > 0, loaded, tmp_path / "mask.nii.gz")
    assert_same_grid(sitk_geometry(out), (volume.array.shape, volume.spacing, volume.origin, volume.direction.ravel()))


# ---------------------------------------------------------------------------------------------------------------
# Label maps
# ---------------------------------------------------------------------------------------------------------------


def test_load_mask_keeps_integers_and_allows_an_empty_mask(tmp_path: Path) -> None:
    volume = oblique_volume()
    image = load_volume(write_nifti(volume, tmp_path / "scan.nii.gz"))
    labels = (volume.array.astype(np.int64) % 3).astype(np.uint16)  # zonal maps (Prostate158) are stored as uint16
    zones = load_mask(write_nifti_array(labels, tmp_path / "zones.nii.gz", volume.ras_affine()), image)
    assert zones.dtype == torch.int32  # torch cannot compare uint16 tensors
    assert int((zones > 0).sum()) == int((labels > 0).sum())
    small = load_mask(write_nifti_array(labels.astype(np.uint8), tmp_path / "z8.nii.gz", volume.ras_affine()), image)
    assert small.dtype == torch.uint8
    as_float = load_mask(write_nifti_array(labels.astype(np.float32), tmp_path / "f.nii.gz", volume.ras_affine()))
    assert as_float.dtype == torch.int32
    np.testing.assert_array_equal(as_float.numpy(), labels)
    empty = load_mask(write_nifti_array(np.zeros_like(labels), tmp_path / "e.nii.gz", volume.ras_affine()), image)
    assert int(empty.max()) == 0


def _other_grid(change: str):
    def make(tmp: Path) -> Path:
        volume = oblique_volume()
        labels = np.zeros(volume.array.shape, dtype=np.uint8)
        affine = volume.ras_affine()
        if change == "spacing":
            affine = affine @ np.diag([1.0, 1.0, 1.2, 1.0])
        elif change == "origin":
            affine[:3, 3] += (0.0, 0.0, 5.0)
        else:
            labels = np.zeros((7, 6, 4), dtype=np.uint8)
        return write_nifti_array(labels, tmp / f"label_{change}.nii.gz", affine)

    return make


def _fractional(tmp: Path) -> Path:
    labels = np.zeros((7, 6, 5), dtype=np.float32)
    labels[2:4, 2:4, 1:3] = 0.5
    return write_nifti_array(labels, tmp / "soft.nii.gz", oblique_volume().ras_affine())


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_other_grid("spacing"), "label does not match its image: spacing"),
        (_other_grid("origin"), "label does not match its image: origin"),
        (_other_grid("size"), "label does not match its image: size (7, 6, 4) differs from (7, 6, 5)"),
        (_fractional, "label map holds non-integer values"),
        (_missing, "file not found"),
    ],
    ids=["spacing", "origin", "size", "fractional", "missing"],
)
def test_bad_label_is_a_one_line_error_naming_the_file(make, words: str, tmp_path: Path) -> None:
    image = load_volume(write_nifti(oblique_volume(), tmp_path / "scan.nii.gz"))
    path = make(tmp_path)
    for reference in (image, Geometry.from_meta(image.meta["geometry"]), tmp_path / "scan.nii.gz"):
        with pytest.raises(MedwssError) as err:
            load_mask(path, reference)
        assert_one_line_error(err, path, words)


# ---------------------------------------------------------------------------------------------------------------
# write_mask refusals and atomicity
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def scan(tmp_path: Path):
    """A loaded NIfTI scan in its own folder, and the folder."""
    folder = tmp_path / "case"
    folder.mkdir()
    return load_volume(write_nifti(oblique_volume(), folder / "scan.nii.gz")), folder


@pytest.mark.parametrize("spelling", ["scan.nii.gz", "../case/scan.nii.gz"])
def test_write_mask_refuses_to_overwrite_its_input(scan, spelling: str) -> None:
    image, folder = scan
    before = digest(folder / "scan.nii.gz")
    for reference in (image, folder / "scan.nii.gz"):
        with pytest.raises(MedwssError) as err:
            write_mask(np.zeros(image.shape, dtype=np.uint8), reference, folder / spelling)
        assert_one_line_error(err, folder / spelling, "refusing to overwrite an input scan")
    assert digest(folder / "scan.nii.gz") == before
    assert sorted(os.listdir(folder)) == ["scan.nii.gz"]


@pytest.mark.parametrize(
    ("name", "shape", "words"),
    [
        ("mask.mha", (7, 6, 5), "masks are written as NIfTI"),
        ("mask.nrrd", (7, 6, 5), "masks are written as NIfTI"),
        ("mask", (7, 6, 5), "masks are written as NIfTI"),
        ("mask.nii.gz", (7, 6, 4), "mask shape (7, 6, 4) differs from the scan's (7, 6, 5)"),
        ("mask.nii.gz", (5, 6, 7), "mask shape (5, 6, 7) differs"),
        ("mask.nii.gz", (2, 7, 6, 5), "mask shape (2, 7, 6, 5) differs"),
    ],
)
def test_write_mask_rejects_and_writes_nothing(scan, name: str, shape: tuple, words: str) -> None:
    image, folder = scan
    out = folder / "pred" / name
    with pytest.raises(MedwssError) as err:
        write_mask(np.zeros(shape, dtype=np.uint8), image, out)
    assert_one_line_error(err, out, words)
    assert sorted(os.listdir(folder)) == ["scan.nii.gz"]


def test_write_mask_refuses_a_folder_as_output(scan) -> None:
    image, folder = scan
    (folder / "mask.nii.gz").mkdir()
    with pytest.raises(MedwssError) as err:
        write_mask(np.zeros(image.shape, dtype=np.uint8), image, folder / "mask.nii.gz")
    assert_one_line_error(err, folder / "mask.nii.gz", "is a folder")


def test_write_mask_refuses_labels_its_dtype_cannot_hold(scan) -> None:
    image, folder = scan
    labels = np.zeros(image.shape, dtype=np.int32)
    labels[0, 0, 0] = 300
    with pytest.raises(ValueError, match="do not fit uint8"):
        write_mask(labels, image, folder / "mask.nii.gz")
    out = write_mask(labels, image, folder / "mask.nii.gz", dtype=np.uint16)
    assert nib.load(str(out)).get_fdata()[0, 0, 0] == 300


def test_write_mask_replaces_atomically_and_leaves_no_temporary_file(scan) -> None:
    image, folder = scan
    out = folder / "mask.nii.gz"
    out.write_bytes(b"an older mask")
    write_mask(np.ones(image.shape, dtype=np.uint8), image, out)
    assert sorted(os.listdir(folder)) == ["mask.nii.gz", "scan.nii.gz"]
    assert not any(".partial" in name for name in os.listdir(folder))
    assert np.asarray(nib.load(str(out)).dataobj).min() == 1


@pytest.mark.parametrize("fails_in", ["writer", "rename"])
def test_failed_write_keeps_the_old_mask_and_leaves_no_partial_file(
    scan, fails_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    image, folder = scan
    out = folder / "mask.nii.gz"
    out.write_bytes(b"an older mask")

    def half_written(array, source, tmp, *tag):
        Path(tmp).write_bytes(b"half a file")
        raise OSError("disk full")

    def no_rename(src, dst):
        assert ".partial" in Path(src).name and Path(src).exists()
        raise OSError("rename failed")

    if fails_in == "writer":
        monkeypatch.setattr(io, "_write_nifti_like", half_written)
    else:
        monkeypatch.setattr(atomic.os, "replace", no_rename)  # the rename lives in medwss.runtime.atomic
    with pytest.raises(MedwssError, match="cannot write"):  # an OS error is the one-line user error
        write_mask(np.ones(image.shape, dtype=np.uint8), image, out)
    assert sorted(os.listdir(folder)) == ["mask.nii.gz", "scan.nii.gz"]
    assert out.read_bytes() == b"an older mask"


# ---------------------------------------------------------------------------------------------------------------
# Real scans
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.realdata
@realdata
def test_prostate158_scans_and_masks_load_on_one_grid() -> None:
    root = DATA / "prostate" / "prostate158_subset"
    cases = sorted(p for p in root.iterdir() if p.is_dir())
    assert [c.name for c in cases] == ["001", "020", "021"]
    for case in cases:
        image = load_volume(case / "t2.nii.gz")
        assert image.ndim == 3 and float(image.min()) >= 0.0
        np.testing.assert_allclose(image.affine.numpy(), nib.load(str(case / "t2.nii.gz")).affine, atol=1e-4)
        masks = sorted(case.glob("*reader*.nii.gz"))
        assert masks
        for path in masks:
            mask = load_mask(path, image)
            assert mask.shape == image.shape
            assert set(np.unique(mask.numpy())) <= {0, 1, 2}
        gland = load_mask(case / "gland_reader1.nii.gz", image).numpy()
        anatomy = load_mask(case / "t2_anatomy_reader1.nii.gz", image).numpy()
        np.testing.assert_array_equal(gland, anatomy > 0)


@pytest.mark.realdata
@realdata
def test_promise12_scan_masks_and_lone_label_load() -> None:
    root = DATA / "prostate" / "promise12_resampled"
    image = load_volume(root / "case00_image_resampled.nii.gz")
    assert tuple(image.shape) == (128, 128, 64)
    label = load_mask(root / "case00_label_resampled.nii.gz", image)
    assert int((label.numpy() > 0).any(axis=(0, 1)).sum()) == 34
    lone = load_mask(root / "case00_label_original_geometry.nii.gz")
    assert tuple(lone.shape) == (512, 512, 47)
    assert int((lone.numpy() > 0).any(axis=(0, 1)).sum()) == 25
    with pytest.raises(MedwssError, match="label does not match its image: size"):
        load_mask(root / "case00_label_original_geometry.nii.gz", image)


@pytest.mark.realdata
@realdata
@pytest.mark.parametrize("patient", ["ircadb01_01", "ircadb01_07"])
def test_liver_ct_and_structure_masks_load_on_one_grid(patient: str) -> None:
    image = load_volume(DATA / "liver" / "imagesTr" / f"{patient}.nii.gz")
    assert -1100.0 <= float(image.min()) < 0.0 < float(image.max()) <= 3100.0
    masks = sorted((DATA / "liver" / "labelsTr" / patient).glob("*.nii.gz"))
    assert len(masks) >= 2
    grid = Geometry.from_meta(image.meta["geometry"])
    for path in masks:
        mask = load_mask(path, grid)
        assert set(np.unique(mask.numpy())) <= {0, 1}


@pytest.mark.realdata
@realdata
def test_mask_written_for_the_oblique_prostate_case_keeps_its_geometry(tmp_path: Path) -> None:
    source = DATA / "prostate" / "prostate158_subset" / "001" / "t2.nii.gz"
    image = load_volume(source)
    gland = load_mask(source.parent / "gland_reader1.nii.gz", image)
    out = write_mask(gland, image, tmp_path / "001_gland.nii.gz")
    assert_same_grid(sitk_geometry(out), sitk_geometry(source))
    src, dst = nib.load(str(source)), nib.load(str(out))
    np.testing.assert_array_equal(dst.affine, src.affine)
    np.testing.assert_array_equal(dst.get_qform(), src.get_qform())
    np.testing.assert_array_equal(dst.get_sform(), src.get_sform())
    assert (dst.header["qform_code"], dst.header["sform_code"]) == (src.header["qform_code"], src.header["sform_code"])
    np.testing.assert_array_equal(np.asarray(dst.dataobj), gland.numpy())
    assert sorted(os.listdir(tmp_path)) == ["001_gland.nii.gz"]
