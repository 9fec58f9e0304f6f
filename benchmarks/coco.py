"""Photo benchmarks (COCO sample, PASCAL VOC): RLSP vs Grad-CAM++ vs the single agent (0.8), held-out mIoU.

``--task coco`` (default). Data: the 144 COCO train2017 photos in ``shared/data/coco`` (see its README), all 80
categories. The photo bundle's seeded image-level split (``medwss.bundle.stages.bundle_splits``, seed 0):
25 % held out (never trained on), 15 % of the rest validation, the rest training. The detector and agent are the
shipped ``bundles/coco`` weights (``--train`` retrains them first with ``medwss train bundles/coco``); their notes
must name the same held-out images, which is checked.

``--task voc``. Data: the 225 PASCAL VOC 2012 photos in ``shared/data/voc`` (official seg ``val`` ids), 20 classes.
The shipped ``bundles/voc`` weights saw every one of them, so the benchmark trains its own copy of the bundle
(same configs, ``runs/bench/voc/bundle``) on a fixed seeded image split (seed 0): 60 photos held out (test), 30
validation, 135 training (``bundle_splits`` with holdout 60/225 and validation 30/165). The copy is reused while
the bundle's configs and the settings are those it was trained with (``--train`` retrains it). ``--set ID=VALUE``
trains the copy with changed settings (a design trial, chosen on the validation column only) and ``--tag`` names
its report.

Each method turns a photo into one label map at 128 x 128 (one game or CAM per class, merged by the higher score,
``medwss.inference.multiclass``), resized back to the photo's size; scoring is VOC style over a set of photos
(one confusion matrix, background a class, void / crowd pixels 255 ignored, absent classes out): mIoU and mean Dice.
Classes get a game either when the detector's image probability reaches the gate threshold (chosen on the
validation photos' image labels by micro-F1: "detector gate") or when the image label says so ("label gate": the
usual weakly-supervised pseudo-mask setting, image labels known).
Grad-CAM++'s map threshold is chosen on the validation photos by mIoU; the single agent stops below 0.8 (RLSP §5).
RLSP is agent a alone, stopping when P(terminate) passes 0.5 ("rlsp") or at the median of its own sampled
stopping time ("rlsp median stop", ``medwss.selfplay.rollout.STOPPING_RULES``).
References: all background; the whole photo (every labelled class takes every patch, overlaps go to the class
with the higher detector patch score): what image labels alone give; the central box (every labelled class takes
the central 40 % x 40 % of the photo, or the side the validation photos pick): what framing alone gives; the
oracle patch mask at G = 8 (each labelled class takes the patches at least half covered by it): the ceiling of any
8 x 8 patch method. The detector's patch ROC AUC (labelled classes of held-out photos, a patch is the class when
>= 50 % covered) says whether its scores localise at all.

Every row is scored on the validation photos as well (the column designs are chosen on) and on the held-out photos.
These are small-sample numbers from detectors trained from scratch on 92 (COCO) or 135 (VOC) photos: functional
checks of the pipeline, not comparable to published COCO / VOC results.

    .venv/bin/python benchmarks/coco.py [--task coco|voc] [--data-dir ../shared/data] [--train] [--threads 1]
    .venv/bin/python benchmarks/coco.py --task voc --set detector#network_def#pooling=mean --tag mean
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from medwss.agents.policy import AgentPolicy
from medwss.bundle.selfplay_stage import game_rules, load_detector
from medwss.bundle.stages import bundle_splits
from medwss.data.natural.classes import class_names
from medwss.data.natural.dataset import load_photo_set, resize_labels
from medwss.inference.inferer import SelfPlayInferer
from medwss.inference.loading import load_weights
from medwss.inference.multiclass import choose_gate_threshold, class_games, class_scores, merge_games
from medwss.metrics.patches import oracle_patch_mask, patch_labels, patches_to_pixels, roc_auc
from medwss.metrics.semantic import confusion_matrix, dice_from_confusion, miou_from_confusion
from medwss.runtime.config import load_config, parse_overrides, parsed, stage_config_file, stages_of

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CAM_THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BOX_SIDES = (0.4, 0.5, 0.6, 0.7, 0.8)
"""Central-box sides (fractions of the photo's sides) the validation photos choose from."""
TASKS = {
    # name: shipped bundle, photos in all, (held-out, validation) counts of the fixed split or None (bundle's own)
    "coco": {"bundle": REPO / "bundles" / "coco", "photos": 144, "split": None},
    "voc": {"bundle": REPO / "bundles" / "voc", "photos": 225, "split": (60, 30)},
}


def bundle_photos(config):
    """The bundle's photos with their label maps at full size, its split and its class names."""
    data = parsed(config, "data")
    class_set = str(data.get("class_set", "coco"))
    names = class_names(class_set)
    photos = load_photo_set(data["datalist"], len(names), int(data.get("working_size", 128)), True, class_set)
    return photos, bundle_splits(config, photos.ids), names


def photo_inferer(detector, rules, method: str, **options) -> SelfPlayInferer:
    """The bundles' inferer with its multi-class step, as ``inference.yaml`` builds it for photos."""
    return SelfPlayInferer(detector, rules, method, region="none", multiclass=True, **options)


def scores(label_maps: list[np.ndarray], masks: list[np.ndarray], num_classes: int) -> dict:
    """mIoU, mean Dice and per-class IoU over a set (label maps at the photos' sizes)."""
    cm = sum(confusion_matrix(p, g, num_classes) for p, g in zip(label_maps, masks, strict=True))
    iou, miou = miou_from_confusion(cm)
    _, mdice = dice_from_confusion(cm)
    return {"miou": miou, "mdice": mdice, "iou": iou, "classes_scored": int(np.isfinite(iou).sum())}


def full_size(maps: torch.Tensor, masks: list[np.ndarray]) -> list[np.ndarray]:
    return [resize_labels(m, g.shape) for m, g in zip(maps, masks, strict=True)]


def small_masks(masks: list[np.ndarray], size: int) -> torch.Tensor:
    """(N, S, S) int64 reference label maps at the working size (nearest neighbour)."""
    return torch.stack([torch.from_numpy(resize_labels(m, (size, size)).astype(np.int64)) for m in masks])


def oracle_maps(masks: list[np.ndarray], size: int, grid: int) -> torch.Tensor:
    """Each labelled class takes its patches >= 50 % covered (overlaps: the larger coverage wins)."""
    out = torch.zeros(len(masks), size, size, dtype=torch.int64)
    for n, small in enumerate(small_masks(masks, size)):
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


def whole_photo_maps(labels: torch.Tensor, patch_probs: torch.Tensor, size: int) -> torch.Tensor:
    """Every labelled class takes the whole photo; a pixel two classes claim goes to the higher patch score."""
    games = class_games(labels, patch_probs)
    claims = patches_to_pixels(games.scores, (size, size)).float()
    return merge_games(games, torch.ones_like(claims, dtype=torch.bool), claims, len(labels))


def central_box_maps(labels: torch.Tensor, patch_probs: torch.Tensor, size: int, side: float) -> torch.Tensor:
    """Every labelled class takes the central ``side`` x ``side`` box of the photo (a fraction of each side): a
    content-free prior (photographers frame the object); overlaps go to the class with the higher patch score."""
    games = class_games(labels, patch_probs)
    claims = patches_to_pixels(games.scores, (size, size)).float()
    lo = int(round((1.0 - side) / 2 * size))
    box = torch.zeros(size, size, dtype=torch.bool)
    box[lo : size - lo, lo : size - lo] = True
    return merge_games(games, box.expand_as(claims), claims, len(labels))


def centre_scores(grid: int) -> torch.Tensor:
    """(G, G) minus each patch centre's distance to the photo's centre: a content-free patch score."""
    ys, xs = torch.meshgrid(torch.arange(grid) + 0.5, torch.arange(grid) + 0.5, indexing="ij")
    return -((ys - grid / 2) ** 2 + (xs - grid / 2) ** 2).sqrt()


def patch_auc(labels: torch.Tensor, patch_probs: torch.Tensor, cam: torch.Tensor, masks: list[np.ndarray], grid: int):
    """ROC AUC of patch scores over the labelled classes' patches: MIL patch probability, mean Grad-CAM++ per patch,
    and closeness to the photo's centre (content-free).

    A patch is the class when at least half of it is (``patch_labels`` at 0.5); the scores of one (photo, class)
    game are ranked against each other and against every other game's (pooled), and per game (mean over games that
    have both kinds of patch).
    """
    games = class_games(labels, patch_probs)
    size = cam.shape[-1]
    small = small_masks(masks, size)[games.image_index]
    truth = patch_labels(small == (games.class_index + 1)[:, None, None], grid, 0.5)
    cam_patches = torch.nn.functional.avg_pool2d(cam[:, None], size // grid)[:, 0]
    out = {}
    centre = centre_scores(grid).expand_as(games.scores)
    for name, values in (("mil", games.scores), ("cam", cam_patches), ("centre", centre)):
        per_game = [roc_auc(v, t) for v, t in zip(values, truth, strict=True)]
        per_game = [a for a in per_game if math.isfinite(a)]
        out[name] = {"pooled": roc_auc(values, truth), "mean_per_game": float(np.mean(per_game)),
                     "games": len(per_game)}  # fmt: skip
    return out


def bench_bundle(task: str, args, overrides: dict) -> Path:
    """The bundle the benchmark measures: the shipped one (coco) or a copy trained on the fixed split (voc)."""
    spec = TASKS[task]
    if spec["split"] is None:
        if args.set:
            sys.exit("--set trains a copy of the bundle: only tasks with a fixed split (voc) take it")
        if args.train:
            from medwss import api

            api.train_bundle(spec["bundle"], overrides=overrides, restart=True, progress=False,
                             command=f"benchmarks/coco.py --task {task} --train")  # fmt: skip
        return spec["bundle"]
    work = REPO / "runs" / "bench" / (task if not args.tag else f"{task}-{args.tag}")
    copy = work / "bundle"
    note = copy / "models" / "detector.json"
    configs = {p.name: p.read_text() for p in sorted((spec["bundle"] / "configs").iterdir()) if p.is_file()}
    wanted = {**overrides, **parse_overrides(args.set or []), "configs": configs}  # retrain when either changes
    stale = True
    if note.is_file() and not args.train:
        trained = json.loads((work / "overrides.json").read_text()) if (work / "overrides.json").is_file() else None
        stale = trained != wanted or not (copy / "models" / "model.pt").is_file()
    if stale:
        if copy.exists():
            shutil.rmtree(copy)
        shutil.copytree(spec["bundle"] / "configs", copy / "configs")
        from medwss import api

        command = " ".join(["benchmarks/coco.py", "--task", task, *sum((["--set", s] for s in args.set or []), [])])
        started = time.perf_counter()
        settings = {k: v for k, v in wanted.items() if k != "configs"}
        api.train_bundle(copy, overrides=settings, run_dir=work / "run", restart=True, progress=False, command=command)
        (work / "train_seconds.txt").write_text(f"{time.perf_counter() - started:.1f}\n")
        (work / "overrides.json").write_text(json.dumps(wanted, indent=1) + "\n")
    return copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="coco")
    parser.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--train", action="store_true", help="retrain the measured bundle first")
    parser.add_argument("--set", action="append", metavar="ID=VALUE", help="voc: train the copy with this setting")
    parser.add_argument("--tag", default="", help="name of a design trial: results/<task>-<tag>.{md,json}")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    task, spec = args.task, TASKS[args.task]
    overrides: dict = {"dataset_dir": args.data_dir}
    if spec["split"] is not None:
        n_test, n_val = spec["split"]
        overrides["data#holdout_fraction"] = n_test / spec["photos"]
        overrides["detector#val_fraction"] = n_val / (spec["photos"] - n_test)
    bundle = bench_bundle(task, args, overrides)

    # ------------------------------------------------------------------------------------------ data and models
    extra = parse_overrides(args.set or [])
    config = load_config(bundle, [stage_config_file(bundle, s) for s in stages_of(bundle)], {**overrides, **extra})
    photos, splits, names = bundle_photos(config)
    if len(photos.ids) != spec["photos"]:
        sys.exit(f"expected the {spec['photos']} shared {task} photos, found {len(photos.ids)}")
    if spec["split"] is not None and (len(splits["holdout"]), len(splits["val"])) != spec["split"]:
        sys.exit(f"split {len(splits['holdout'])} held out / {len(splits['val'])} val, expected {spec['split']}")
    note = json.loads((bundle / "models" / "detector.json").read_text())
    if note["data"].get("holdout_patients", note["data"].get("holdout_ids")) != splits["holdout"]:
        sys.exit("the bundle's detector was trained with another held-out split: run with --train")
    detector = load_detector(config, bundle)
    rules = game_rules(config)
    policy_note = json.loads((bundle / "models" / "policy.json").read_text())
    policy = load_weights(AgentPolicy(**policy_note["policy"]), bundle / "models" / "model.pt")  # as trained
    prior = str(config["selfplay"].get("position_prior", "none"))  # the game scores the agent trained on
    num_classes = len(names) + 1
    size = photos.images.shape[-1]

    def part(name: str):
        rows = [i for i, image_id in enumerate(photos.ids) if image_id in set(splits[name])]
        return photos.images[rows], photos.presence[rows].bool(), [photos.masks[i] for i in rows]

    sets = {"val": part("val"), "test": part("holdout")}

    # ------------------------------------------------------------------------------------------ thresholds on val
    # The gate from the validation photos' image labels (weak labels, micro-F1); CAM's map threshold by val mIoU.
    val_images, val_labels, val_masks = sets["val"]
    gate_t, gate_f1 = choose_gate_threshold(class_scores(detector, val_images, rules.grid_size)[0], val_labels)
    cam_choice = {}
    for t in CAM_THRESHOLDS:
        inferer = photo_inferer(detector, rules, "cam", gate_threshold=gate_t, cam_threshold=t)
        maps = inferer.class_labels(val_images, None, val_labels)
        cam_choice[t] = scores(full_size(maps, val_masks), val_masks, num_classes)["miou"]
    cam_t = max(cam_choice, key=lambda t: (cam_choice[t], -t))
    val_probs = class_scores(detector, val_images, rules.grid_size)[1]
    box_choice = {}
    for side in BOX_SIDES:
        maps = central_box_maps(val_labels, val_probs, size, side)
        box_choice[side] = scores(full_size(maps, val_masks), val_masks, num_classes)["miou"]
    box_side = max(box_choice, key=lambda t: (box_choice[t], -t))

    # ------------------------------------------------------------------------------------------ every row, val and test
    rows, per_class = [], {}
    for gate_name in ("detector", "labels"):
        for method in ("rlsp", "rlsp median stop", "single-agent", "cam"):
            row = {"gate": gate_name, "method": method}
            for set_name, (images, labels, masks) in sets.items():
                present = None if gate_name == "detector" else labels
                stopping = "median" if "median" in method else "step"
                inferer = photo_inferer(detector, rules, method.split()[0], gate_threshold=gate_t, threshold=0.8,
                                        cam_threshold=cam_t, stopping=stopping, position_prior=prior)  # fmt: skip
                started = time.perf_counter()
                maps = inferer.class_labels(images, policy if method.startswith("rlsp") else None, present)
                seconds = time.perf_counter() - started
                result = scores(full_size(maps, masks), masks, num_classes)
                row[f"{set_name}_miou"], row[f"{set_name}_mdice"] = result["miou"], result["mdice"]
                if set_name == "test":
                    row.update(classes_scored=result["classes_scored"],
                               foreground_fraction=(maps > 0).float().mean().item(),
                               seconds_per_image=seconds / len(images))  # fmt: skip
                    per_class[f"{gate_name}/{method}"] = result["iou"]
            rows.append(row)
    references = {
        "all background": ("-", lambda images, labels, masks: torch.zeros(len(masks), size, size, dtype=torch.int64)),
        "whole photo": ("labels", lambda images, labels, masks: whole_photo_maps(
            labels, class_scores(detector, images, rules.grid_size)[1], size)),
        "central box 40%": ("labels", lambda images, labels, masks: central_box_maps(
            labels, class_scores(detector, images, rules.grid_size)[1], size, 0.4)),
        f"central box {box_side:.0%} (val)": ("labels", lambda images, labels, masks: central_box_maps(
            labels, class_scores(detector, images, rules.grid_size)[1], size, box_side)),
        "oracle patches G=8": ("labels", lambda images, labels, masks: oracle_maps(masks, size, rules.grid_size)),
    }  # fmt: skip
    for name, (gate_name, make) in references.items():
        row = {"gate": gate_name, "method": name}
        for set_name, (images, labels, masks) in sets.items():
            maps = make(images, labels, masks)
            result = scores(full_size(maps, masks), masks, num_classes)
            row[f"{set_name}_miou"], row[f"{set_name}_mdice"] = result["miou"], result["mdice"]
            if set_name == "test":
                row.update(classes_scored=result["classes_scored"],
                           foreground_fraction=(maps > 0).float().mean().item(), seconds_per_image=None)  # fmt: skip
                per_class[name] = result["iou"]
        rows.append(row)

    # ------------------------------------------------------------------------------------------ report
    test_images, test_labels, test_masks = sets["test"]
    image_probs, test_patch_probs = class_scores(detector, test_images, rules.grid_size)
    cam_games = class_games(test_labels, test_patch_probs)
    from medwss.inference.multiclass import cam_class_maps

    aucs = patch_auc(test_labels, test_patch_probs, cam_class_maps(detector, test_images, cam_games), test_masks,
                     rules.grid_size)  # fmt: skip
    gated = image_probs >= gate_t
    gate_stats = {"threshold": gate_t, "val_micro_f1": gate_f1,
                  "recall": float((gated & test_labels).sum() / test_labels.sum()),
                  "precision": float((gated & test_labels).sum() / max(int(gated.sum()), 1)),
                  "games_per_image": float(gated.sum(1).float().mean()),
                  "labels_per_image": float(test_labels.sum(1).float().mean())}  # fmt: skip
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    label_names = ["background", *class_names(str(config["data"]["class_set"]))]
    top = {
        key: {label_names[k]: float(v[k]) for k in np.argsort(-np.nan_to_num(v, nan=-1))[:5] if math.isfinite(v[k])}
        for key, v in per_class.items()
    }
    train_seconds = None
    seconds_file = bundle.parent / "train_seconds.txt"
    if spec["split"] is not None and seconds_file.is_file():
        train_seconds = float(seconds_file.read_text())
    out = {  # fmt: skip
        "benchmark": f"{task} photos, held-out photos, semantic segmentation ({num_classes} classes, VOC rules)",
        "task": task,
        "settings_changed": extra,
        "data": {
            "photos": len(photos.ids),
            "train": len(splits["train"]),
            "val": len(splits["val"]),
            "holdout": len(splits["holdout"]),
            "holdout_ids": splits["holdout"],
            "val_ids": splits["val"],
        },
        "models": {
            "detector": note["metrics"],
            "selfplay": policy_note["metrics"],
            "detector_settings": note["settings"],
            "train_seconds": train_seconds,
        },
        "cam_threshold_by_val_miou": {str(k): v for k, v in cam_choice.items()},
        "cam_threshold": cam_t,
        "central_box_side_by_val_miou": {str(k): v for k, v in box_choice.items()},
        "central_box_side": box_side,
        "detector_gate": gate_stats,
        "patch_auc": aucs,
        "rows": rows,
        "top_classes_iou": top,
        "medwss_commit": commit.stdout.strip(),
        "machine": f"{platform.machine()}, {args.threads} torch thread(s), CPU",
    }
    stem = task if not args.tag else f"{task}-{args.tag}"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=1, default=float) + "\n")

    def fmt(v):
        return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"

    if task == "coco":
        title = "# COCO sample: RLSP vs Grad-CAM++ vs single agent (held-out photos)"
        data_line = (
            f"144 COCO train2017 photos (`shared/data/coco`), seeded image split {len(splits['train'])} train / "
            f"{len(splits['val'])} val / {len(splits['holdout'])} held out; all 80 categories + background, VOC "
            "scoring (one confusion matrix over a set of photos at their own size, crowd = 255 ignored, absent "
            "classes out). **COCO sample numbers, not VOC results, and not comparable to the paper's COCO 2014 "
            "(detector trained from scratch on 92 photos).**"
        )
    else:
        title = "# PASCAL VOC 2012: RLSP vs Grad-CAM++ vs single agent (held-out photos)"
        data_line = (
            f"225 VOC 2012 photos (`shared/data/voc`, official seg `val` ids), fixed seeded image split "
            f"{len(splits['train'])} train / {len(splits['val'])} val / {len(splits['holdout'])} held out (test); "
            "a copy of `bundles/voc` trained on the training photos only (image-level labels, from scratch, "
            f"{fmt(train_seconds and train_seconds / 60)} min for both stages); 20 classes + background, VOC scoring "
            "(one confusion matrix over a set of photos at their own size, void 255 ignored, absent classes out). "
            "**Small-sample numbers (135 training photos, no ImageNet weights): not comparable to published VOC "
            "results.**"
        )
    inferer_config = yaml.safe_load((bundle / "configs" / "inference.yaml").read_text())["inferer"]
    data_line += (
        f" The bundle's `medwss segment` gates by the detector and plays RLSP with `stopping: "
        f"{inferer_config.get('stopping', 'step')}`; game scores x position prior `{prior}` (the agent's training "
        f"games, roi threshold {rules.roi_threshold}); the single agent plays the same scores."
    )
    if extra:
        data_line += " Settings changed from the bundle: " + ", ".join(f"`{k}={v}`" for k, v in extra.items()) + "."
    lines = [
        title,
        "",
        f"`benchmarks/coco.py --task {task}{' --tag ' + args.tag if args.tag else ''}` at {out['medwss_commit']}; "
        f"{out['machine']}. {data_line}",
        "",
        f"Detector: val image AUC {fmt(note['metrics']['val_image_auc'])} (best epoch "
        f"{note['metrics']['best_epoch']}); gate >= {gate_t} (best val micro-F1 {gate_f1:.2f}) on held-out photos: "
        f"recall {gate_stats['recall']:.2f}, "
        f"precision {gate_stats['precision']:.2f}, {gate_stats['games_per_image']:.1f} games per photo vs "
        f"{gate_stats['labels_per_image']:.1f} labelled classes. Grad-CAM++ threshold {cam_t} (best val mIoU). "
        f"Patch ROC AUC on the held-out photos' labelled classes (patch = class when >= 50 % covered): MIL patch "
        f"score {fmt(aucs['mil']['pooled'])} pooled / {fmt(aucs['mil']['mean_per_game'])} mean per game, "
        f"Grad-CAM++ per patch {fmt(aucs['cam']['pooled'])} / {fmt(aucs['cam']['mean_per_game'])}, "
        f"closeness to the photo's centre (content-free) {fmt(aucs['centre']['pooled'])} / "
        f"{fmt(aucs['centre']['mean_per_game'])} ({aucs['mil']['games']} games). Central box side "
        f"{box_side:.0%} (best val mIoU).",
        "",
        "| gate | method | test mIoU | test mean Dice | val mIoU | classes scored | foreground fraction | s / photo |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['gate']} | {r['method']} | {fmt(r['test_miou'])} | {fmt(r['test_mdice'])} "
                     f"| {fmt(r['val_miou'])} | {r['classes_scored']} | {fmt(r['foreground_fraction'])} "
                     f"| {fmt(r['seconds_per_image'])} |")  # fmt: skip
    lines += ["", "Best per-class IoU (held-out):", ""]
    for key, values in top.items():
        lines.append(f"- {key}: " + ", ".join(f"{k} {v:.2f}" for k, v in values.items()))
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
