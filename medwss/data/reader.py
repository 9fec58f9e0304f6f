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

    def verify_suffix(self, filename: Sequence[str | os.PathLike] | str | os.PathLike) -> bool:
        names = [filename] if isinstance(filename, str | os.PathLike) else list(filename)
        return all(is_volume_path(n) for n in names)

    def read(self, data: Sequence[str | os.PathLike] | str | os.PathLike, **kwargs: Any) -> Any:
        if not isinstance(data, str | os.PathLike):
            if len(data) != 1:
                raise ValueError("SimpleITKReader reads one volume per call")
            data = data[0]
        try:
            return read_sitk(data, self.series_uid), str(data)
        except MedwssError as err:
            return err, str(data)

    def get_data(self, img: Any) -> tuple[np.ndarray, dict]:
        image, path = img
        if isinstance(image, MedwssError):
            raise image
        array = scalar_array(image, path)
        validate_array(array, path, allow_constant=True)
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
