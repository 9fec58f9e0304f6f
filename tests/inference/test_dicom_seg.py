"""DICOM SEG output: a SEG that references its source series, frame by frame, and equals the NIfTI mask of the run."""

from __future__ import annotations

import json
import sys

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from medwss.data.dicom_seg import SegmentInfo, segment_info, write_dicom_seg
from medwss.data.io import read_mask_array
from tests.cli.helpers import assert_one_error_line, invoke
from tests.data.dicom_seg_fixtures import write_pydicom_series
from tests.inference.test_segment import trained  # noqa: F401  (module fixture: a tiny bundle trained once)

hd = pytest.importorskip("highdicom")


def _image(shape_zyx=(5, 12, 16)) -> sitk.Image:
    """An oblique, anisotropic MR-like volume (x != y sizes, so a transposed frame cannot pass)."""
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray((100 + 50 * rng.random(shape_zyx)).astype(np.int16))
    image.SetSpacing((0.7, 0.9, 3.0))
    image.SetOrigin((-20.0, 15.0, 4.0))
    c, s = np.cos(0.3), np.sin(0.3)
    image.SetDirection((c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0))
    return image


def _frames_by_slice(seg: pydicom.Dataset, sources: list[pydicom.Dataset]) -> dict[int, np.ndarray]:
    """SEG frames keyed by the index of the source slice they lie on (matched by position and reference)."""
    positions = [np.asarray(ds.ImagePositionPatient, float) for ds in sources]
    uids = [ds.SOPInstanceUID for ds in sources]
    out = {}
    for k, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        position = np.asarray(group.PlanePositionSequence[0].ImagePositionPatient, float)
        z = int(np.argmin([np.linalg.norm(position - p) for p in positions]))
        np.testing.assert_allclose(position, positions[z], atol=1e-3)
        derivation = group.DerivationImageSequence[0].SourceImageSequence[0]
        assert derivation.ReferencedSOPInstanceUID == uids[z]
        identification = group if "SegmentIdentificationSequence" in group else seg.SharedFunctionalGroupsSequence[0]
        assert identification.SegmentIdentificationSequence[0].ReferencedSegmentNumber == 1
        out[z] = seg.pixel_array[k] if seg.pixel_array.ndim == 3 else seg.pixel_array
    return out


def _check_references(seg: pydicom.Dataset, sources: list[pydicom.Dataset]) -> None:
    first = sources[0]
    assert seg.Modality == "SEG" and seg.SegmentationType == "BINARY"
    assert seg.StudyInstanceUID == first.StudyInstanceUID
    assert seg.FrameOfReferenceUID == first.FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    referenced = {r.ReferencedSOPInstanceUID for r in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
    assert referenced == {ds.SOPInstanceUID for ds in sources}
    assert (int(seg.Rows), int(seg.Columns)) == (int(first.Rows), int(first.Columns))
    shared = seg.SharedFunctionalGroupsSequence[0]
    np.testing.assert_allclose(
        shared.PlaneOrientationSequence[0].ImageOrientationPatient, first.ImageOrientationPatient, atol=1e-6
    )
    np.testing.assert_allclose(shared.PixelMeasuresSequence[0].PixelSpacing, first.PixelSpacing, atol=1e-6)


def _sources(folder):
    from medwss.data.dicom_seg import read_source_series

    return read_source_series(folder)


def test_write_dicom_seg_puts_each_mask_slice_on_its_source_frame(tmp_path):
    folder = tmp_path / "series"
    write_pydicom_series(_image(), folder)
    sources = _sources(folder)
    mask = np.zeros((16, 12, 5), bool)  # (x, y, z) on the series grid
    mask[3:9, 2:5, 1] = True  # a different, asymmetric block on each slice
    mask[10:15, 6:11, 3] = True
    mask[0, 0, 4] = True
    out = write_dicom_seg(mask, folder, tmp_path / "m.seg.dcm", SegmentInfo("prostate", "medwss t rlsp", "v1"))
    seg = pydicom.dcmread(out)
    _check_references(seg, sources)
    frames = _frames_by_slice(seg, sources)
    assert sorted(frames) == list(range(5))
    for z, frame in frames.items():
        np.testing.assert_array_equal(frame.astype(bool), mask[:, :, z].T, err_msg=f"slice {z}")
    description = seg.SegmentSequence[0]
    assert description.SegmentLabel == "prostate"
    assert description.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Prostate"
    algorithm = description.SegmentationAlgorithmIdentificationSequence[0]
    assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("medwss t rlsp", "v1")
    assert hd.seg.segread(out).number_of_segments == 1  # highdicom reads it back as a SEG
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_segment_info_names_the_bundle_label_and_versions():
    from medwss import __version__
    from tests.bundle.fixtures import REPO

    bundle = REPO / "bundles" / "liver_tumour"
    version = json.loads((bundle / "configs" / "metadata.json").read_text())["version"]
    info = segment_info(bundle, "cam")
    assert info.label == "tumour"
    assert info.algorithm_name == "medwss liver_tumour cam"
    assert info.algorithm_version == f"medwss {__version__}, bundle {version}"


def test_segment_dicom_series_to_seg_and_nifti_frame_by_frame(tmp_path, trained):  # noqa: F811
    bundle, data = trained
    folder = tmp_path / "p2"
    write_pydicom_series(sitk.Cast(sitk.ReadImage(str(data / "p2" / "t2.nii.gz")), sitk.sitkInt16), folder)
    nifti = tmp_path / "out" / "p2_mask.nii.gz"
    result = invoke(
        "segment", folder, "-o", nifti, "--bundle", bundle, "--method", "rlsp", "--format", "both", "--no-progress"
    )
    assert result.exit_code == 0, result.output
    seg_file = tmp_path / "out" / "p2_mask.seg.dcm"
    assert result.stdout.split() == ["wrote", str(nifti), "wrote", str(seg_file)]
    mask, _ = read_mask_array(nifti, folder)  # the NIfTI on exactly the series' grid, (x, y, z)
    assert mask.any(), "the tiny bundle found nothing: the frame check below would be trivial"
    sources = _sources(folder)
    seg = pydicom.dcmread(seg_file)
    _check_references(seg, sources)
    frames = _frames_by_slice(seg, sources)
    assert sorted(frames) == list(range(len(sources)))
    for z, frame in frames.items():
        np.testing.assert_array_equal(frame.astype(bool), mask[:, :, z].T > 0, err_msg=f"slice {z}")
    assert seg.SegmentSequence[0].SegmentLabel == "prostate"
    assert seg.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0].AlgorithmName.endswith("rlsp")

    only = invoke("segment", folder, "-o", tmp_path / "only.dcm", "--bundle", bundle, "--method", "rlsp",
                  "--format", "dicom-seg", "--no-progress")  # fmt: skip
    assert only.exit_code == 0, only.output
    assert only.stdout.split() == ["wrote", str(tmp_path / "only.dcm")]
    assert not list(tmp_path.glob("only*.nii*"))


def test_dicom_seg_refuses_a_volume_file_in_one_line(tmp_path, trained):  # noqa: F811
    bundle, data = trained
    scan = data / "p0" / "t2.nii.gz"
    result = invoke("segment", scan, "-o", tmp_path / "m.nii.gz", "--bundle", bundle, "--format", "dicom-seg")
    assert_one_error_line(result, scan, "--format dicom-seg: DICOM SEG needs a DICOM series folder")
    assert list(tmp_path.iterdir()) == []


def test_missing_highdicom_is_one_line_with_the_pip_command_before_any_work(tmp_path, monkeypatch):
    folder = tmp_path / "series"
    write_pydicom_series(_image(), folder)
    monkeypatch.setitem(sys.modules, "highdicom", None)  # import highdicom -> ImportError
    # The bundle does not even exist: the check comes before the bundle is read.
    result = invoke("segment", folder, "--bundle", tmp_path / "nope", "--format", "both", "-o", tmp_path / "o.nii.gz")
    assert_one_error_line(result, "--format both", "DICOM SEG output needs highdicom")
    assert "pip install 'medwss[dicom-seg]'" in result.stderr
    assert not (tmp_path / "o.nii.gz").exists()


def test_a_series_without_frame_of_reference_is_refused_before_any_mask(tmp_path, trained):  # noqa: F811
    bundle, _ = trained
    folder = tmp_path / "series"
    files = write_pydicom_series(_image(), folder)
    ds = pydicom.dcmread(files[2])
    del ds.FrameOfReferenceUID
    ds.save_as(files[2])
    result = invoke("segment", folder, "-o", tmp_path / "out" / "m.nii.gz", "--bundle", bundle, "--format", "both")
    assert_one_error_line(result, files[2], "no FrameOfReferenceUID: cannot place a DICOM SEG frame")
    assert not (tmp_path / "out").exists()
