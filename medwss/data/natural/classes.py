"""Class lists of the natural-image data sets: COCO's 80 categories, PASCAL VOC's 20, and the map between them.

Label maps use contiguous indices: 0 background, then the classes in list order (VOC ``SegmentationClass``
convention; COCO category ids 1-90 have gaps, so they are never used as pixel values). 255 marks void pixels
(VOC object borders, COCO crowd regions): not scored.
"""

from __future__ import annotations

import numpy as np

VOID = 255
"""Label of pixels that are not scored (VOC void border, COCO crowd)."""

COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"), (14, "parking meter"),
    (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"), (21, "cow"),
    (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"), (28, "umbrella"),
    (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"), (36, "snowboard"),
    (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"), (41, "skateboard"),
    (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"), (48, "fork"),
    (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"), (55, "orange"),
    (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"), (62, "chair"),
    (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"), (72, "tv"),
    (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"), (78, "microwave"),
    (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"), (85, "clock"), (86, "vase"),
    (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)  # fmt: skip
"""(COCO category id, name) of the 80 ``instances`` categories (2014 and 2017 share them)."""

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip
"""PASCAL VOC 2012 classes in label order (pixel value i + 1)."""

VOC_TO_COCO: dict[str, int] = {
    "aeroplane": 5, "bicycle": 2, "bird": 16, "boat": 9, "bottle": 44, "bus": 6, "car": 3, "cat": 17, "chair": 62,
    "cow": 21, "diningtable": 67, "dog": 18, "horse": 19, "motorbike": 4, "person": 1, "pottedplant": 64,
    "sheep": 20, "sofa": 63, "train": 7, "tvmonitor": 72,
}  # fmt: skip
"""Every VOC class is a COCO category (VOC names on the left, COCO category ids on the right)."""

CLASS_SETS = ("coco", "voc")


def class_names(class_set: str) -> tuple[str, ...]:
    """Foreground class names of ``coco`` or ``voc``, in label order (label = index + 1)."""
    if class_set == "coco":
        return tuple(name for _, name in COCO_CATEGORIES)
    if class_set == "voc":
        return VOC_CLASSES
    raise ValueError(f"unknown class set {class_set!r}, expected one of {CLASS_SETS}")


def coco_label_of(class_set: str) -> dict[int, int]:
    """COCO category id -> label (1-based) in ``class_set``; categories outside a VOC set are absent (background)."""
    if class_set == "coco":
        return {cat: i + 1 for i, (cat, _) in enumerate(COCO_CATEGORIES)}
    if class_set == "voc":
        return {VOC_TO_COCO[name]: i + 1 for i, name in enumerate(VOC_CLASSES)}
    raise ValueError(f"unknown class set {class_set!r}, expected one of {CLASS_SETS}")


def voc_palette() -> np.ndarray:
    """The VOC devkit colour map (256, 3) uint8: label i gets the colour of ``VOCdevkit/VOCcode/VOClabelcolormap.m``.

    Writing label maps as palette PNGs with it makes them readable by every VOC tool and viewable as colours.
    """
    palette = np.zeros((256, 3), dtype=np.uint8)
    for label in range(256):
        c, r, g, b = label, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette[label] = (r, g, b)
    return palette
