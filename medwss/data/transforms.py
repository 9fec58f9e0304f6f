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
    CropForegroundd,
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    MapTransform,
    Orientationd,
    Resized,
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
        return [CheckScand(key, "CT"), WindowIntensityd(key, lo, hi)]
    lower, upper = preset.percentiles
    return [
        CheckScand(key, preset.modality),
        ScaleIntensityRangePercentilesd(key, lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True),
    ]


class WindowIntensityd(MapTransform):
    """Map the HU window [lo, hi] to [0, 1] and clip, in place on a float tensor (MONAI's ScaleIntensityRanged makes
    two new copies: on a 600-slice CT, 1.2 GB). Same values as ``ScaleIntensityRanged(lo, hi, 0, 1, clip=True)``."""

    def __init__(self, keys: str | Sequence[str], lo: float, hi: float, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.lo, self.hi = float(lo), float(hi)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            if isinstance(image, MetaTensor) and not image.is_floating_point():
                image = image.float()
            elif not (isinstance(image, torch.Tensor) and image.is_floating_point()):
                image = torch.as_tensor(image, dtype=torch.float32)
            image.sub_(self.lo).div_(self.hi - self.lo).clamp_(0.0, 1.0)
            d[key] = image
        return d


def source_of(image: Any) -> str:
    """The file a MetaTensor was loaded from (a path is its own file), for error messages and re-reading."""
    if isinstance(image, str | Path):
        return str(image)
    return str(getattr(image, "meta", {}).get("filename_or_obj", "image"))


class LoadVolumed(LoadImaged):
    """``LoadImaged`` through medwss's ``SimpleITKReader`` only.

    Given a reader at construction, ``LoadImage`` still falls back to every other registered reader when it fails and
    then raises a generic RuntimeError; passing the reader per call makes the reader's MedwssError (file not found,
    unreadable, ...) reach the user instead.
    """

    def __init__(
        self,
        keys: str | Sequence[str],
        series_uid: str | None = None,
        allow_missing_keys: bool = True,
        mask_keys: Sequence[str] = (),
    ):
        self.volume_reader = SimpleITKReader(series_uid)
        self.volume_reader.lean = True
        self.mask_keys = tuple(mask_keys)
        with warnings.catch_warnings():  # LoadImage builds all default readers; the DICOM codec one warns if unused
            warnings.filterwarnings("ignore", message="NvImgCodecPydicomReader")
            # dtype=None: the reader already gives scans in their lean type (int16 CT, else float32; converted in its
            # one copy out of ITK) and integer masks; volume_transforms casts the scan to float32 after reorienting.
            super().__init__(
                keys, reader=self.volume_reader, image_only=True, allow_missing_keys=allow_missing_keys, dtype=None
            )

    def __call__(self, data: Mapping[Hashable, Any], reader: Any = None) -> dict[Hashable, Any]:
        self.volume_reader.keep_dtype = {str(data[k]) for k in self.mask_keys if isinstance(data.get(k), str | Path)}
        return super().__call__(data, reader or self.volume_reader)


class CheckScand(MapTransform):
    """Refuse a scan the bundle cannot segment: a constant one, or one of another modality than it was trained on.

    Rules: a constant scan (all zero included) holds nothing to find. For a CT bundle, values must look like
    Hounsfield units (``ct_range_problem``) and reach below 0 HU (air is about -1000, fat -100): an MR scan has no
    negative values. For an MR bundle, values far below 0 (under -500) are CT air, not MR magnitude. A DICOM
    modality tag that names another modality decides on its own. A user who knows better sets ``allow_mismatch``
    (``medwss segment --allow-modality-mismatch``); a constant scan is refused always.

    Raises:
        MedwssError: (image file, what is wrong and, for a mismatch, the flag that overrides it).
    """

    OVERRIDE = "pass --allow-modality-mismatch to segment it anyway"

    def __init__(
        self, keys: str | Sequence[str], modality: str, min_range: float = 50.0, allow_mismatch: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys=False)
        self.modality = modality.upper()
        self.min_range = min_range
        self.allow_mismatch = allow_mismatch

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image, source = d[key], source_of(d[key])
            lo, hi = float(image.min()), float(image.max())
            if lo == hi:
                raise MedwssError(source, f"constant image (every voxel is {lo:g}): nothing to segment")
            problem = self.mismatch(lo, hi, str(getattr(image, "meta", {}).get("modality", "") or ""))
            if problem and not self.allow_mismatch:
                raise MedwssError(source, f"{problem}; {self.OVERRIDE}")
            if problem:
                logger.warning("%s: %s (allowed)", source, problem)
        return d

    def mismatch(self, lo: float, hi: float, tag: str) -> str | None:
        """Why a scan with values ``lo..hi`` and DICOM modality ``tag`` does not fit this bundle, or None."""
        tag = tag.strip().upper()
        if tag in ("CT", "MR") and tag != self.modality:
            return f"a {tag} scan (DICOM modality) for a bundle trained on {self.modality}"
        if self.modality == "CT":
            problem = ct_range_problem(lo, hi, self.min_range)
            if problem:
                return f"{problem} (this bundle is trained on CT)"
            if lo >= 0.0:
                return f"values {lo:g}..{hi:g} hold no negative Hounsfield unit: not CT (an MR scan?) for a CT bundle"
        elif self.modality == "MR" and lo < -500.0:
            return f"values {lo:g}..{hi:g} reach CT air (below -500): a CT scan for a bundle trained on MR"
        return None


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


class CropToPriord(CropForegroundd):
    """Crop the scan and its masks in-plane to the organ prior's box (every slice kept), ``margin`` voxels around it.

    Why: a liver tumour is small beside the field of view; resized whole to the working size, most tumours cover less
    than half of one game patch, so no patch method can hold them (``benchmarks/results/crop_oracle.md``: the
    oracle patch mask's 3D Dice goes from 0.26 to 0.46 at 16 x 16 patches when the liver's box is resized instead).
    MONAI's ``CropForegroundd`` does the crop and records it, so ``medwss.data.slices.invert_to_original`` pads the
    mask back onto the scan's grid; the z margin is unbounded, so no slice is dropped and ``slice_index`` holds.

    Raises:
        MedwssError: the sample has no prior, or an empty one (nothing to crop to).
    """

    def __init__(self, keys: Sequence[str], margin: int, prior_key: str = PRIOR) -> None:
        super().__init__(
            keys, source_key=prior_key, margin=(int(margin), int(margin), 2**31 - 1), allow_smaller=True,
            allow_missing_keys=True,
        )  # fmt: skip

    def __call__(self, data: Mapping[Hashable, Any], lazy: bool | None = None) -> dict[Hashable, Any]:
        if self.source_key not in data:
            scan = data.get(self.keys[0])
            where = source_of(scan) if hasattr(scan, "meta") else str(scan or "scan")
            raise MedwssError(where, "this bundle crops to the organ prior: give the prior (--roi-mask)")
        if not bool((torch.as_tensor(data[self.source_key]) > 0).any()):
            raise MedwssError(source_of(data[self.source_key]), "the organ prior is empty: nothing to crop to")
        return super().__call__(data, lazy=lazy)


def volume_transforms(
    preset: str | IntensityPreset,
    working_size: int = 128,
    keys: Sequence[str] = (IMAGE, LABEL, PRIOR),
    *,
    window: tuple[float, float] | None = None,
    image_mode: str = "area",
    crop_margin: int | None = None,
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
        crop_margin: crop in-plane to the organ prior's box plus this many voxels before resizing (``CropToPriord``);
            None keeps the whole field of view. Needs the prior key.

    Raises:
        MedwssError (wrapped by MONAI in RuntimeError; see ``unwrap_errors``): unreadable files, masks off the
        image's grid, a non-HU scan for a CT preset, a non-axial scan.
    """
    preset = get_preset(preset, window)
    image_key, mask_keys = keys[0], list(keys[1:])
    if crop_margin is not None and PRIOR not in mask_keys:
        raise ValueError("crop_margin needs the prior among the keys")
    spatial_keys = [image_key, *mask_keys]
    mask_only = [CheckGeometryd(mask_keys, ref_key=image_key)] if mask_keys else []
    resize = Resized(
        spatial_keys,
        spatial_size=(working_size, working_size, -1),
        mode=[image_mode] + ["nearest-exact"] * len(mask_keys),
        dtype=[torch.float32] + [None] * len(mask_keys),
        allow_missing_keys=True,
    )
    # Masks resize in their own dtype (uint8 or float32 from the reader): no full-size float copy. A per-key dtype of
    # None makes MONAI's Resize fall back to its own dtype, float32 by default; None there means the input's.
    resize.resizer.dtype = None
    return Compose(
        [
            LoadVolumed(spatial_keys, mask_keys=mask_keys),
            EnsureChannelFirstd(spatial_keys, allow_missing_keys=True),
            *mask_only,
            AddSliceIndexd(image_key),
            Orientationd([*spatial_keys, SLICE_INDEX], axcodes="RAS", labels=RAS_LABELS, allow_missing_keys=True),
            ExtractSliceIndexd(image_key),
            *([CropToPriord(spatial_keys, crop_margin, PRIOR)] if crop_margin is not None else []),
            # The scan's one float32 copy, made after the reorientation flips (which copy) moved its stored int16
            # (``reader.lean_dtype``): peak 1.5 float32 copies of the volume there instead of 2.
            EnsureTyped(image_key, dtype=torch.float32),
            *intensity_transforms(preset, image_key),
            resize,
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
    """Run a preprocessing pipeline (``volume_transforms``, a bundle's ``preprocessing``) on one case dict, raising
    user errors as MedwssError instead of MONAI's wrapping RuntimeError."""
    with unwrap_errors():
        return transforms(dict(data))


def case_id(data: Mapping[str, Any], image_key: str = IMAGE) -> str:
    """The case id of a case dict: its 'case' entry, else the image file name without suffix."""
    if Keys.CASE.value in data:
        return str(data[Keys.CASE.value])
    image = data[image_key]
    return strip_suffix(source_of(image) if hasattr(image, "meta") else Path(image))
