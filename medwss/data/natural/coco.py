"""MS COCO ``instances_*.json`` (2014 and 2017) as image-level labels and semantic label maps.

Read with the ``json`` module and rasterised here (Pillow's ``ImageDraw.polygon`` for polygons, about 10x faster
than ``skimage.draw.polygon`` on the sample, and a small decoder for RLE): pycocotools is not a dependency of
medwss, and these two formats are all ``instances`` files hold. Crowd regions (``iscrowd=1``) become void (255,
not scored) and do not make a class present at image level, as in the usual COCO-to-VOC conversions; objects are
painted largest first so a smaller object on a larger one stays visible.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.natural.classes import VOID, coco_label_of
from medwss.errors import MedwssError

ANNOTATION_NAME = re.compile(r"instances_(?P<split>[a-z]+)(?P<year>\d{4})")


def load_coco(annotation_file: str | Path) -> dict[str, Any]:
    """The parsed annotation file.

    Raises:
        MedwssError: missing, not JSON, or without ``images`` / ``annotations`` / ``categories``.
    """
    path = Path(annotation_file)
    if not path.is_file():
        raise MedwssError(path, "file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MedwssError(path, f"not a JSON file: {err}") from None
    missing = [k for k in ("images", "annotations", "categories") if not isinstance(data.get(k), list)]
    if missing:
        raise MedwssError(path, f"not a COCO instances file (no {', '.join(missing)})")
    return data


def default_image_dir(annotation_file: str | Path) -> Path:
    """Where the images of an annotation file live in the standard layouts.

    ``<root>/annotations/instances_train2017.json`` -> ``<root>/train2017`` (2014 alike); any other name ->
    ``<root>/images`` (the layout of small samples).
    """
    path = Path(annotation_file)
    root = path.parent.parent if path.parent.name == "annotations" else path.parent
    match = ANNOTATION_NAME.fullmatch(path.stem)
    return root / f"{match['split']}{match['year']}" if match else root / "images"


def image_path(image_dir: Path, record: dict[str, Any]) -> Path:
    """The JPEG of an image record: its ``file_name``, else the 2017 or 2014 name built from its id.

    2014 files are ``COCO_<split>2014_<id:012d>.jpg``, 2017 files ``<id:012d>.jpg``; records copied between the
    two releases sometimes keep the other release's name.
    """
    names = [record.get("file_name")] if record.get("file_name") else []
    image_id = int(record["id"])
    names += [f"{image_id:012d}.jpg"]
    names += [f"COCO_{split}2014_{image_id:012d}.jpg" for split in ("train", "val")]
    for name in names:
        if (image_dir / name).is_file():
            return image_dir / name
    raise MedwssError(image_dir / names[0], "image of this COCO record not found")


def decode_rle(counts: list[int] | str, height: int, width: int) -> np.ndarray:
    """Run-length encoding (column-major runs, starting with background) -> (H, W) bool.

    ``counts`` is a list of run lengths (uncompressed RLE, crowd annotations) or the compressed string of
    pycocotools' ``maskApi.c`` (``rleFrString``): 6-bit chunks with a continuation bit, each run after the second
    stored as the difference to the run two before.
    """
    if isinstance(counts, str):
        runs: list[int] = []
        pos = 0
        raw = counts.encode()
        while pos < len(raw):
            value, shift, more = 0, 0, True
            while more:
                chunk = raw[pos] - 48
                value |= (chunk & 0x1F) << (5 * shift)
                more = bool(chunk & 0x20)
                pos, shift = pos + 1, shift + 1
                if not more and chunk & 0x10:
                    value |= -1 << (5 * shift)
            if len(runs) > 2:
                value += runs[-2]
            runs.append(value)
        counts = runs
    flat = np.zeros(height * width, dtype=bool)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    if starts[-1] > height * width:
        raise ValueError(f"RLE covers {starts[-1]} pixels, the image has {height * width}")
    for i in range(1, len(counts), 2):  # odd runs are foreground
        flat[starts[i] : starts[i + 1]] = True
    return flat.reshape(width, height).T


def rasterise(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """One annotation's ``segmentation`` (polygons or RLE) -> (H, W) bool mask."""
    from PIL import Image, ImageDraw

    if isinstance(segmentation, dict):
        return decode_rle(segmentation["counts"], height, width)
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in segmentation:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2) - 0.5  # COCO pixel i spans [i, i+1): centre i + 0.5
        if len(xy) >= 3:
            draw.polygon([tuple(p) for p in xy.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def semantic_mask(annotations: list[dict[str, Any]], height: int, width: int, class_set: str = "coco") -> np.ndarray:
    """Instance annotations of one image -> (H, W) uint8 label map (0 background, 1..K classes, 255 crowd).

    Categories outside ``class_set`` (the 60 non-VOC ones for ``voc``) stay background, as in VOC.
    """
    label_of = coco_label_of(class_set)
    out = np.zeros((height, width), dtype=np.uint8)
    crowd = np.zeros((height, width), dtype=bool)
    objects = [a for a in annotations if a["category_id"] in label_of]
    for ann in sorted(objects, key=lambda a: -float(a.get("area", 0.0))):
        mask = rasterise(ann["segmentation"], height, width)
        if ann.get("iscrowd", 0):
            crowd |= mask
        else:
            out[mask] = label_of[ann["category_id"]]
    out[crowd & (out == 0)] = VOID
    return out


def coco_datalist(
    annotation_file: str | Path, image_dir: str | Path | None = None, class_set: str = "coco"
) -> list[dict[str, Any]]:
    """One item per image: ``{image, id, height, width, labels, annotations}`` (MONAI datalist style).

    ``labels`` are the 1-based labels of the non-crowd classes present (the image-level weak labels);
    ``annotations`` are kept only to rasterise the evaluation mask (``medwss.data.natural.dataset``).

    Raises:
        MedwssError: unreadable annotation file, an annotation on an unknown image, or a missing image file.
    """
    data = load_coco(annotation_file)
    folder = Path(image_dir) if image_dir is not None else default_image_dir(annotation_file)
    label_of = coco_label_of(class_set)
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    known = {int(r["id"]) for r in data["images"]}
    for ann in data["annotations"]:
        if int(ann["image_id"]) not in known:
            problem = f"annotation {ann.get('id')} is on unknown image {ann['image_id']}"
            raise MedwssError(Path(annotation_file), problem)
        by_image[int(ann["image_id"])].append(ann)
    items = []
    for record in sorted(data["images"], key=lambda r: int(r["id"])):
        anns = by_image[int(record["id"])]
        objects = [a for a in anns if a["category_id"] in label_of and not a.get("iscrowd")]
        labels = sorted({label_of[a["category_id"]] for a in objects})
        items.append(
            {
                "image": str(image_path(folder, record)),
                "id": f"{int(record['id']):012d}",
                "height": int(record["height"]),
                "width": int(record["width"]),
                "labels": labels,
                "annotations": anns,
            }
        )
    return items
