"""Presence-detector benchmark on the real data: slice and patch AUC, Grad-CAM++ and reference masks, speed.

Leave-one-patient-out per task. Each fold trains one detector per mode (``MODES``: loss and coordinate channels)
from slice labels only (``DetectorTrainer``), picks
the best epoch and the Grad-CAM++ / trivial-mask thresholds on a validation patient taken from the training side
(never the test patient), then reports on the held-out patient:

* slice AUC; patch AUC (patch positive when >= 50 % covered by the ROI) at G = 4, 8, 16, 32, counted inside the
  region (patches >= 50 % inside the body / liver) and over all patches; patches are scored with the region prior;
* 3D Dice (working grid, 128 x 128 x slices) of Grad-CAM++ masks, of the trivial masks (the region on the slices
  the detector calls positive; the region on every slice) and of the oracle patch masks (coverage >= 0.5);
* training time per fold, and patch-scoring throughput at G = 16.

Tasks. Prostate: prostate158_subset (001, 020, 021) + promise12_resampled case00, preset mr, region = body mask
(``medwss.data.regions.body_mask`` per scan); fold i tests patient i, validates on the next patient in sorted
order (cyclic) and trains on the other two. Liver tumour: 3D-IRCADb patients 01 and 07, preset ct_liver, region =
the liver prior, liver slices only. Only 01 has tumours, so 01's liver slices are cut into 3 contiguous slabs
(``contiguous_slabs``): fold i tests slab i, validates on slab i+1 (cyclic) and trains on the third slab plus all of
patient 07 (always in training); the 3 slices next to each held-out slab are left out of training.

    .venv/bin/python benchmarks/detector.py [--data-dir ../shared/data] [--epochs 25] [--threads 1] [--speed-only]
        [--tasks prostate liver] [--modes instance bag bag_nocoords]
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from monai.utils import set_determinism

from medwss.bundle.data import SliceTensors, build_slices, class_mask_files, weak_labels
from medwss.data.regions import body_mask
from medwss.data.splits import contiguous_slabs
from medwss.detector.cam import cam_maps, choose_cam_thresholds, slice_probabilities, threshold_maps
from medwss.detector.network import build_detector
from medwss.detector.scoring import score_patches
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings
from medwss.metrics.patches import oracle_patch_mask, patch_labels, roc_auc
from medwss.metrics.segmentation import case_metrics

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
GRIDS = (4, 8, 16, 32)
SEED = 0
GAP = 3
MODES = {
    "instance": {"loss": "instance", "coord_channels": True},
    "bag": {"loss": "bag", "coord_channels": True},
    # Without position channels the net cannot learn where anatomy that co-varies with the slice label sits
    # (measured: prostate patch AUC 0.29-0.37 with coordinates, ~0.5 without; liver loses ~0.2 without them).
    "bag_nocoords": {"loss": "bag", "coord_channels": False},
}
"""Detector variants the benchmark trains per fold: training loss and CoordConv channels."""


# ---------------------------------------------------------------- data
def load_task(task: str, data_dir: Path, size: int, cache: Path) -> SliceTensors:
    """Slices with masks (evaluation only) and the region prior in ``prior``: body mask (prostate) or liver."""
    configs = REPO / "configs" / "datasets"
    if task == "prostate":
        sources = [
            {"root": str(data_dir / "prostate" / "prostate158_subset"), "spec": str(configs / "prostate158.yaml")},
            {"root": str(data_dir / "prostate" / "promise12_resampled"),
             "spec": str(configs / "promise12_resampled.yaml")},
        ]
        preset = "mr"
    else:
        sources = [{"root": str(data_dir / "liver"), "spec": str(configs / "ircadb.yaml")}]
        preset = "ct_liver"
    manifest, found = weak_labels({"sources": sources})
    slices = build_slices(manifest, preset, size, mask_files=class_mask_files(found, cache))
    if task == "prostate":
        body = torch.zeros(len(slices), size, size, dtype=torch.bool)
        for case in sorted(set(slices.cases)):
            sel = torch.tensor([c == case for c in slices.cases])
            body[sel] = body_mask(slices.images[sel][:, 0])  # one threshold per scan
        slices.prior = body
        return slices
    return slices.select(slices.prior.flatten(1).any(1))  # liver slices only


def folds(task: str, data: SliceTensors) -> list[dict]:
    """Per fold: name, and bool selections (train, val, test) over ``data``'s slices, plus the patients."""
    patients = sorted(set(data.patients))
    ids = np.asarray(data.patients)
    out = []
    if task == "prostate":
        for i, test in enumerate(patients):
            val = patients[(i + 1) % len(patients)]
            train = [p for p in patients if p not in (test, val)]
            out.append({"name": test, "test": ids == test, "val": ids == val, "train": np.isin(ids, train),
                        "test_patient": test, "val_patient": val, "train_patients": train})
        return out
    positive = "ircadb01_01"
    pos_idx = np.flatnonzero(ids == positive)  # processed (z) order within the scan
    slabs = contiguous_slabs(len(pos_idx), 3)
    for i in range(3):
        test_pos, val_pos = slabs[i], slabs[(i + 1) % 3]
        held = np.zeros(len(pos_idx), bool)
        for slab in (test_pos, val_pos):
            held[max(0, slab[0] - GAP) : slab[-1] + GAP + 1] = True
        test, val, train = (np.zeros(len(ids), bool) for _ in range(3))
        test[pos_idx[test_pos]] = True
        val[pos_idx[val_pos]] = True
        train[pos_idx[~held]] = True
        train[ids != positive] = True
        z = data.slice_index[pos_idx[test_pos]]
        out.append({"name": f"01 slab {i} (z {int(z.min())}-{int(z.max())})", "test": test, "val": val,
                    "train": train, "test_patient": f"{positive} slab {i}",
                    "val_patient": f"{positive} slab {(i + 1) % 3}",
                    "train_patients": [f"{positive} slab {(i + 2) % 3}", "ircadb01_07"]})
    return out


# ---------------------------------------------------------------- evaluation
def dice_by_volume(pred: torch.Tensor, truth: torch.Tensor, cases: list[str]) -> dict[str, float]:
    """3D Dice per case (slices of a case are contiguous, in processed order)."""
    out = {}
    for case in sorted(set(cases)):
        sel = torch.tensor([c == case for c in cases])
        out[case] = case_metrics(pred[sel].numpy(), truth[sel].numpy())["dice"]
    return out


def mean_dice(pred: torch.Tensor, truth: torch.Tensor, cases: list[str]) -> float:
    return float(np.mean(list(dice_by_volume(pred, truth, cases).values())))


def evaluate_fold(model, val: SliceTensors, test: SliceTensors, task: str) -> dict:
    """Slice/patch AUC, Grad-CAM++ and trivial-mask Dice of one trained detector on the held-out slices."""
    truth_t, region_t = test.masks[:, 0], test.prior
    probs_t = slice_probabilities(model, test.images, region=region_t)
    result: dict = {"slice_auc": roc_auc(probs_t, test.presence[:, 0]), "patch_auc_inside": {}, "patch_auc_all": {}}
    for grid in GRIDS:
        scores = score_patches(model, test.images, grid, region=region_t)
        labels = patch_labels(truth_t, grid, 0.5)
        inside = patch_labels(region_t, grid, 0.5)
        result["patch_auc_inside"][grid] = roc_auc(scores[inside], labels[inside])
        result["patch_auc_all"][grid] = roc_auc(scores, labels)
    # Grad-CAM++: thresholds on the validation patient, then applied once to the test patient.
    maps_v = cam_maps(model, val.images, region=val.prior)
    probs_v = slice_probabilities(model, val.images, region=val.prior)
    maps_t = cam_maps(model, test.images, region=region_t)
    variants = {"detected": (probs_v, probs_t, None)}
    if task == "liver":
        variants["told"] = (val.presence[:, 0], test.presence[:, 0], (0.5,))
    for name, (scores_v, scores_t, slice_candidates) in variants.items():
        kwargs = {} if slice_candidates is None else {"slice_thresholds": slice_candidates}
        chosen = choose_cam_thresholds(maps_v, scores_v, val.masks[:, 0], groups=val.cases, region=val.prior, **kwargs)
        pred = threshold_maps(maps_t, scores_t, cam_threshold=chosen.cam_threshold,
                              slice_threshold=chosen.slice_threshold, region=region_t)
        result[f"cam_{name}"] = {"dice": mean_dice(pred, truth_t, test.cases), "val_dice": chosen.dice,
                                 "cam_threshold": chosen.cam_threshold, "slice_threshold": chosen.slice_threshold}
    # Trivial: the whole region on the slices the detector calls positive (slice threshold chosen on validation).
    ones_v, ones_t = torch.ones_like(maps_v), torch.ones_like(maps_t)
    chosen = choose_cam_thresholds(ones_v, probs_v, val.masks[:, 0], groups=val.cases, region=val.prior,
                                   cam_thresholds=(0.5,))
    pred = threshold_maps(ones_t, probs_t, cam_threshold=0.5, slice_threshold=chosen.slice_threshold, region=region_t)
    result["region_on_detected"] = {"dice": mean_dice(pred, truth_t, test.cases),
                                    "slice_threshold": chosen.slice_threshold}
    return result


def reference_masks(test: SliceTensors) -> dict:
    """Dice of masks that need no detector: the region on every slice, and the oracle patch masks per grid."""
    truth = test.masks[:, 0]
    out = {"region_all_slices": mean_dice(test.prior, truth, test.cases), "oracle": {}}
    for grid in GRIDS:
        out["oracle"][grid] = mean_dice(torch.as_tensor(oracle_patch_mask(truth, grid, 0.5)), truth, test.cases)
    out["roi_inside_region"] = float((truth & test.prior).sum() / truth.sum().clamp(min=1))
    return out


def train(data: SliceTensors, fold: dict, mode: str, args: argparse.Namespace) -> tuple:
    """Train on the fold's training slices, validating (best epoch) on its validation slices."""
    keep = fold["train"] | fold["val"]
    sub = data.select(torch.from_numpy(keep))
    ids = ["val" if v else "train" for v in fold["val"][keep]]
    settings = DetectorTrainingSettings(epochs=args.epochs, loss=MODES[mode]["loss"], seed=SEED)
    set_determinism(SEED)
    model = build_detector(in_channels=sub.images.shape[1], num_classes=1, width=args.width,
                           coord_channels=MODES[mode]["coord_channels"])
    start = time.perf_counter()
    trainer = DetectorTrainer(model, sub.images, sub.presence, sub.prior, ids, ["val"], settings)
    while trainer.epoch < settings.epochs:
        trainer.step()
    seconds = time.perf_counter() - start
    last = copy.deepcopy(model).eval()
    model.load_state_dict(trainer.best_model_state)
    model.eval()
    info = {"train_seconds": seconds, "best_epoch": trainer.best_epoch, "best_val_slice_auc": trainer.best_auc,
            "train_slices": int(fold["train"].sum()), "train_positive": int(data.presence[fold["train"]].sum()),
            "val_slice_auc_history": [h["charts/val_slice_auc"] for h in trainer.history],
            "train_loss_history": [h["losses/detector"] for h in trainer.history]}
    return model, last, info, settings


def throughput(width: int, size: int, threads: list[int], repeats: int, batch: int = 64) -> list[dict]:
    """Median seconds for G = 16 patch scoring (and Grad-CAM++ maps) of one batch of slices.

    A freshly seeded detector and seeded random slices: the network is fully convolutional, so its speed does not
    depend on the weights or the pixels. Each row keeps the 1-min load average before and after it: on a shared
    2-core machine two torch threads spin against other jobs, and 2-thread numbers fall by up to 10x at load > 2.
    """
    set_determinism(SEED)
    model = build_detector(width=width).eval()
    images = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(SEED))
    region = torch.ones(batch, size, size, dtype=torch.bool)
    out = []
    previous = torch.get_num_threads()
    for n in threads:
        torch.set_num_threads(n)
        for name, fn in [("score_patches G=16", lambda: score_patches(model, images, 16, region=region, batch_size=64)),
                         ("Grad-CAM++ maps", lambda: cam_maps(model, images, region=region, batch_size=64))]:
            fn()  # warm-up
            load_before, runs = os.getloadavg()[0], []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                runs.append(time.perf_counter() - start)
            med = statistics.median(runs)
            out.append({"name": name, "threads": n, "batch": len(images), "median_s": med,
                        "slices_per_s": len(images) / med, "ms_per_slice": 1000 * med / len(images), "runs": runs,
                        "load_average_before_after": [load_before, os.getloadavg()[0]]})
            print(f"{name} threads={n}: {len(images) / med:,.0f} slices/s", flush=True)
    torch.set_num_threads(previous)
    return out


# ---------------------------------------------------------------- report
def nanmean(values) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def mean_rows(rows: list[dict]) -> dict:
    """Means over folds of one detector's test measures."""
    m = {"slice_auc": nanmean(r["slice_auc"] for r in rows),
         "patch_auc_inside": {g: nanmean(r["patch_auc_inside"][g] for r in rows) for g in GRIDS},
         "patch_auc_all": {g: nanmean(r["patch_auc_all"][g] for r in rows) for g in GRIDS},
         "region_on_detected": nanmean(r["region_on_detected"]["dice"] for r in rows)}
    for key in ("cam_detected", "cam_told"):
        if key in rows[0]:
            m[key] = nanmean(r[key]["dice"] for r in rows)
    return m


def summarise(task_result: dict, modes: list[str]) -> dict:
    folds_ = task_result["folds"]
    means: dict = {"reference": {
        "region_all_slices": nanmean(f["reference"]["region_all_slices"] for f in folds_),
        "oracle": {g: nanmean(f["reference"]["oracle"][g] for f in folds_) for g in GRIDS}}}
    for mode in modes:
        rows = [f["modes"][mode] for f in folds_]
        means[mode] = mean_rows(rows) | {"train_seconds": nanmean(r["train_seconds"] for r in rows),
                                         "last_epoch": mean_rows([r["last_epoch"] for r in rows])}
    return means


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    meta = result["meta"]
    lines = [
        "# Presence detector benchmark (leave-one-patient-out, real data)",
        "",
        f"Commit {meta['git_commit']}{' (uncommitted changes)' if meta['git_dirty'] else ''}; torch {meta['torch']}, "
        f"{meta['cpu_count']} CPU cores, torch threads {meta['threads']} for training; 1-min load average before/after "
        f"{meta['load_average_before_after'][0]:.1f}/{meta['load_average_before_after'][1]:.1f} (other jobs share "
        f"the machine, so times are upper bounds). Total run time {meta['total_seconds'] / 60:.1f} min.",
        "",
        f"Detector: width {meta['width']}, {meta['settings']['epochs']} epochs, "
        f"batch {meta['settings']['batch_size']}, "
        f"lr {meta['settings']['learning_rate']}, augmentation on, seed {meta['seed']} (weights, batch order, "
        "augmentation); best epoch by validation slice AUC. Working size 128 x 128; Dice is 3D on that grid.",
        "",
        "Modes (detector variants): " + "; ".join(
            f"`{name}` = {cfg['loss']} loss, {'with' if cfg['coord_channels'] else 'without'} coordinate channels"
            for name, cfg in meta["modes"].items()) + ".",
        "",
        "Prostate: 4 folds, test patient i, validation patient i+1 (sorted, cyclic), training on the other two; "
        "region = body mask (Otsu rule, `medwss.data.regions`). Liver tumour: only ircadb01_01 has tumours, so its "
        "liver slices are cut into 3 contiguous slabs; fold i tests slab i, validates on slab i+1 (cyclic) and "
        "trains on the third slab plus all of ircadb01_07 (always in training), leaving out of training the "
        f"{GAP} slices next to each held-out slab; liver slices only, region = liver prior. Patch AUC: a patch is "
        "positive when >= 50 % ROI; 'inside' counts patches >= 50 % inside the region; patches are scored with the "
        "region prior. Grad-CAM++ (MONAI `GradCAMpp`, last trunk block) thresholds (map, slice probability) are "
        "chosen on the validation patient by 3D Dice; 'told' gates slices by the true slice labels instead.",
        "",
        "## Summary (mean over folds)",
        "",
        "'best' = weights of the epoch with the best validation slice AUC (the protocol); 'last' = weights after "
        "the last epoch (shown because the liver validation slabs hold only 1-2 tumour-free slices, which makes "
        "their slice AUC a coarse epoch selector).",
        "",
        "| task | mode | epoch | slice AUC | patch AUC in G4 | G8 | G16 | G32 | patch AUC all G4 | G8 | G16 | G32 |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for task, tr in result["tasks"].items():
        for mode in meta["modes"]:
            for label, m in (("best", tr["means"][mode]), ("last", tr["means"][mode]["last_epoch"])):
                lines.append(f"| {task} | {mode} | {label} | {fmt(m['slice_auc'])} | "
                             + " | ".join(fmt(m["patch_auc_inside"][g]) for g in GRIDS) + " | "
                             + " | ".join(fmt(m["patch_auc_all"][g]) for g in GRIDS) + " |")
    lines += ["", "## 3D Dice of masks (mean over folds)", "",
              "| task | mask | Dice, best epoch | Dice, last epoch |", "|---|---|---:|---:|"]
    for task, tr in result["tasks"].items():
        means = tr["means"]
        for mode in meta["modes"]:
            m, last = means[mode], means[mode]["last_epoch"]
            rows = [("cam_detected", f"Grad-CAM++ ({mode} detector, detected slices)"),
                    ("cam_told", f"Grad-CAM++ ({mode} detector, told which slices)"),
                    ("region_on_detected", f"whole region on detected slices ({mode} detector)")]
            for key, name in rows:
                if key in m:
                    lines.append(f"| {task} | {name} | {fmt(m[key])} | {fmt(last[key])} |")
        lines.append(f"| {task} | whole region on every slice | {fmt(means['reference']['region_all_slices'])} | - |")
        for g in GRIDS:
            oracle = means["reference"]["oracle"][g]
            lines.append(f"| {task} | oracle patch mask G={g} (coverage >= 0.5) | {fmt(oracle)} | - |")
    lines += ["", "## Per fold", "",
              "| task | test | validation | mode | best epoch (val AUC) | slice AUC | patch AUC in G16 | all G16 | "
              "CAM Dice (map, slice thr.) | CAM told Dice | region on detected | train s |",
              "|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for task, tr in result["tasks"].items():
        for f in tr["folds"]:
            for mode in meta["modes"]:
                r = f["modes"][mode]
                cam = r["cam_detected"]
                told = fmt(r["cam_told"]["dice"]) if "cam_told" in r else "-"
                lines.append(
                    f"| {task} | {f['test_patient']} | {f['val_patient']} | {mode} | "
                    f"{r['best_epoch']} ({fmt(r['best_val_slice_auc'], 2)}) | "
                    f"{fmt(r['slice_auc'])} | {fmt(r['patch_auc_inside'][16])} | {fmt(r['patch_auc_all'][16])} | "
                    f"{fmt(cam['dice'])} ({cam['cam_threshold']:.1f}, {cam['slice_threshold']:.1f}) | {told} | "
                    f"{fmt(r['region_on_detected']['dice'])} | {r['train_seconds']:.0f} |")
    lines += ["", "## Reference masks per fold (no detector)", "",
              "| task | test | slices (ROI) | ROI inside region | region, every slice | oracle G4 | G8 | G16 | G32 |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for task, tr in result["tasks"].items():
        for f in tr["folds"]:
            ref = f["reference"]
            lines.append(f"| {task} | {f['test_patient']} | {f['test_slices']} ({f['test_positive']}) | "
                         f"{fmt(ref['roi_inside_region'])} | {fmt(ref['region_all_slices'])} | "
                         + " | ".join(fmt(ref["oracle"][g]) for g in GRIDS) + " |")
    speed = result["throughput"]
    lines += ["", f"## Throughput (one batch of {speed[0]['batch']} slices of 128 x 128, median of "
              f"{len(speed[0]['runs'])} repeats)", "",
              "A freshly seeded detector of the same width on seeded random slices (speed does not depend on weights "
              "or pixels). Two threads spin against the other jobs on this 2-core machine: compare the load column.",
              "",
              "| measure | threads | slices/s | ms per slice | 1-min load before/after |", "|---|---:|---:|---:|---|"]
    for t in result["throughput"]:
        load = "/".join(f"{v:.1f}" for v in t["load_average_before_after"])
        lines.append(f"| {t['name']} | {t['threads']} | {t['slices_per_s']:,.0f} | {t['ms_per_slice']:.2f} | {load} |")
    return "\n".join(lines) + "\n"


def git_state() -> tuple[str, bool]:
    def git(*cmd: str) -> str:
        return subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return git("rev-parse", "HEAD") or "unknown", bool(git("status", "--porcelain", "--", "medwss", "benchmarks"))


def write(path: Path, text: str) -> None:
    """Temp file then rename, so a killed run never leaves half a result."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_tasks(args: argparse.Namespace) -> dict:
    """Train and evaluate every fold of every task; returns the result dict without throughput."""
    data_dir = args.data_dir if args.data_dir.is_absolute() else (REPO / args.data_dir).resolve()
    torch.set_num_threads(args.threads)
    load_before, started = os.getloadavg(), time.perf_counter()
    commit, dirty = git_state()
    result: dict = {"tasks": {}}
    with tempfile.TemporaryDirectory(prefix="medwss-detector-bench-") as cache:
        for task in args.tasks:
            data = load_task(task, data_dir, args.size, Path(cache))
            print(f"{task}: {len(data)} slices, {int(data.presence.sum())} with ROI", flush=True)
            task_folds = []
            for fold in folds(task, data):
                val, test = data.select(torch.from_numpy(fold["val"])), data.select(torch.from_numpy(fold["test"]))
                entry = {k: fold[k] for k in ("name", "test_patient", "val_patient", "train_patients")}
                entry |= {"test_slices": len(test), "test_positive": int(test.presence.sum()),
                          "val_slices": len(val), "val_positive": int(val.presence.sum()),
                          "reference": reference_masks(test), "modes": {}}
                for mode in args.modes:
                    model, last_model, info, settings = train(data, fold, mode, args)
                    entry["modes"][mode] = info | evaluate_fold(model, val, test, task)
                    entry["modes"][mode]["last_epoch"] = evaluate_fold(last_model, val, test, task)
                    r = entry["modes"][mode]
                    print(f"  {task} {fold['name']} {mode}: slice AUC {fmt(r['slice_auc'])}, patch AUC in G16 "
                          f"{fmt(r['patch_auc_inside'][16])}, CAM Dice {fmt(r['cam_detected']['dice'])}, "
                          f"{info['train_seconds']:.0f} s", flush=True)
                task_folds.append(entry)
            result["tasks"][task] = {"folds": task_folds}
            result["tasks"][task]["means"] = summarise(result["tasks"][task], args.modes)
    result["meta"] = {
        "git_commit": commit, "git_dirty": dirty, "data_dir": str(args.data_dir), "seed": SEED,
        "seeds": {"weights_and_training": SEED, "note": "set_determinism(seed) before building each detector; "
                  "DetectorTrainingSettings.seed drives batch order and augmentation"},
        "width": args.width, "working_size": args.size, "modes": {m: MODES[m] for m in args.modes},
        "settings": {k: v for k, v in asdict(settings).items() if k != "loss"}, "grids": list(GRIDS),
        "threads": args.threads, "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "load_average_before_after": [load_before[0], os.getloadavg()[0]],
        "total_seconds": time.perf_counter() - started, "liver_gap_slices": GAP,
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="relative to the repo root")
    parser.add_argument("--tasks", nargs="+", default=["prostate", "liver"], choices=["prostate", "liver"])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES), help="detector variants")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--size", type=int, default=128)
    # One thread by default: on a shared 2-core machine two spinning torch threads ran training 4x slower (21.7 vs
    # 5.3 min for the whole benchmark at load 3); --speed-threads still measures scoring at 2 and 1 threads.
    parser.add_argument("--threads", type=int, default=1, help="torch threads for training and evaluation")
    parser.add_argument("--speed-threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--speed-only", action="store_true", help="re-measure throughput into an existing result")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.speed_only:
        # JSON object keys are strings; grid sizes go back to ints.
        result = json.loads((args.out / "detector.json").read_text(),
                            object_hook=lambda d: {int(k) if k.isdigit() else k: v for k, v in d.items()})
    else:
        result = run_tasks(args)
    result["throughput"] = throughput(args.width, args.size, args.speed_threads, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    write(args.out / "detector.json", json.dumps(result, indent=1, default=float) + "\n")
    write(args.out / "detector.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
