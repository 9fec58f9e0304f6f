"""VOC and COCO adapters on tiny generated cases: labels, masks, RLE, file naming, export, MONAI dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medwss.data.natural import (
    coco_datalist,
    decode_rle,
    export_coco_to_voc,
    load_photo_set,
    photo_dataset,
    rasterise,
    read_label_png,
    semantic_mask,
    voc_datalist,
    write_label_png,
)
from medwss.data.natural.classes import VOC_CLASSES, VOC_TO_COCO, class_names, coco_label_of, voc_palette
from medwss.data.natural.coco import default_image_dir
from medwss.data.natural.voc import void_border
from medwss.errors import MedwssError
from tests.data.natural_fixtures import VOC_MASKS, square, write_coco, write_jpeg, write_voc

PERSON, DOG, CHAIR, TEDDY = 1, 17, 57, 78  # labels in the COCO class set (index in category order + 1)


def encode_rle_string(counts: list[int]) -> str:
    """pycocotools ``rleToString`` (maskApi.c), to check the decoder against the reference encoding."""
    out = []
    for i, run in enumerate(counts):
        x = run - counts[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


# ----------------------------------------------------------------------------------------------------- classes
def test_voc_classes_map_onto_coco_names():
    coco = dict(coco_label_of("coco"))
    assert len(class_names("coco")) == 80 and len(VOC_CLASSES) == 20
    assert coco[VOC_TO_COCO["person"]] == PERSON and coco[62] == CHAIR
    assert coco_label_of("voc")[VOC_TO_COCO["tvmonitor"]] == 20
    np.testing.assert_array_equal(voc_palette()[[0, 1, 15, 255]], [[0, 0, 0], [128, 0, 0], [192, 128, 128],
                                                                   [224, 224, 192]])  # fmt: skip


# ----------------------------------------------------------------------------------------------------- VOC
def test_voc_datalist_labels_come_from_the_mask_without_void(tmp_path):
    items = voc_datalist(write_voc(tmp_path), "train")
    assert [it["id"] for it in items] == ["2007_000001", "2007_000002"]
    assert [it["labels"] for it in items] == [[15], [9]]
    assert voc_datalist(tmp_path / "VOC2012", "val")[0]["labels"] == []


def test_label_png_round_trip_keeps_values_and_palette(tmp_path):
    labels = VOC_MASKS["2007_000002"].astype(np.uint8)
    path = write_label_png(labels, tmp_path / "m.png")
    np.testing.assert_array_equal(read_label_png(path), labels)
    with Image.open(path) as img:
        assert img.mode == "P" and img.getpalette()[3 * 15 : 3 * 16] == [192, 128, 128]


@pytest.mark.parametrize(
    "case,match",
    [("no list", "no VOC split list"), ("missing mask", "not found"), ("label 21", "not a VOC class"),
     ("rgb mask", "not a label map")],
)  # fmt: skip
def test_voc_errors_name_the_file(tmp_path, case, match):
    voc = write_voc(tmp_path)
    split = "train"
    if case == "no list":
        split = "test"
    elif case == "missing mask":
        (voc / "SegmentationClass" / "2007_000001.png").unlink()
    elif case == "label 21":
        write_label_png(np.full((6, 8), 21, np.uint8), voc / "SegmentationClass" / "2007_000001.png")
    else:
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(voc / "SegmentationClass" / "2007_000001.png")
    with pytest.raises(MedwssError, match=match):
        voc_datalist(voc, split)


def test_void_border_marks_object_edges_only():
    labels = np.pad(np.full((4, 4), 3, np.uint8), 2)
    out = void_border(labels, 1)
    assert (out == 255).sum() == 12 and (out[3:5, 3:5] == 3).all() and out[0, 0] == 0
    assert void_border(labels, 0) is labels


# ----------------------------------------------------------------------------------------------------- COCO
def test_rle_decoder_matches_pycocotools_string_encoding():
    rng = np.random.default_rng(0)
    mask = rng.random((7, 9)) > 0.6
    counts, current, run = [], False, 0
    for value in mask.T.reshape(-1).tolist():  # column-major runs, the first one background (maybe empty)
        if value != current:
            counts, current, run = [*counts, run], value, 0
        run += 1
    counts.append(run)
    np.testing.assert_array_equal(decode_rle(counts, 7, 9), mask)
    np.testing.assert_array_equal(decode_rle(encode_rle_string(counts), 7, 9), mask)


def test_polygon_rasterises_the_pixels_inside():
    mask = rasterise(square(2, 1, 6, 4)[0:1], 6, 8)
    assert mask.shape == (6, 8) and mask[1:4, 2:6].all()
    assert abs(int(mask.sum()) - 12) <= 8  # boundary pixels may be drawn; nothing far outside
    assert not mask[5].any() and not mask[:, 7].any()


def test_coco_semantic_mask_small_on_top_crowd_void_and_voc_mapping(tmp_path):
    items = coco_datalist(write_coco(tmp_path))
    first, second = items
    assert first["labels"] == [PERSON, CHAIR, TEDDY] and second["labels"] == [DOG]  # crowd person: no label
    m = semantic_mask(first["annotations"], 10, 12)
    assert m[4, 4] == CHAIR and m[8, 1] == PERSON and m[1, 10] == TEDDY and m[9, 11] == 0
    crowd = semantic_mask(second["annotations"], 10, 12)
    assert (crowd[:, :2] == 255).all() and crowd[5, 7] == DOG
    voc = semantic_mask(first["annotations"], 10, 12, "voc")
    assert voc[4, 4] == VOC_CLASSES.index("chair") + 1 and voc[8, 1] == VOC_CLASSES.index("person") + 1
    assert voc[1, 10] == 0  # teddy bear is no VOC class: background


def test_coco_2014_names_and_default_image_folder(tmp_path):
    annotations = write_coco(tmp_path, year=2014)
    assert default_image_dir(annotations) == tmp_path / "train2014"
    record = json.loads(annotations.read_text())
    for image in record["images"]:
        image["file_name"] = f"{image['id']:012d}.jpg"  # a 2017-style name: the 2014 file is found by id
    annotations.write_text(json.dumps(record))
    items = coco_datalist(annotations)
    assert Path(items[0]["image"]).name == "COCO_train2014_000000000001.jpg"


@pytest.mark.parametrize("case,match", [("not json", "not a JSON"), ("no images key", "not a COCO"),
                                        ("orphan annotation", "unknown image"), ("missing jpeg", "not found")])
def test_coco_errors(tmp_path, case, match):
    annotations = write_coco(tmp_path)
    record = json.loads(annotations.read_text())
    if case == "not json":
        annotations.write_text("{")
    elif case == "no images key":
        annotations.write_text(json.dumps({"annotations": []}))
    elif case == "orphan annotation":
        record["annotations"][0]["image_id"] = 99
        annotations.write_text(json.dumps(record))
    else:
        (tmp_path / "train2017" / "000000000002.jpg").unlink()
    with pytest.raises(MedwssError, match=match):
        coco_datalist(annotations)


def test_export_to_voc_layout_reads_back_with_the_voc_loader(tmp_path):
    annotations = write_coco(tmp_path / "coco")
    voc = export_coco_to_voc(annotations, tmp_path / "VOC2012", splits={"train": ["000000000001"],
                                                                       "val": ["000000000002"]})  # fmt: skip
    items = voc_datalist(voc, "train") + voc_datalist(voc, "val")
    expected = coco_datalist(annotations, class_set="voc")
    assert [it["labels"] for it in items] == [it["labels"] for it in expected]
    np.testing.assert_array_equal(read_label_png(items[1]["mask"]),
                                  semantic_mask(expected[1]["annotations"], 10, 12, "voc"))  # fmt: skip
    with pytest.raises(MedwssError, match="refusing to overwrite"):
        export_coco_to_voc(annotations, voc)


# ----------------------------------------------------------------------------------------------------- dataset
def test_photo_dataset_gives_resized_image_multi_hot_labels_and_full_size_mask(tmp_path):
    items = coco_datalist(write_coco(tmp_path))
    item = photo_dataset(items, working_size=16, num_classes=80, with_mask=True)[0]
    assert tuple(item["image"].shape) == (3, 16, 16) and item["original_size"] == (10, 12)
    assert torch.nonzero(item["presence"]).flatten().tolist() == [PERSON - 1, CHAIR - 1, 77]
    assert item["mask"].shape == (10, 12) and item["mask"][4, 4] == CHAIR
    voc_items = voc_datalist(write_voc(tmp_path / "v"), "train")
    photos = load_photo_set(voc_items, 20, working_size=8, with_mask=True, class_set="voc")
    assert photos.images.shape == (2, 3, 8, 8) and type(photos.images) is torch.Tensor
    assert photos.presence[0, 14] == 1 and photos.presence.sum() == 2 and photos.masks[1][0, 2] == 255


def test_unreadable_photo_is_a_user_error(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_text("not a jpeg")
    with pytest.raises(MedwssError, match="cannot read image"):
        load_photo_set([{"image": str(bad)}], 3, 8)
    write_jpeg(tmp_path / "ok.jpg", 4, 4)
    with pytest.raises(MedwssError, match="outside 1-3"):
        load_photo_set([{"image": str(tmp_path / "ok.jpg"), "labels": [4]}], 3, 8)
