"""A small synthetic DICOM series written with pydicom: every tag a DICOM SEG writer needs from its source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk


def write_pydicom_series(image: sitk.Image, folder: Path, modality: str = "MR") -> list[Path]:
    """One MR (or CT) Image Storage file per slice of ``image``, with patient, study, series and frame-of-reference
    tags; files are named in reverse slice order so a reader must sort them by position.

    Returns:
        The files in slice (z) order.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    array = sitk.GetArrayFromImage(image).astype(np.int16)  # (z, y, x): rows are y, columns are x
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    spacing = image.GetSpacing()
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    sop_class = MRImageStorage if modality == "MR" else CTImageStorage
    files = []
    for z in range(array.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_of_reference
        ds.Modality, ds.Manufacturer = modality, "medwss tests"
        ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "P2", "Test^Patient", "19700101", "O"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "A1", "1"
        ds.ReferringPhysicianName, ds.SeriesNumber, ds.InstanceNumber = "", 7, z + 1
        ds.ImagePositionPatient = [f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, z))]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*direction[:, 0], *direction[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (along y), then column spacing
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = array.shape[1], array.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.PixelData = np.ascontiguousarray(array[z]).tobytes()
        path = folder / f"im{array.shape[0] - z:03d}.dcm"
        pydicom.dcmwrite(path, ds, enforce_file_format=True)
        files.append(path)
    return files
