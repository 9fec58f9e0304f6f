"""Tiny VOC-layout folders and COCO instances files written to tmp_path (real formats, invented content)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from medwss.data.natural.voc import write_label_png


def write_jpeg(path: Path, height: int, width: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(path, format="JPEG")
    return path


VOC_MASKS = {
    # id: label map (H=6, W=8); 255 = void border, 15 = person, 9 = chair
    "2007_000001": np.pad(np.full((2, 4), 15), ((2, 2), (2, 2))),
    "2007_000002": np.array([[0, 0, 255, 9, 9, 9, 0, 0]] * 6),
    "2007_000003": np.zeros((6, 8), int),
}


def write_voc(root: Path, masks: dict[str, np.ndarray] | None = None) -> Path:
    """``root/VOC2012`` with JPEGImages, SegmentationClass (palette PNGs) and train/val lists."""
    masks = VOC_MASKS if masks is None else masks
    voc = root / "VOC2012"
    for i, (image_id, labels) in enumerate(masks.items()):
        write_jpeg(voc / "JPEGImages" / f"{image_id}.jpg", *labels.shape, seed=i)
        write_label_png(labels.astype(np.uint8), voc / "SegmentationClass" / f"{image_id}.png")
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    ids = list(masks)
    (lists / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (lists / "val.txt").write_text(ids[-1] + "\n")
    return voc


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """A COCO polygon (one ring) for the box [x0, x1] x [y0, y1] in pixel-edge coordinates."""
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(root: Path, year: int = 2017) -> Path:
    """``root/annotations/instances_train<year>.json`` and its two 10 x 12 JPEGs under ``root/train<year>``.

    Image 1: a person (cat 1) box over columns 0-7 and a smaller chair (cat 62) box on top of it, a teddy bear
    (cat 88, not a VOC class). Image 2: a crowd person RLE (columns 0-1 of rows 0-9) and a dog (cat 18) box.
    """
    folder = root / f"train{year}"
    images = []
    for image_id in (1, 2):
        name = f"{image_id:012d}.jpg" if year == 2017 else f"COCO_train2014_{image_id:012d}.jpg"
        write_jpeg(folder / name, 10, 12, seed=image_id)
        images.append({"id": image_id, "file_name": name, "height": 10, "width": 12})
    annotations = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": square(0, 0, 8, 10), "area": 80.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 62, "segmentation": square(2, 2, 6, 6), "area": 16.0, "iscrowd": 0},
        {"id": 3, "image_id": 1, "category_id": 88, "segmentation": square(9, 0, 12, 3), "area": 9.0, "iscrowd": 0},
        {"id": 4, "image_id": 2, "category_id": 1, "segmentation": {"counts": [0, 20, 100], "size": [10, 12]},
         "area": 20.0, "iscrowd": 1},
        {"id": 5, "image_id": 2, "category_id": 18, "segmentation": square(6, 4, 10, 8), "area": 16.0, "iscrowd": 0},
    ]  # fmt: skip
    categories = [{"id": c, "name": n} for c, n in ((1, "person"), (18, "dog"), (62, "chair"), (88, "teddy bear"))]
    out = root / "annotations" / f"instances_train{year}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return out


def write_coco_sample(root: Path, count: int = 6, size: tuple[int, int] = (24, 32)) -> Path:
    """``count`` photos with a person box on the left and, on every other photo, a dog box on the right."""
    height, width = size
    images, annotations = [], []
    for image_id in range(1, count + 1):
        name = f"{image_id:012d}.jpg"
        write_jpeg(root / "images" / name, height, width, seed=image_id)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        boxes = [(1, (0, 4, width // 2, height - 4))] + ([(18, (width // 2, 0, width, height // 2))] if image_id % 2
                                                          else [])  # fmt: skip
        for category, (x0, y0, x1, y1) in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "segmentation": square(x0, y0, x1, y1), "area": float((x1 - x0) * (y1 - y0)),
                                "iscrowd": 0})  # fmt: skip
    out = root / "annotations" / "instances.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": images, "annotations": annotations,
                               "categories": [{"id": 1, "name": "person"}, {"id": 18, "name": "dog"}]}))  # fmt: skip
    return out
