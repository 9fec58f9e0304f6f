"""SimpleITKReader: MONAI's LoadImage path gives what load_volume gives, and user errors stay one-line MedwssErrors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.transforms import LoadImage, LoadImaged

from medwss.data.io import Geometry, load_volume, write_mask
from medwss.data.reader import SimpleITKReader, lean_dtype
from medwss.errors import MedwssError
from tests.data.io_fixtures import (
    CT_SERIES_UID,
    FORMATS,
    MR_SERIES_UID,
    mr_volume,
    oblique_volume,
    volume_for,
    write_dicom_series,
    write_nifti,
    write_nifti_array,
    write_volume,
)

# MONAI's LoadImage builds its default readers too; this one warns on every machine without nvImageCodec.
pytestmark = pytest.mark.filterwarnings("ignore:NvImgCodecPydicomReader:UserWarning")


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_image_matches_load_volume(fmt: str, tmp_path: Path) -> None:
    volume = volume_for(fmt)
    path = write_volume(volume, tmp_path, fmt)
    expected = load_volume(path)
    loaded = LoadImage(reader=SimpleITKReader(), image_only=True)(path)
    assert loaded.dtype == torch.float32
    np.testing.assert_array_equal(loaded.numpy(), expected.numpy())
    np.testing.assert_array_equal(loaded.affine.numpy(), expected.affine.numpy())
    np.testing.assert_allclose(loaded.affine.numpy(), volume.ras_affine(), atol=1e-6)
    assert loaded.meta["geometry"] == expected.meta["geometry"]
    assert loaded.meta["space"] == "RAS"
    assert loaded.meta["modality"] == expected.meta["modality"]
    assert loaded.meta["filename_or_obj"] == str(path)


def test_load_imaged_with_channel_first_and_mask_write_back(tmp_path: Path) -> None:
    volume = oblique_volume(right_handed=True)
    folder = tmp_path / "series"
    write_dicom_series(volume, folder)
    data = LoadImaged(keys="image", reader=SimpleITKReader(), ensure_channel_first=True)({"image": folder})
    image = data["image"]
    assert tuple(image.shape) == (1, *volume.array.shape)
    np.testing.assert_array_equal(image[0].numpy(), volume.array)
    out = write_mask(image > 0, image, tmp_path / "mask.nii.gz")  # channel-first mask, grid from the meta
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == volume.array.shape
    np.testing.assert_allclose(written.GetDirection(), volume.direction.ravel(), atol=1e-5)
    np.testing.assert_allclose(written.GetOrigin(), volume.origin, atol=1e-5)
    np.testing.assert_allclose(written.GetSpacing(), volume.spacing, atol=1e-5)


def test_series_uid_picks_the_smaller_series(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    write_dicom_series(oblique_volume(right_handed=True), folder, series_uid=CT_SERIES_UID, prefix="ct")
    write_dicom_series(mr_volume(), folder, series_uid=MR_SERIES_UID, modality="MR", prefix="mr")
    default = LoadImage(reader=SimpleITKReader(), image_only=True)(folder)
    chosen = LoadImage(reader=SimpleITKReader(series_uid=MR_SERIES_UID), image_only=True)(folder)
    assert (default.meta["modality"], tuple(default.shape)) == ("CT", (7, 6, 5))
    assert (chosen.meta["modality"], tuple(chosen.shape)) == ("MR", (7, 6, 3))
    np.testing.assert_array_equal(chosen.numpy(), mr_volume().array)


def test_verify_suffix(tmp_path: Path) -> None:
    reader = SimpleITKReader()
    write_dicom_series(oblique_volume(right_handed=True), tmp_path / "series")
    (tmp_path / "empty").mkdir()
    assert reader.verify_suffix("a.nii.gz") and reader.verify_suffix(Path("b.mha"))
    assert reader.verify_suffix(["a.nrrd", "b.nhdr"])
    assert reader.verify_suffix(tmp_path / "series")
    assert not reader.verify_suffix("a.png")
    assert not reader.verify_suffix(["a.nii.gz", "notes.txt"])
    assert not reader.verify_suffix(tmp_path / "empty")


def test_one_volume_per_call(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="one volume per call"):
        SimpleITKReader().read(["a.nii.gz", "b.nii.gz"])


def _nan(tmp: Path) -> Path:
    array = np.arange(210, dtype=np.float32).reshape(7, 6, 5)
    array[1, 1, 1] = np.nan
    return write_nifti_array(array, tmp / "nan.nii.gz")


def _four_d(tmp: Path) -> Path:
    return write_nifti_array(np.zeros((7, 6, 5, 3), dtype=np.float32), tmp / "dwi.nii.gz")


def _text(tmp: Path) -> Path:
    (tmp / "notes.nii.gz").write_text("not a scan\n")
    return tmp / "notes.nii.gz"


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda tmp: tmp / "absent.nii.gz", "file not found"),
        (_text, "unreadable or not an image"),
        (_nan, "1 NaN/Inf voxels"),
        (_four_d, "4D image"),
        (lambda tmp: tmp, "no DICOM series found"),
    ],
    ids=["missing", "text", "nan", "4d", "no-dicom"],
)
def test_load_image_raises_the_one_line_medwss_error(make, words: str, tmp_path: Path) -> None:
    """LoadImage wraps whatever ``read`` raises in a RuntimeError; the user must still see one line naming the file."""
    path = make(tmp_path)
    with pytest.raises(MedwssError) as err:
        LoadImage(reader=SimpleITKReader(), image_only=True)(path)
    assert "\n" not in str(err.value)
    assert str(err.value).startswith(f"{path}: ")
    assert words in err.value.problem


def test_constant_volume_is_allowed_because_labels_may_be_empty(tmp_path: Path) -> None:
    path = write_nifti_array(np.zeros((7, 6, 5), dtype=np.uint8), tmp_path / "empty_label.nii.gz")
    loaded = LoadImage(reader=SimpleITKReader(), image_only=True, dtype=None)(path)
    assert loaded.dtype == torch.uint8 and int(loaded.max()) == 0
    assert Geometry.from_meta(loaded.meta["geometry"]).size == (7, 6, 5)


def test_reader_and_load_volume_agree_on_nifti_geometry(tmp_path: Path) -> None:
    """The RAS affine equals nibabel's for a NIfTI file: MONAI's NibabelReader pipelines and ours line up."""
    import nibabel as nib

    path = write_nifti(oblique_volume(), tmp_path / "scan.nii.gz")
    loaded = LoadImage(reader=SimpleITKReader(), image_only=True)(path)
    np.testing.assert_allclose(loaded.affine.numpy(), nib.load(str(path)).affine, atol=1e-5)


@pytest.mark.parametrize(
    "stored, lean",
    [
        (np.int16, np.int16),  # CT: reoriented as int16, cast to float32 afterwards
        (np.uint8, np.uint8),
        (np.int8, np.int8),
        (np.uint16, np.float32),  # torch barely computes on uint16
        (np.int32, np.float32),
        (np.float32, np.float32),
        (np.float64, np.float32),  # converted in the one copy out of ITK
    ],
)
def test_lean_dtype(stored, lean) -> None:
    assert lean_dtype(np.dtype(stored)) == np.dtype(lean)


def test_lean_reader_keeps_an_int16_scan_and_a_uint8_mask(tmp_path: Path) -> None:
    scan = write_nifti_array(np.arange(210, dtype=np.int16).reshape(7, 6, 5) - 100, tmp_path / "ct.nii.gz")
    mask = write_nifti_array((np.arange(210).reshape(7, 6, 5) % 3).astype(np.int16), tmp_path / "mask.nii.gz")
    reader = SimpleITKReader()
    reader.lean, reader.keep_dtype = True, {str(mask)}
    assert reader.get_data(reader.read(scan))[0].dtype == np.int16
    assert reader.get_data(reader.read(mask))[0].dtype == np.uint8
