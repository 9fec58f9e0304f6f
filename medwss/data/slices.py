"""2D slice samples from processed volumes, and the way back from per-slice predictions to the scan's own grid.

The detector and the self-play agents work on axial slices. A sample is {image (C, H, W), presence (K,), prior
(1, H, W) bool, case, patient, slice_index}, where ``slice_index`` is the z of the slice in the file as loaded, the
index the presence table uses. Volumes are processed once (MONAI ``CacheDataset``); the detector's training
augments whole batches (``detector.training``), so samples are served as cached.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

import numpy as np
import torch
from monai.data import CacheDataset, MetaTensor
from monai.transforms import (
    Compose,
    InvertibleTransform,
    Resized,
    TraceableTransform,
)
from monai.transforms.utils import allow_missing_keys_mode, convert_applied_interp_mode, scale_affine
from monai.utils import TraceKeys

from medwss.data.keys import Keys
from medwss.data.transforms import case_id, source_of, unwrap_errors
from medwss.errors import MedwssError

logger = logging.getLogger(__name__)

IMAGE, LABEL, PRIOR = Keys.IMAGE.value, Keys.LABEL.value, Keys.PRIOR.value
CASE, PATIENT, PRESENCE, SLICE_INDEX = Keys.CASE.value, Keys.PATIENT.value, Keys.PRESENCE.value, Keys.SLICE_INDEX.value

PresenceTable = Mapping[tuple[str, int], Sequence[float]]


def image_slices(image: torch.Tensor, context: int = 0, indices: Sequence[int] | None = None) -> torch.Tensor:
    """Slices of a (C, H, W, Z) volume as (N, C * (2 * context + 1), H, W), neighbours stacked as channels.

    Channels are ordered by offset -context..+context, all C channels per offset, so the centre slice is channels
    ``context * C`` to ``(context + 1) * C``. Edge slices repeat the first/last slice, as a scanner would show.
    """
    volume = _plain(image)
    num_slices = volume.shape[-1]
    centres = torch.arange(num_slices) if indices is None else torch.as_tensor(list(indices), dtype=torch.long)
    offsets = torch.arange(-context, context + 1)
    picks = (centres[:, None] + offsets[None, :]).clamp(0, num_slices - 1)  # (N, 2c+1)
    stacked = volume[..., picks.reshape(-1)]  # (C, H, W, N * (2c+1))
    c, h, w = volume.shape[:3]
    stacked = stacked.reshape(c, h, w, len(centres), 2 * context + 1)
    return stacked.permute(3, 4, 0, 1, 2).reshape(len(centres), (2 * context + 1) * c, h, w).contiguous()


class SliceDataset(torch.utils.data.Dataset):
    """Axial slice samples of a list of cases; volumes are processed once and cached in memory.

    With a presence table only the slices it labels are served (others are logged and skipped); without one,
    every slice is served and samples have no ``presence`` (inference, evaluation).

    Args:
        data: case dicts {image, label?, prior?, case?, patient?}; paths when ``transform`` is given (the volume
            pipeline, e.g. ``volume_transforms``), already processed dicts when it is None.
        presence: {(case, file z): presence vector (K,)}; case ids default to the image file name.
        context: neighbouring slices stacked each side as extra channels.
        num_workers: threads that process the volumes.

    Raises:
        MedwssError: any volume pipeline error; a case without presence labels; a table slice outside the scan;
            presence vectors of different lengths.
    """

    def __init__(
        self,
        data: Sequence[Mapping[str, Any]],
        transform: Compose | None,
        presence: PresenceTable | None = None,
        *,
        context: int = 0,
        num_workers: int = 0,
    ) -> None:
        if context < 0:
            raise ValueError(f"context must be >= 0, got {context}")
        self.context = context
        items = [{**d, CASE: case_id(d), PATIENT: str(d.get(PATIENT, case_id(d)))} for d in data]
        if transform is None:
            self.volumes = items
        else:
            with unwrap_errors():
                cache = CacheDataset(
                    items, transform, cache_rate=1.0, num_workers=num_workers, copy_cache=False, progress=False
                )
                self.volumes = [cache[i] for i in range(len(cache))]
        self.presence = None if presence is None else self._check_presence(presence)
        self.index: list[tuple[int, int]] = []  # (volume, processed slice)
        for v, volume in enumerate(self.volumes):
            self.index += self._labelled_slices(v, volume)

    def _check_presence(self, presence: PresenceTable) -> dict[tuple[str, int], torch.Tensor]:
        table = {
            (str(c), int(z)): torch.as_tensor(np.asarray(p, dtype=np.float32).reshape(-1))
            for (c, z), p in presence.items()
        }
        lengths = {len(p) for p in table.values()}
        if len(lengths) > 1:
            raise MedwssError("presence", f"presence vectors have different lengths {sorted(lengths)}")
        self._labelled: dict[str, set[int]] = {}
        for c, z in table:
            self._labelled.setdefault(c, set()).add(z)
        return table

    def _labelled_slices(self, v: int, volume: Mapping[str, Any]) -> list[tuple[int, int]]:
        original = volume[SLICE_INDEX].tolist()
        if self.presence is None:
            return [(v, k) for k in range(len(original))]
        case = volume[CASE]
        labelled = self._labelled.get(case, set())
        if not labelled:
            raise MedwssError(source_of(volume[IMAGE]), f"no presence labels for case {case!r} in the presence table")
        outside = sorted(labelled - set(original))
        if outside:
            raise MedwssError(
                source_of(volume[IMAGE]),
                f"presence table names slice z={outside[0]} but the scan has {len(original)} slices",
            )
        if len(labelled) < len(original):
            skipped = len(original) - len(labelled)
            logger.info("case %s: %d of %d slices have no presence label; skipped", case, skipped, len(original))
        return [(v, k) for k, z in enumerate(original) if z in labelled]

    @property
    def num_classes(self) -> int | None:
        """K, the length of a presence vector (None without a table)."""
        return None if not self.presence else len(next(iter(self.presence.values())))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        v, k = self.index[i]
        volume = self.volumes[v]
        z = int(volume[SLICE_INDEX][k])
        sample: dict[str, Any] = {
            IMAGE: image_slices(volume[IMAGE], self.context, [k])[0].float(),
            CASE: volume[CASE],
            PATIENT: volume[PATIENT],
            SLICE_INDEX: z,
        }
        if self.presence is not None:
            sample[PRESENCE] = self.presence[(volume[CASE], z)].clone()
        for key in (PRIOR, LABEL):
            if key in volume:
                mask = _plain(volume[key])[..., k]
                sample[key] = mask.float() > 0.5 if key == PRIOR else mask.float().round().to(mask.dtype)
        return sample


def _plain(tensor: Any) -> torch.Tensor:
    """A plain tensor view: 2D samples carry no affine, and MetaTensor indexing is slow."""
    return tensor.as_tensor() if isinstance(tensor, MetaTensor) else torch.as_tensor(tensor)


def stack_slices(pred_slices: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Per-slice predictions (Z, H, W) or (Z, K, H, W) as a processed-space volume (1 | K, H, W, Z)."""
    pred = torch.as_tensor(pred_slices)
    if pred.ndim == 3:
        pred = pred[:, None]
    if pred.ndim != 4:
        raise ValueError(f"expected (Z, H, W) or (Z, K, H, W) slices, got shape {tuple(pred.shape)}")
    return pred.permute(1, 2, 3, 0).contiguous()


def _mask_modes(ops: list, keep_dtype: bool = False) -> list:
    """Interpolation for masks when inverting: 'nearest-exact' for resizes (pixel-centre aligned, like the forward
    pass), 'nearest' for grid-sampling transforms, which know no 'nearest-exact'. With ``keep_dtype`` resizes
    compute in the mask's own dtype (uint8: torch resizes it by nearest neighbour exactly, with no float copy)."""
    out = []
    for op in ops:
        resize = op.get("class") in ("Resize", "Resized")
        op = convert_applied_interp_mode(op, mode="nearest-exact" if resize else "nearest", align_corners=None)
        if resize and keep_dtype and isinstance(op.get("extra_info"), dict) and "dtype" in op["extra_info"]:
            op["extra_info"]["dtype"] = None
        out.append(op)
    return out


def _resizes_back_exactly(transform: InvertibleTransform, mask: MetaTensor) -> bool:
    """Whether ``transform`` is the ``Resized`` whose record is the last on ``mask``, undone by nearest neighbour with
    no added axis: what ``_resize_back_in_dtype`` does in the mask's own dtype."""
    ops = mask.applied_operations
    if not isinstance(transform, Resized) or not ops or ops[-1].get(TraceKeys.ID) != id(transform.resizer):
        return False
    info = ops[-1].get(TraceKeys.EXTRA_INFO, {})
    return info.get("mode") in ("nearest", "nearest-exact") and not info.get("new_dim")


def _resize_back_in_dtype(transform: Resized, mask: MetaTensor) -> MetaTensor:
    """Undo ``transform`` (a ``Resized``) on an integer mask in the mask's own dtype.

    MONAI's inverse resizes a uint8 mask in uint8 but casts the result to float32 (``resize`` in
    ``monai.transforms.spatial.functional``). Here torch resizes it by the same nearest-neighbour rule, a gather that
    gives the same voxels in any dtype, and MONAI's ``track_transform_meta`` moves the affine as its resize does.
    """
    op = transform.resizer.pop_transform(mask)  # checks that the record is this transform's
    size = tuple(int(s) for s in mask.peek_pending_shape())
    orig_size = tuple(int(s) for s in op[TraceKeys.ORIG_SIZE])
    voxels = torch.nn.functional.interpolate(
        mask.as_tensor().unsqueeze(0), size=orig_size, mode=op[TraceKeys.EXTRA_INFO]["mode"]
    ).squeeze(0)
    meta = TraceableTransform.track_transform_meta(
        mask,
        sp_size=orig_size,
        affine=scale_affine(size, orig_size),
        orig_size=size,
        transform_info={**transform.resizer.get_transform_info(), TraceKeys.TRACING: False},
        lazy=False,
    )
    return MetaTensor(voxels).copy_meta_from(meta)


def invert_to_original(
    pred_volume: torch.Tensor, processed_image: MetaTensor, transforms: Compose, *, image_key: str = IMAGE
) -> MetaTensor:
    """Map a processed-space prediction (1 | K, H, W, Z) back onto the file's grid, voxel for voxel.

    The image's recorded spatial operations (``processed_image.applied_operations``) are undone by ``transforms``,
    the Compose that made them, with nearest interpolation, so masks stay masks. The result is a MetaTensor of
    shape (1 | K, X, Y, Z) with the file's affine and meta (``geometry``), ready for ``medwss.data.io.write_mask``;
    it keeps ``pred_volume``'s dtype.
    """
    pred = torch.as_tensor(pred_volume)
    if tuple(pred.shape[1:]) != tuple(processed_image.shape[1:]):
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} does not match the image's {tuple(processed_image.shape)}"
        )
    dtype = pred.dtype
    # A mask of small labels is inverted as uint8, one transform at a time, cast back to uint8 after each; the resize
    # back to the full grid, where MONAI's inverse hands back float32, runs in uint8 (``_resize_back_in_dtype``): the
    # full-size mask never exists as float32 (on a 600-slice CT, 600 MiB).
    small_labels = not dtype.is_floating_point and (
        pred.numel() == 0 or (int(pred.min()) >= 0 and int(pred.max()) < 256)
    )
    work = torch.uint8 if small_labels else torch.float32
    inputs = MetaTensor(pred.detach().to(work), meta=deepcopy(processed_image.meta))
    inputs.applied_operations = _mask_modes(deepcopy(processed_image.applied_operations), keep_dtype=small_labels)
    data = {image_key: inputs}
    with allow_missing_keys_mode(transforms):
        for t in reversed([t for t in transforms.flatten().transforms if isinstance(t, InvertibleTransform)]):
            if small_labels and _resizes_back_exactly(t, data[image_key]):
                data = {**data, image_key: _resize_back_in_dtype(t, data[image_key])}
            else:
                data = t.inverse(data)
            if small_labels and data[image_key].dtype != work:
                data[image_key] = data[image_key].to(work)
    inverted = data[image_key]
    if not dtype.is_floating_point and inverted.is_floating_point():
        inverted = inverted.round_()  # in place: the full-size float volume is not copied once more
    return inverted.to(dtype)
