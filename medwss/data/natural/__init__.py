"""Natural-image adapters: PASCAL VOC 2012 and MS COCO (2014/2017) as MONAI datasets with image-level labels."""

from __future__ import annotations

from medwss.data.natural.classes import (
    COCO_CATEGORIES,
    VOC_CLASSES,
    VOC_TO_COCO,
    VOID,
    class_names,
    coco_label_of,
    voc_palette,
)
from medwss.data.natural.coco import coco_datalist, decode_rle, load_coco, rasterise, semantic_mask
from medwss.data.natural.dataset import PhotoSet, load_photo_set, photo_dataset, photo_transforms, read_photo
from medwss.data.natural.voc import export_coco_to_voc, read_label_png, voc_datalist, write_label_png

__all__ = [
    "COCO_CATEGORIES",
    "VOC_CLASSES",
    "VOC_TO_COCO",
    "VOID",
    "PhotoSet",
    "class_names",
    "coco_datalist",
    "coco_label_of",
    "decode_rle",
    "export_coco_to_voc",
    "load_coco",
    "load_photo_set",
    "photo_dataset",
    "photo_transforms",
    "rasterise",
    "read_label_png",
    "read_photo",
    "semantic_mask",
    "voc_datalist",
    "voc_palette",
    "write_label_png",
]
