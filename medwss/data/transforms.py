"""Volume pipeline: load, check, reorient to RAS, normalise intensities, resize in-plane (MONAI dict transforms).

Every scan becomes a (1, W, W, Z) float MetaTensor in [0, 1] whose slices stay the scan's acquired slices (only the
in-plane grid is resized), so a slice-level presence label keeps its meaning. Because reorientation may reverse the
slice order (e.g. an LPS scan stored inferior-to-superior flipped), the pipeline also returns ``slice_index``: for
each processed slice, the z index it came from in the file as loaded. The spatial steps are MONAI invertible
transforms, so a prediction can be mapped back onto the file's grid (``medwss.data.slices.invert_to_original``).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    Resized,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Transform,
)

from medwss.data.io import Geometry, ct_range_problem, strip_suffix
from medwss.data.keys import Keys
from medwss.data.reader import SimpleITKReader
from medwss.errors import MedwssError

logger = logging.getLogger(__name__)

IMAGE, LABEL, PRIOR, SLICE_INDEX = Keys.IMAGE.value, Keys.LABEL.value, Keys.PRIOR.value, Keys.SLICE_INDEX.value
# Passed explicitly: nibabel's labels, the convention of our RAS affines (MONAI warns that its default will change).
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
MASK_DTYPE = torch.int16  # label maps after resizing: exact integers, half the memory of int32


@dataclass(frozen=True)
class IntensityPreset:
    """How a modality's raw values become [0, 1]; kept with a trained model so inference normalises alike."""

    name: str
    """Preset name, e.g. 'ct_liver'."""
    modality: str
    """'CT' (fixed Hounsfield window, checked for HU) or 'MR' (per-volume percentiles: MR has no absolute units)."""
    window: tuple[float, float] | None = None
    """CT: HU mapped to 0 and 1, values outside are clipped."""
    percentiles: tuple[float, float] | None = None
    """MR: per-volume percentiles mapped to 0 and 1, values outside are clipped."""


PRESETS: dict[str, IntensityPreset] = {
    # Liver window of the LiTS literature: parenchyma and lesions in [-100, 250] HU.
    "ct_liver": IntensityPreset("ct_liver", "CT", window=(-100.0, 250.0)),
    # Abdominal soft-tissue window of MONAI's BTCV (Swin UNETR) tutorial.
    "ct_abdomen": IntensityPreset("ct_abdomen", "CT", window=(-175.0, 250.0)),
    # The HU window that puts HU CT on the footing of the LiTS slices' channel 1 (an 8-bit render of unknown window):
    # fitted on liver-voxel quantiles of 3D-IRCADb patients 1 and 7 against LiTS (bundles/liver_tumour/docs).
    "ct_liver_lits": IntensityPreset("ct_liver_lits", "CT", window=(27.0, 162.0)),
    "mr": IntensityPreset("mr", "MR", percentiles=(1.0, 99.0)),
}


def get_preset(preset: str | IntensityPreset, window: tuple[float, float] | None = None) -> IntensityPreset:
    """Look up a preset by name, optionally with another HU window (CT only).

    Raises:
        MedwssError: unknown name, or a window that is empty or given for MR.
    """
    if not isinstance(preset, IntensityPreset):
        if preset not in PRESETS:
            raise MedwssError("preset", f"unknown intensity preset {preset!r} (known: {', '.join(PRESETS)})")
        preset = PRESETS[preset]
    if window is None:
        return preset
    if preset.modality != "CT":
        raise MedwssError("preset", f"a HU window only applies to CT presets, not {preset.name!r}")
    lo, hi = (float(w) for w in window)
    if not lo < hi:
        raise MedwssError("preset", f"HU window {lo:g}..{hi:g} is empty")
    return replace(preset, window=(lo, hi))


def intensity_transforms(preset: IntensityPreset, key: str = IMAGE) -> list[Transform]:
    """The preset as MONAI transforms on ``key``: range check (CT), then scaling to [0, 1] with clipping."""
    if preset.modality == "CT":
        lo, hi = preset.window
        return [
            CheckIntensityRanged(key),
            ScaleIntensityRanged(key, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True),
        ]
    lower, upper = preset.percentiles
    return [ScaleIntensityRangePercentilesd(key, lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True)]


def source_of(image: Any) -> str:
    """The file a MetaTensor was loaded from, for error messages."""
    return str(getattr(image, "meta", {}).get("filename_or_obj", "image"))


class LoadVolumed(LoadImaged):
    """``LoadImaged`` through medwss's ``SimpleITKReader`` only.

    Given a reader at construction, ``LoadImage`` still falls back to every other registered reader when it fails and
    then raises a generic RuntimeError; passing the reader per call makes the reader's MedwssError (file not found,
    unreadable, ...) reach the user instead.
    """

    def __init__(self, keys: str | Sequence[str], series_uid: str | None = None, allow_missing_keys: bool = True):
        self.volume_reader = SimpleITKReader(series_uid)
        with warnings.catch_warnings():  # LoadImage builds all default readers; the DICOM codec one warns if unused
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
            super().__init__(keys, reader=self.volume_reader, image_only=True, allow_missing_keys=allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, Any], reader: Any = None) -> dict[Hashable, Any]:
        return super().__call__(data, reader or self.volume_reader)


class CheckIntensityRanged(MapTransform):
    """Refuse a scan for a CT preset when its values are clearly not Hounsfield units.

    Rule: a CT of a body spans at least air or fat to soft tissue, hundreds of HU, so a value range under
    ``min_range`` (50) HU, or all values within [0, 1] (an already normalised export), is not HU. A scan with no
    value below 0 only logs a warning: air is about -1000 HU, but a tightly cropped scan may hold none, and a
    missing rescale intercept cannot be told from it for sure.

    Raises:
        MedwssError: (image file, "values a..b do not look like CT Hounsfield units").
    """

    def __init__(self, keys: str | Sequence[str], min_range: float = 50.0, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.min_range = min_range

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            lo, hi = float(d[key].min()), float(d[key].max())
            problem = ct_range_problem(lo, hi, self.min_range)
            if problem:
                raise MedwssError(source_of(d[key]), problem)
            if lo >= 0.0:
                logger.warning(
                    "%s: no value below 0 HU (min %g); is the rescale intercept applied?", source_of(d[key]), lo
                )
        return d


class CheckGeometryd(MapTransform):
    """Refuse masks whose voxel grid differs from the image's: each is reoriented and resized on its own.

    Raises:
        MedwssError: (mask file, "... does not match its image: ...").
    """

    def __init__(self, keys: str | Sequence[str], ref_key: str = IMAGE, allow_missing_keys: bool = True) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        reference = Geometry.from_meta(d[self.ref_key].meta["geometry"])
        for key in self.key_iterator(d):
            problem = reference.mismatch(Geometry.from_meta(d[key].meta["geometry"]))
            if problem:
                raise MedwssError(source_of(d[key]), f"{key} does not match its image: {problem}")
        return d


class AddSliceIndexd(MapTransform):
    """Add a (1, 1, 1, Z) volume of original slice indices with the image's affine.

    Reoriented by the same ``Orientationd`` as the image, it records where each file slice ends up, using MONAI's
    own orientation logic rather than a copy of it; it is tiny, so it costs nothing.
    """

    def __init__(self, ref_key: str = IMAGE, index_key: str = SLICE_INDEX) -> None:
        super().__init__(ref_key)
        self.ref_key, self.index_key = ref_key, index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.ref_key]
        num_slices = image.shape[-1]
        index = torch.arange(num_slices, dtype=torch.float32).reshape(1, 1, 1, num_slices)
        d[self.index_key] = MetaTensor(
            index, affine=image.affine.clone(), meta={"space": image.meta.get("space", "RAS")}
        )
        return d


class ExtractSliceIndexd(MapTransform):
    """Turn the reoriented index volume into a (Z,) int64 tensor: the file's z for each processed slice.

    Raises:
        MedwssError: the reorientation moved the file's slice axis off the last axis (not an axial scan).
    """

    def __init__(self, ref_key: str = IMAGE, index_key: str = SLICE_INDEX) -> None:
        super().__init__(index_key)
        self.ref_key, self.index_key = ref_key, index_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        index, image = d[self.index_key], d[self.ref_key]
        num_slices = index.numel()
        if tuple(index.shape[1:]) != (1, 1, num_slices) or image.shape[-1] != num_slices:
            original = image.meta.get("original_affine", image.affine)
            codes = "".join(nib.aff2axcodes(np.asarray(original)))
            target = int(nib.io_orientation(np.asarray(original))[2, 0])
            raise MedwssError(
                source_of(image),
                f"slice axis is not axial after reorientation (file axes {codes}: file axis 2 becomes RAS axis "
                f"{target}); reslice the scan axially first",
            )
        d[self.index_key] = index.as_tensor().reshape(-1).round().to(torch.int64)
        return d


def volume_transforms(
    preset: str | IntensityPreset,
    working_size: int = 128,
    keys: Sequence[str] = (IMAGE, LABEL, PRIOR),
    *,
    window: tuple[float, float] | None = None,
    image_mode: str = "area",
) -> Compose:
    """The deterministic volume pipeline for dicts {image: path, label?: path, prior?: path, ...}.

    Output: image (1, W, W, Z) float32 MetaTensor in [0, 1], masks (1, W, W, Z) int16 MetaTensors, and
    ``slice_index`` (Z,) int64 = file z of each processed slice. Other keys (case, patient) pass through.

    Args:
        preset: a ``PRESETS`` name or an ``IntensityPreset``.
        working_size: in-plane size W; the number of slices is kept.
        keys: the scan first, then its masks (label, prior), each optional in a given dict.
        window: another HU window for a CT preset.
        image_mode: image interpolation; 'area' averages when shrinking (the usual case) and is exact at scale 1;
            use 'bilinear' when the working size exceeds the scans' (area would replicate pixels).
            Masks always use 'nearest-exact' (pixel-centre aligned, unlike torch's 'nearest').

    Raises:
        MedwssError (wrapped by MONAI in RuntimeError; see ``unwrap_errors``): unreadable files, masks off the
        image's grid, a non-HU scan for a CT preset, a non-axial scan.
    """
    preset = get_preset(preset, window)
    image_key, mask_keys = keys[0], list(keys[1:])
    spatial_keys = [image_key, *mask_keys]
    mask_only = [CheckGeometryd(mask_keys, ref_key=image_key)] if mask_keys else []
    return Compose(
        [
            LoadVolumed(spatial_keys),
            EnsureChannelFirstd(spatial_keys, allow_missing_keys=True),
            *mask_only,
            AddSliceIndexd(image_key),
            Orientationd([*spatial_keys, SLICE_INDEX], axcodes="RAS", labels=RAS_LABELS, allow_missing_keys=True),
            ExtractSliceIndexd(image_key),
            *intensity_transforms(preset, image_key),
            Resized(
                spatial_keys,
                spatial_size=(working_size, working_size, -1),
                mode=[image_mode] + ["nearest-exact"] * len(mask_keys),
                allow_missing_keys=True,
            ),
            EnsureTyped(image_key, dtype=torch.float32),
            *([EnsureTyped(mask_keys, dtype=MASK_DTYPE, allow_missing_keys=True)] if mask_keys else []),
        ]
    )


@contextlib.contextmanager
def unwrap_errors() -> Iterator[None]:
    """Re-raise a MedwssError that MONAI's ``apply_transform`` wrapped in RuntimeError, so the CLI reports it."""
    try:
        yield
    except RuntimeError as err:
        cause: BaseException | None = err
        while cause is not None and not isinstance(cause, MedwssError):
            cause = cause.__cause__
        if cause is None:
            raise
        raise cause from None


def process_volume(data: Mapping[str, Any], transforms: Compose) -> dict[str, Any]:
    """Run the volume pipeline on one case dict, raising user errors as MedwssError."""
    with unwrap_errors():
        return transforms(dict(data))


def case_id(data: Mapping[str, Any], image_key: str = IMAGE) -> str:
    """The case id of a case dict: its 'case' entry, else the image file name without suffix."""
    if Keys.CASE.value in data:
        return str(data[Keys.CASE.value])
    image = data[image_key]
    return strip_suffix(source_of(image) if hasattr(image, "meta") else Path(image))
