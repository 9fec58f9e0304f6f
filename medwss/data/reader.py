"""A MONAI ``ImageReader`` over medwss's SimpleITK loader, so ``LoadImage(d)`` reads every format medwss reads.

MONAI's own ``ITKReader`` needs the ``itk`` package (hundreds of MB); SimpleITK is already a dependency and reads
the same formats, DICOM series included. Geometry and validation are those of ``medwss.data.io``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from monai.data import ImageReader

from medwss.data.io import Geometry, is_volume_path, modality_of, read_sitk, scalar_array, validate_array
from medwss.errors import MedwssError

# Stored types torch handles and float32 holds exactly, at a half or a quarter of its size.
NARROW_SCAN_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def lean_dtype(stored: np.dtype) -> np.dtype:
    """The type a scan leaves ITK in on the lean path: a narrow integer type as stored, anything else float32.

    A CT is stored as int16: kept so, the full-size steps before the intensity window (reorientation flips, which
    copy) move half the bytes of float32, and the one float32 copy is made afterwards (``volume_transforms``), which
    gives the same values. Other types (float64, int32; uint16, which torch barely computes on) become float32 in
    the one copy out of ITK, as float32 is what the pipeline computes in.
    """
    return stored if np.dtype(stored) in NARROW_SCAN_DTYPES else np.dtype(np.float32)


class SimpleITKReader(ImageReader):
    """Reads NIfTI, MetaImage, NRRD and DICOM-series folders into (x, y, z) arrays with a RAS affine.

    A file medwss cannot use raises ``MedwssError`` from ``get_data``, not ``read``: ``LoadImage`` turns whatever
    ``read`` raises into a many-line ``RuntimeError`` listing every registered reader, and the CLI must get the
    one-line user error instead.

    Args:
        series_uid: which DICOM series to read when a folder holds several (default: the largest).
    """

    def __init__(self, series_uid: str | None = None) -> None:
        super().__init__()
        self.series_uid = series_uid
        # LoadVolumed's lean path: scans come out in the narrowest exact type (``lean_dtype``), the paths in
        # keep_dtype (masks) with their stored integers. Off, every file keeps its stored dtype (LoadImage converts).
        self.lean = False
        self.keep_dtype: set[str] = set()

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        names = [filename] if isinstance(filename, str | os.PathLike) else list(filename)
        return all(is_volume_path(n) for n in names)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        if not isinstance(data, str | os.PathLike):
            if len(data) != 1:
                raise ValueError("SimpleITKReader reads one volume per call")
            data = data[0]
        try:
            # A list, not a tuple: get_data takes the ITK image out of it, so its buffer is freed as soon as the
            # voxels are copied out (LoadImage keeps what read returned until it returns).
            return [read_sitk(data, self.series_uid), str(data)]
        except MedwssError as err:
            return [err, str(data)]

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        """The voxels (x, y, z) and meta of a read image (with ``lean``, a scan in ``lean_dtype``; a file in
        ``keep_dtype``, a label map or prior, keeps its integers: a uint8 mask as float32 takes four times the
        memory)."""
        image, path = img
        img[0] = None
        if isinstance(image, MedwssError):
            raise image
        dtype = None
        if image.GetNumberOfComponentsPerPixel() == 1:
            import SimpleITK as sitk

            view = sitk.GetArrayViewFromImage(image)  # checked in place, before any copy
            validate_array(np.transpose(view, tuple(range(view.ndim - 1, -1, -1))), path, allow_constant=True)
            if self.lean:
                mask = str(path) in self.keep_dtype
                # A mask of labels 0..255 as uint8 (torch resizes uint8 by nearest neighbour without a float copy);
                # other masks as float32.
                small = mask and view.dtype.kind in "iub" and view.size and view.min() >= 0 and view.max() <= 255
                dtype = np.uint8 if small else np.float32 if mask else lean_dtype(view.dtype)
        array = scalar_array(image, path, dtype)
        geometry = Geometry.of(image)
        affine = geometry.ras_affine()
        meta = {
            "affine": affine,
            "original_affine": affine.copy(),
            "space": "RAS",
            "spatial_shape": np.asarray(array.shape),
            "original_channel_dim": float("nan"),
            "geometry": geometry.to_meta(),
            "modality": modality_of(image),
        }
        return array, meta
