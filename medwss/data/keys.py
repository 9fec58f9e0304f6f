"""Dictionary keys shared by every data pipeline (as ``monai.utils.CommonKeys`` names MONAI's)."""

from __future__ import annotations

from enum import Enum


class Keys(str, Enum):
    """Keys of a case or slice dictionary.

    ``PRIOR`` is the optional organ-prior mask (e.g. the liver for liver tumours): it limits where the ROI may be and
    is never the ROI label itself.
    """

    IMAGE = "image"
    LABEL = "label"
    PRIOR = "prior"
    PRESENCE = "presence"
    CASE = "case"
    PATIENT = "patient"
    SLICE = "slice"
    SLICE_INDEX = "slice_index"
    PRED = "pred"

    def __str__(self) -> str:
        return self.value
