"""PASCAL VOC 2012 segmentation layout: ``JPEGImages/``, ``SegmentationClass/`` palette PNGs, ``ImageSets/``.

Image-level labels are the classes present in an image's ``SegmentationClass`` PNG (void 255 excluded), the
usual source of VOC weak labels for the segmentation subset. ``export_coco_to_voc`` writes a COCO sample in this
layout, so the VOC path runs on real photographs where no VOC images are at hand (such numbers are COCO images
with VOC's classes, never VOC results).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.natural.classes import VOC_CLASSES, VOID, voc_palette
from medwss.errors import MedwssError
from medwss.runtime.atomic import atomic_output

SPLITS = ("train", "val", "trainval")


def read_label_png(path: str | Path) -> np.ndarray:
    """A label-map PNG -> (H, W) uint8 labels: palette indices of a palette PNG (VOC), else the grey values.

    Raises:
        MedwssError: missing, unreadable, or a colour (RGB) PNG, whose colours are not labels.
    """
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise MedwssError(p, "file not found")
    try:
        with Image.open(p) as img:
            if img.mode not in ("P", "L", "I", "I;16"):
                raise MedwssError(p, f"not a label map: PNG mode {img.mode} (expected palette or grey)")
            labels = np.asarray(img)
    except (UnidentifiedImageError, OSError) as err:
        raise MedwssError(p, f"cannot read image: {err}") from None
    if labels.max(initial=0) > 255:
        raise MedwssError(p, f"label {int(labels.max())} does not fit a uint8 label map")
    return labels.astype(np.uint8)


def write_label_png(labels: np.ndarray, out: str | Path) -> Path:
    """Write (H, W) labels 0-255 as a palette PNG with the VOC colours, atomically."""
    from PIL import Image

    arr = np.asarray(labels)
    if arr.ndim != 2 or arr.min(initial=0) < 0 or arr.max(initial=0) > 255:
        raise ValueError(f"expected a 2D label map with values 0-255, got shape {arr.shape}")
    img = Image.fromarray(arr.astype(np.uint8), mode="P")
    img.putpalette(voc_palette().reshape(-1).tolist())
    with atomic_output(out) as tmp:
        img.save(tmp, format="PNG")
    return Path(out)


def voc_datalist(root: str | Path, split: str = "train") -> list[dict[str, Any]]:
    """One item per image of ``ImageSets/Segmentation/<split>.txt``: ``{image, mask, id, labels}``.

    Args:
        root: the ``VOC2012`` folder (holding ``JPEGImages``, ``SegmentationClass``, ``ImageSets``).
        split: ``train``, ``val`` or ``trainval`` (any list file in ``ImageSets/Segmentation`` works).

    Raises:
        MedwssError: missing list file, image or mask, or a mask with labels outside 0-20 and 255.
    """
    root = Path(root)
    listing = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not listing.is_file():
        raise MedwssError(listing, f"no VOC split list {split!r}")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    items = []
    for image_id in ids:
        image = root / "JPEGImages" / f"{image_id}.jpg"
        mask = root / "SegmentationClass" / f"{image_id}.png"
        for path in (image, mask):
            if not path.is_file():
                raise MedwssError(path, f"file of {listing.name} entry {image_id!r} not found")
        labels = read_label_png(mask)
        present = sorted(set(np.unique(labels).tolist()) - {0, VOID})
        if present and present[-1] > len(VOC_CLASSES):
            raise MedwssError(mask, f"label {present[-1]} is not a VOC class (1-{len(VOC_CLASSES)}, 255 void)")
        items.append({"image": str(image), "mask": str(mask), "id": image_id, "labels": present})
    return items


def void_border(labels: np.ndarray, width: int) -> np.ndarray:
    """Labels with a ``width``-pixel void (255) band on object boundaries, as VOC's annotators drew them."""
    if width <= 0:
        return labels
    from skimage.morphology import dilation, footprint_rectangle
    from skimage.segmentation import find_boundaries

    edges = find_boundaries(labels, mode="inner") & (labels != VOID)
    if width > 1:
        edges = dilation(edges, footprint_rectangle((2 * width - 1, 2 * width - 1))).astype(bool)
    out = labels.copy()
    out[edges] = VOID
    return out


def export_coco_to_voc(
    annotation_file: str | Path,
    out_root: str | Path,
    *,
    image_dir: str | Path | None = None,
    splits: dict[str, Sequence[str]] | None = None,
    border: int = 0,
) -> Path:
    """Write a COCO sample in VOC 2012 layout with VOC's 20 classes (other COCO objects become background).

    Args:
        annotation_file: COCO ``instances`` JSON.
        out_root: the ``VOC2012``-like folder to create (must not hold an export already).
        image_dir: the COCO images (default: ``coco.default_image_dir``).
        splits: ``{split name: [image ids as 12-digit strings]}``; default every image in ``train``.
        border: width of the void band drawn on object boundaries (VOC draws about 5 px at 500 px).

    Returns:
        ``out_root``.

    Raises:
        MedwssError: unreadable COCO input, or an existing export at ``out_root``.
    """
    from medwss.data.natural.coco import coco_datalist, semantic_mask

    out = Path(out_root)
    if (out / "JPEGImages").exists():
        raise MedwssError(out, "already holds a VOC layout; refusing to overwrite it")
    items = coco_datalist(annotation_file, image_dir, class_set="voc")
    splits = splits or {"train": [it["id"] for it in items]}
    known = {it["id"] for it in items}
    for name, ids in splits.items():
        unknown = sorted(set(ids) - known)
        if unknown:
            raise MedwssError(Path(annotation_file), f"split {name!r} names unknown images {unknown[:3]}")
    (out / "JPEGImages").mkdir(parents=True)
    for it in items:
        shutil.copyfile(it["image"], out / "JPEGImages" / f"{it['id']}.jpg")
        labels = semantic_mask(it["annotations"], it["height"], it["width"], "voc")
        write_label_png(void_border(labels, border), out / "SegmentationClass" / f"{it['id']}.png")
    for name, ids in splits.items():
        with atomic_output(out / "ImageSets" / "Segmentation" / f"{name}.txt") as tmp:
            tmp.write_text("".join(f"{i}\n" for i in ids))
    return out
