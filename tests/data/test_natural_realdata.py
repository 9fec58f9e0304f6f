"""The COCO adapters on the real 144-photo COCO sample (shared/data/coco), and its VOC-layout export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medwss.data.natural import coco_datalist, export_coco_to_voc, read_label_png, semantic_mask, voc_datalist

COCO = Path(__file__).resolve().parents[2] / "../shared/data" / "coco"
realdata = pytest.mark.skipif(not COCO.is_dir(), reason=f"real data folder {COCO} is absent")
pytestmark = [pytest.mark.realdata, realdata]


def test_coco_sample_labels_and_masks():
    items = coco_datalist(COCO / "annotations" / "instances.json", COCO / "images")
    assert len(items) == 144
    assert len({label for it in items for label in it["labels"]}) == 75  # the README's count
    crowd = [it for it in items if any(a["iscrowd"] for a in it["annotations"])]
    assert len(crowd) == 1
    mask = semantic_mask(crowd[0]["annotations"], crowd[0]["height"], crowd[0]["width"])
    assert (mask == 255).any() and set(np.unique(mask).tolist()) - {0, 255} <= set(crowd[0]["labels"])


def test_voc_export_of_the_sample_reads_back(tmp_path):
    annotations = COCO / "annotations" / "instances.json"
    ids = [it["id"] for it in coco_datalist(annotations, COCO / "images")][:12]
    voc = export_coco_to_voc(annotations, tmp_path / "VOC2012", image_dir=COCO / "images",
                             splits={"train": ids[:8], "val": ids[8:]}, border=2)  # fmt: skip
    items = voc_datalist(voc, "train") + voc_datalist(voc, "val")
    expected = coco_datalist(annotations, COCO / "images", class_set="voc")[:12]
    assert [it["labels"] for it in items] == [it["labels"] for it in expected]
    assert all(read_label_png(it["mask"]).max() <= 255 for it in items)
