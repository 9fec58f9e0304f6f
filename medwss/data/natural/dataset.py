"""Photos as MONAI datasets: RGB image at a square working size, multi-hot image-level labels, evaluation mask.

The image is resized (not cropped) to ``working_size`` x ``working_size`` so every pixel of the photo can be
segmented and the label map resized back; the aspect ratio is not kept (as in most weakly-supervised
classification pipelines). The reference label map stays at the photo's own size and is read only when
``with_mask`` is asked for: training uses ``presence`` alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import Dataset
from monai.transforms import Compose, EnsureTyped, MapTransform, NormalizeIntensityd, Resized

from medwss.data.keys import Keys
from medwss.errors import MedwssError

IMAGE, PRESENCE = Keys.IMAGE.value, Keys.PRESENCE.value
MASK = "mask"
ORIGINAL_SIZE = "original_size"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
"""Per-channel statistics photos are normalised with (the usual ImageNet values, so weights transfer)."""
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_photo(path: str | Path) -> np.ndarray:
    """A photo file -> (3, H, W) float32 RGB in [0, 1] (grey and palette images are converted).

    Raises:
        MedwssError: missing or not an image.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise MedwssError(p, "file not found")
    try:
        with Image.open(p) as img:
            rgb = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise MedwssError(p, f"cannot read image: {err}") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1))


class LoadPhotod(MapTransform):
    """Read the photo at ``d[key]`` into (3, H, W) float32 and keep its size in ``d['original_size']``."""

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if not isinstance(d[key], (str, Path)):
                continue
            d[ORIGINAL_SIZE] = None
            d[f"{key}_file"] = str(d[key])
            d[key] = torch.from_numpy(read_photo(d[key]))
            d[ORIGINAL_SIZE] = tuple(int(s) for s in d[key].shape[-2:])
        return d


class LoadLabelMapd(MapTransform):
    """The reference label map (H, W) uint8: a VOC PNG at ``d['mask']`` or the COCO ``d['annotations']``."""

    def __init__(self, keys: str = MASK, class_set: str = "coco") -> None:
        super().__init__(keys, allow_missing_keys=True)
        self.class_set = class_set

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medwss.data.natural.coco import semantic_mask
        from medwss.data.natural.voc import read_label_png

        d = dict(data)
        for key in self.keys:
            if isinstance(d.get(key), (str, Path)):
                d[key] = read_label_png(d[key])
            elif key not in d and "annotations" in d:
                d[key] = semantic_mask(d["annotations"], int(d["height"]), int(d["width"]), self.class_set)
        return d


class MultiHotd(MapTransform):
    """``labels`` (1-based class labels present) -> ``presence`` (K,) float multi-hot."""

    def __init__(self, num_classes: int, source: str = "labels", key: str = PRESENCE) -> None:
        super().__init__(key)
        self.num_classes, self.source, self.key = num_classes, source, key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        labels = [int(x) for x in d.get(self.source, [])]
        bad = [x for x in labels if not 1 <= x <= self.num_classes]
        if bad:
            raise MedwssError(str(d.get(IMAGE, "?")), f"labels {bad} outside 1-{self.num_classes}")
        presence = torch.zeros(self.num_classes)
        presence[[x - 1 for x in labels]] = 1.0
        d[self.key] = presence
        return d


def photo_transforms(
    working_size: int = 128, num_classes: int | None = None, with_mask: bool = False, class_set: str = "coco"
) -> Compose:
    """Load, resize to ``working_size`` (area averaging), normalise per channel; optional labels and mask."""
    steps: list[Any] = [
        LoadPhotod(IMAGE),
        Resized(IMAGE, spatial_size=(working_size, working_size), mode="area"),
        NormalizeIntensityd(IMAGE, subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True),
        # A plain tensor: the photo's size travels in ``original_size``, and MONAI's decollation of the
        # evaluator's batch fails on the resize's per-item metadata.
        EnsureTyped(IMAGE, data_type="tensor", track_meta=False),
    ]
    if num_classes is not None:
        steps.append(MultiHotd(num_classes))
    if with_mask:
        steps.append(LoadLabelMapd(MASK, class_set))
    return Compose(steps)


def photo_dataset(
    datalist: Sequence[dict[str, Any]],
    working_size: int = 128,
    num_classes: int | None = None,
    with_mask: bool = False,
    class_set: str = "coco",
) -> Dataset:
    """A ``monai.data.Dataset`` over ``coco_datalist`` / ``voc_datalist`` items."""
    return Dataset(list(datalist), photo_transforms(working_size, num_classes, with_mask, class_set))


@dataclass
class PhotoSet:
    """A data set held in memory (small samples, CPU training)."""

    images: torch.Tensor
    """(N, 3, S, S) float, normalised."""
    presence: torch.Tensor
    """(N, K) float multi-hot image-level labels."""
    ids: list[str]
    """Image ids."""
    masks: list[np.ndarray] | None
    """N reference label maps (H, W) uint8 at the photos' own sizes; None unless asked for."""


def load_photo_set(
    datalist: Sequence[dict[str, Any]],
    num_classes: int,
    working_size: int = 128,
    with_mask: bool = False,
    class_set: str = "coco",
) -> PhotoSet:
    """Run the dataset once and stack it (``monai.data.Dataset`` item by item).

    Raises:
        MedwssError: an unreadable photo or mask, labels outside 1-K, no image.
    """
    from medwss.data.transforms import unwrap_errors

    ds = photo_dataset(datalist, working_size, num_classes, with_mask, class_set)
    with unwrap_errors():
        items = [ds[i] for i in range(len(ds))]
    if not items:
        raise MedwssError("datalist", "no images")
    return PhotoSet(
        images=torch.stack([torch.as_tensor(it[IMAGE]).float() for it in items]),
        presence=torch.stack([it[PRESENCE] for it in items]),
        ids=[str(it.get("id", i)) for i, it in enumerate(items)],
        masks=[np.asarray(it[MASK]) for it in items] if with_mask else None,
    )


def resize_labels(labels: np.ndarray | torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """A (h, w) label map -> (H, W) by nearest neighbour (labels are not averaged)."""
    t = torch.as_tensor(np.asarray(labels)).float()[None, None]
    out = torch.nn.functional.interpolate(t, size=tuple(size), mode="nearest")
    return out[0, 0].numpy().astype(np.uint8)
