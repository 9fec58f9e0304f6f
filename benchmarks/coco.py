"""COCO-sample benchmark: RLSP vs Grad-CAM++ vs the single agent (0.8), semantic mIoU on held-out photos.

Data: the 144 COCO train2017 photos in ``shared/data/coco`` (see its README), all 80 categories. The photo bundle's
seeded image-level split (``medwss.inference.photo_training.photo_splits``, seed 0): 25 % held out (never trained
on), 15 % of the rest validation, the rest training. The detector and agent are the shipped ``bundles/coco``
weights (``--train`` retrains them first with ``medwss train bundles/coco``); their notes must name the same
held-out images, which is checked.

Each method turns a photo into one label map at 128 x 128 (one game or CAM per class, merged by the higher score,
``medwss.inference.photo``), resized back to the photo's size; scoring is VOC style over the held-out set
(one confusion matrix, background a class, crowd pixels 255 ignored, absent classes out): mIoU and mean Dice over
81 classes. Classes get a game either when the detector's image probability reaches the gate threshold (chosen
on the validation photos' image labels by micro-F1: "detector gate") or when the image label says so ("label
gate": the usual weakly-supervised pseudo-mask setting, image labels known).
Grad-CAM++'s map threshold is chosen on the validation photos by mIoU; the single agent stops below 0.8 (RLSP §5).
References: all background, and the oracle patch mask at G = 8 (each labelled class takes the patches at least
half covered by it): the ceiling of any 8 x 8 patch method.

These are COCO numbers on 36 photos from a detector trained on 108 from scratch: a functional check of the
pipeline, not comparable to the paper's COCO 2014 results, and not VOC results.

    .venv/bin/python benchmarks/coco.py [--data-dir ../shared/data] [--train] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from medwss.bundle.config import load_config, stage_config_file, stages_of
from medwss.bundle.selfplay_stage import game_rules
from medwss.data.natural.classes import class_names
from medwss.data.natural.dataset import resize_labels
from medwss.inference.loading import load_weights
from medwss.inference.photo import PhotoInferer, choose_gate_threshold, class_scores
from medwss.inference.photo_training import load_photo_detector, stage_photos
from medwss.metrics.patches import oracle_patch_mask, patches_to_pixels
from medwss.metrics.semantic import confusion_matrix, dice_from_confusion, miou_from_confusion

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BUNDLE = REPO / "bundles" / "coco"
CAM_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def scores(label_maps: list[np.ndarray], masks: list[np.ndarray], num_classes: int) -> dict:
    """mIoU, mean Dice and per-class IoU over a set (label maps at the photos' sizes)."""
    cm = sum(confusion_matrix(p, g, num_classes) for p, g in zip(label_maps, masks, strict=True))
    iou, miou = miou_from_confusion(cm)
    _, mdice = dice_from_confusion(cm)
    return {"miou": miou, "mdice": mdice, "iou": iou, "classes_scored": int(np.isfinite(iou).sum())}


def full_size(maps: torch.Tensor, masks: list[np.ndarray]) -> list[np.ndarray]:
    return [resize_labels(m, g.shape) for m, g in zip(maps, masks, strict=True)]


def oracle_maps(masks: list[np.ndarray], size: int, grid: int) -> torch.Tensor:
    """Each labelled class takes its patches >= 50 % covered (overlaps: the larger coverage wins)."""
    out = torch.zeros(len(masks), size, size, dtype=torch.int64)
    for n, mask in enumerate(masks):
        small = torch.from_numpy(resize_labels(mask, (size, size)).astype(np.int64))
        best = torch.zeros(size, size)
        for k in small.unique().tolist():
            if k in (0, 255):
                continue
            take = patches_to_pixels(oracle_patch_mask(small == k, grid), (size, size))
            cover = patches_to_pixels(torch.nn.functional.avg_pool2d((small == k)[None, None].float(),
                                                                     size // grid)[0, 0], (size, size))  # fmt: skip
            win = take & (cover > best)
            out[n][win], best[win] = k, cover[win]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--train", action="store_true", help="retrain bundles/coco first (medwss train)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    overrides = {"dataset_dir": args.data_dir}
    if args.train:
        from medwss import api

        command = "benchmarks/coco.py --train"
        api.train_bundle(BUNDLE, overrides=overrides, restart=True, progress=False, command=command)

    # ------------------------------------------------------------------------------------------ data and models
    config = load_config(BUNDLE, [stage_config_file(BUNDLE, s) for s in stages_of(BUNDLE)], overrides)
    photos, splits, names = stage_photos(config, with_mask=True)
    note = json.loads((BUNDLE / "models" / "detector.json").read_text())
    if note["data"]["holdout_ids"] != splits["holdout"]:
        sys.exit("the bundle's detector was trained with another held-out split: run with --train")
    detector = load_photo_detector(config, BUNDLE)
    rules = game_rules(config)
    inference = load_config(BUNDLE, [BUNDLE / "configs" / "inference.yaml"])
    from medwss.bundle.config import parsed

    policy = load_weights(parsed(inference, "network_def"), BUNDLE / "models" / "model.pt")
    num_classes = len(names) + 1
    size = photos.images.shape[-1]

    def part(name: str):
        rows = [i for i, image_id in enumerate(photos.ids) if image_id in set(splits[name])]
        return photos.images[rows], photos.presence[rows].bool(), [photos.masks[i] for i in rows]

    val_images, val_labels, val_masks = part("val")
    test_images, test_labels, test_masks = part("holdout")

    # ------------------------------------------------------------------------------------------ thresholds on val
    # The gate from the validation photos' image labels (weak labels, micro-F1); CAM's map threshold by val mIoU.
    gate_t, gate_f1 = choose_gate_threshold(class_scores(detector, val_images, rules.grid_size)[0], val_labels)
    cam_choice = {}
    for t in CAM_THRESHOLDS:
        inferer = PhotoInferer(detector, rules, "cam", gate_threshold=gate_t, cam_threshold=t)
        maps = inferer.segment(val_images, None, val_labels)
        cam_choice[t] = scores(full_size(maps, val_masks), val_masks, num_classes)["miou"]
    cam_t = max(cam_choice, key=lambda t: (cam_choice[t], -t))

    # ------------------------------------------------------------------------------------------ held-out photos
    rows, per_class = [], {}
    for gate_name in ("detector", "labels"):
        present = None if gate_name == "detector" else test_labels
        for method in ("rlsp", "single-agent", "cam"):
            inferer = PhotoInferer(detector, rules, method, gate_threshold=gate_t, threshold=0.8, cam_threshold=cam_t)
            started = time.perf_counter()
            maps = inferer.segment(test_images, policy if method == "rlsp" else None, present)
            seconds = time.perf_counter() - started
            result = scores(full_size(maps, test_masks), test_masks, num_classes)
            fg = (maps > 0).float().mean().item()
            rows.append({"gate": gate_name, "method": method, "miou": result["miou"], "mdice": result["mdice"],
                         "classes_scored": result["classes_scored"], "foreground_fraction": fg,
                         "seconds_per_image": seconds / len(test_images)})  # fmt: skip
            per_class[f"{gate_name}/{method}"] = result["iou"]
    for name, maps in (("all background", torch.zeros(len(test_masks), size, size, dtype=torch.int64)),
                       ("oracle patches G=8", oracle_maps(test_masks, size, rules.grid_size))):  # fmt: skip
        result = scores(full_size(maps, test_masks), test_masks, num_classes)
        rows.append({"gate": "labels" if "oracle" in name else "-", "method": name, "miou": result["miou"],
                     "mdice": result["mdice"], "classes_scored": result["classes_scored"],
                     "foreground_fraction": (maps > 0).float().mean().item(), "seconds_per_image": None})  # fmt: skip
        per_class[name] = result["iou"]

    # ------------------------------------------------------------------------------------------ report
    image_probs, _ = class_scores(detector, test_images, rules.grid_size)
    gated = image_probs >= gate_t
    gate_stats = {"threshold": gate_t, "val_micro_f1": gate_f1,
                  "recall": float((gated & test_labels).sum() / test_labels.sum()),
                  "precision": float((gated & test_labels).sum() / max(int(gated.sum()), 1)),
                  "games_per_image": float(gated.sum(1).float().mean()),
                  "labels_per_image": float(test_labels.sum(1).float().mean())}  # fmt: skip
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    policy_note = json.loads((BUNDLE / "models" / "policy.json").read_text())
    label_names = ["background", *class_names("coco")]
    top = {
        key: {label_names[k]: float(v[k]) for k in np.argsort(-np.nan_to_num(v, nan=-1))[:5] if math.isfinite(v[k])}
        for key, v in per_class.items()
    }
    out = {
        "benchmark": "coco sample, held-out photos, semantic segmentation (81 classes, VOC rules)",
        "data": {"photos": len(photos.ids), "train": len(splits["train"]), "val": len(splits["val"]),
                 "holdout": len(splits["holdout"]), "holdout_ids": splits["holdout"]},  # fmt: skip
        "models": {"detector": note["metrics"], "selfplay": policy_note["metrics"],
                   "detector_settings": note["settings"]},  # fmt: skip
        "cam_threshold_by_val_miou": {str(k): v for k, v in cam_choice.items()},
        "cam_threshold": cam_t,
        "detector_gate": gate_stats,
        "rows": rows,
        "top_classes_iou": top,
        "medwss_commit": commit.stdout.strip(),
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), CPU",
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "coco.json").write_text(json.dumps(out, indent=1, default=float) + "\n")

    def fmt(v):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"

    lines = [
        "# COCO sample: RLSP vs Grad-CAM++ vs single agent (held-out photos)",
        "",
        f"`benchmarks/coco.py` at {out['medwss_commit']}; {out['machine']}. 144 COCO train2017 photos "
        f"(`shared/data/coco`), seeded image split {len(splits['train'])} train / {len(splits['val'])} val / "
        f"{len(splits['holdout'])} held out; all 80 categories + background, VOC scoring (one confusion matrix over "
        "the held-out photos at their own size, crowd = 255 ignored, absent classes out). **COCO sample numbers, "
        "not VOC results, and not comparable to the paper's COCO 2014 (detector trained from scratch on 108 photos).**",
        "",
        f"Detector (bundles/coco): val image AUC {fmt(note['metrics']['val_image_auc'])} (best epoch "
        f"{note['metrics']['best_epoch']}); gate >= {gate_t} (best val micro-F1 {gate_f1:.2f}) on held-out photos: "
        f"recall {gate_stats['recall']:.2f}, "
        f"precision {gate_stats['precision']:.2f}, {gate_stats['games_per_image']:.1f} games per photo vs "
        f"{gate_stats['labels_per_image']:.1f} labelled classes. Grad-CAM++ threshold {cam_t} (best val mIoU).",
        "",
        "| gate | method | mIoU | mean Dice | classes scored | foreground fraction | s / photo |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['gate']} | {r['method']} | {fmt(r['miou'])} | {fmt(r['mdice'])} | {r['classes_scored']} "
                     f"| {fmt(r['foreground_fraction'])} | {fmt(r['seconds_per_image'])} |")  # fmt: skip
    lines += ["", "Best per-class IoU (held-out):", ""]
    for key, values in top.items():
        lines.append(f"- {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
    (RESULTS / "coco.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
