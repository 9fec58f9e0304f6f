"""Training stages of a photo bundle (``bundles/coco``, ``bundles/voc``): multi-label detector, then self-play.

Same stages, checkpoints and exported notes as the scan bundles (``medwss.bundle.stages``), over photos instead of
slices: the detector learns K presence classes from image-level labels (BCE per class, ``DetectorTrainer``); the
self-play stage plays one game per (training image, labelled class) on that class's cached patch scores, with
the class cue of ``medwss.inference.photo`` in the observation. Images are split once, seeded, into train /
validation (best epoch, validation Dice) / held-out (never trained on: the benchmark's test images).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from monai.utils import set_determinism

from medwss.bundle.export import write_inference_parts
from medwss.bundle.stages import git_commit, write_json_atomic
from medwss.errors import MedwssError
from medwss.runtime.config import parsed
from medwss.runtime.progress import ProgressTask

logger = logging.getLogger(__name__)

PHOTO_DATA_TYPES = ("jpeg", "jpg", "png", "image")
"""``metadata.json`` ``data_type`` values that mark a photo bundle."""


def is_photo_bundle(bundle: str | Path) -> bool:
    """Whether a bundle segments photos (its ``metadata.json`` ``data_type`` is an image format, not ``nifti``)."""
    meta = Path(bundle) / "configs" / "metadata.json"
    if not meta.is_file():
        return False
    try:
        return str(json.loads(meta.read_text()).get("data_type", "")).lower() in PHOTO_DATA_TYPES
    except json.JSONDecodeError:
        return False


def photo_splits(ids: list[str], holdout_fraction: float, val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Seeded image-level split: ``holdout`` first (test images), then ``val`` out of the rest, the rest ``train``."""
    from medwss.data.splits import patient_split

    rest, holdout = patient_split(ids, holdout_fraction, seed) if holdout_fraction > 0 else (sorted(ids), [])
    train, val = patient_split(rest, val_fraction, seed + 1) if val_fraction > 0 else (rest, [])
    return {"train": train, "val": val, "holdout": holdout}


def stage_photos(parser, with_mask: bool = False):
    """The bundle's photos in memory with the split: (``PhotoSet``, splits, class names)."""
    from medwss.data.natural.classes import class_names
    from medwss.data.natural.dataset import load_photo_set

    data = parsed(parser, "data")
    names = class_names(str(data.get("class_set", "coco")))
    photos = load_photo_set(
        parsed(parser, "data#datalist"), len(names), int(data.get("working_size", 128)), with_mask,
        str(data.get("class_set", "coco")),
    )  # fmt: skip
    seed = int(parser["seed"])
    splits = photo_splits(photos.ids, float(data.get("holdout_fraction", 0.0)), float(data["val_fraction"]), seed)
    return photos, splits, names


def _rows(photos, ids: list[str]) -> torch.Tensor:
    wanted = set(ids)
    return torch.tensor([i in wanted for i in photos.ids], dtype=torch.bool)


def train_photo_detector(
    root: Path, parser, stage_dir: Path, *, restart: bool, task: ProgressTask, command: str = ""
) -> dict[str, Any]:
    """Fit the multi-label presence detector on image-level labels; export ``models/detector.pt``."""
    from medwss.bundle.stages import fit_detector, stage_detector
    from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings
    from medwss.runtime.checkpoint import save_checkpoint

    # ---------------------------------------------------------------- setup (plumbing)
    torch.set_num_threads(int(parser["detector"].get("num_threads", torch.get_num_threads())))
    seed = int(parser["seed"])
    set_determinism(seed)
    started = time.perf_counter()
    task.describe("detector: reading photos")
    photos, splits, names = stage_photos(parser)
    used = ~_rows(photos, splits["holdout"])
    ids = [i for i, keep in zip(photos.ids, used.tolist(), strict=True) if keep]
    settings = DetectorTrainingSettings(**{**parser["detector"]["training"], "seed": seed})
    model, pretrained_note = stage_detector(parser)
    trainer = DetectorTrainer(model, photos.images[used], photos.presence[used], None, ids, splits["val"], settings)
    fit_detector(trainer, settings.epochs, parser, stage_dir, restart=restart, task=task, pretrained=pretrained_note)

    # ---------------------------------------------------------------- export (plumbing)
    model.load_state_dict(trainer.best_model_state)
    save_checkpoint(model.state_dict(), root / "models" / "detector.pt")
    counts = photos.presence[_rows(photos, splits["train"])].sum(0)
    note = {
        "stage": "detector",
        "command": command,
        "seed": seed,
        "medwss_commit": git_commit(),
        "data": {"classes": list(names), **{k: len(v) for k, v in splits.items()}, "holdout_ids": splits["holdout"],
                 "train_images_per_class": {n: int(c) for n, c in zip(names, counts.tolist(), strict=True) if c}},
        "settings": asdict(settings),
        "pretrained": pretrained_note,
        "metrics": {
            "best_epoch": trainer.best_epoch,
            "val_image_auc": trainer.best_auc if math.isfinite(trainer.best_auc) else None,
            "seconds_this_run": round(time.perf_counter() - started, 1),
        },
    }  # fmt: skip
    write_json_atomic(note, root / "models" / "detector.json")
    return note


def load_photo_detector(parser, root: Path):
    """The bundle's trained detector in eval mode.

    Raises:
        MedwssError: the detector stage has not run.
    """
    weights = root / "models" / "detector.pt"
    if not weights.is_file():
        raise MedwssError(weights, "no trained detector: run `medwss train BUNDLE --stage detector` first")
    model = parsed(parser, "detector#network_def")
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model.eval()


def class_masks(masks: list, games, size: int) -> torch.Tensor:
    """(P, S, S) bool reference mask of each game's class, from the photos' label maps resized to S."""
    from medwss.data.natural.dataset import resize_labels

    small = torch.stack([torch.from_numpy(resize_labels(m, (size, size)).astype("int64")) for m in masks])
    return small[games.image_index] == (games.class_index + 1)[:, None, None]


def train_photo_selfplay(
    root: Path, parser, stage_dir: Path, *, restart: bool, task: ProgressTask, command: str = ""
) -> dict[str, Any]:
    """Train the RLSP agent on (image, labelled class) games; export ``models/model.pt``, ``models/policy.json`` and
    ``models/inference_parts.json`` (``bundle.export``)."""
    from medwss.bundle.selfplay_stage import SELFPLAY_KEYS, game_rules
    from medwss.detector.features import DetectorEncoder
    from medwss.inference.photo import class_games, class_scores, named_prior
    from medwss.runtime.checkpoint import save_checkpoint
    from medwss.runtime.metric_log import MetricLog
    from medwss.selfplay.loop import SelfPlayData, train_selfplay
    from medwss.selfplay.settings import SelfPlaySettings

    started = time.perf_counter()
    torch.set_num_threads(int(parser["selfplay"].get("num_threads", 1)))
    seed = int(parser["seed"])
    rules = game_rules(parser)
    settings = SelfPlaySettings.from_config(parser["selfplay"], seed=seed, node_keys=SELFPLAY_KEYS)
    if settings.policy.observation != "features":
        raise MedwssError("selfplay#policy#observation", "photo bundles need 'features' (it carries the class cue)")
    task.describe("self-play: scoring photos")
    detector = load_photo_detector(parser, root)
    photos, splits, _ = stage_photos(parser, with_mask=True)
    _, patch_probs = class_scores(detector, photos.images, rules.grid_size)
    prior_name = str(parser["selfplay"].get("position_prior", "none"))
    try:
        prior = named_prior(prior_name, rules.grid_size)
    except ValueError as err:
        raise MedwssError("selfplay#position_prior", str(err)) from None
    if prior is not None:  # the game scores the inferer plays on (PhotoInferer position_prior)
        patch_probs = patch_probs * prior
    trunk = DetectorEncoder(detector, rules.grid_size)(photos.images)
    parts = {}
    for name in ("train", "val"):
        present = photos.presence.bool() & _rows(photos, splits[name] or splits["train"])[:, None]
        parts[name] = class_games(present, patch_probs, trunk)
    train, val = parts["train"], parts["val"]
    play = SelfPlayData(
        images=photos.images[train.image_index], scores=train.scores, region=None,
        val_images=photos.images[val.image_index], val_scores=val.scores, val_region=None,
        val_masks=class_masks(photos.masks, val, photos.images.shape[-1]),
        features=train.features, val_features=val.features,
    )  # fmt: skip
    policy = train_selfplay(play, rules, settings, stage_dir, restart=restart, task=task)
    save_checkpoint(policy.state_dict(), root / "models" / "model.pt")
    records = MetricLog(stage_dir / "metrics.jsonl").records()
    last_dice = next((r["val/dice"] for r in reversed(records) if r.get("val/dice") is not None), None)
    note = {
        "stage": "selfplay",
        "command": command,
        "seed": seed,
        "medwss_commit": git_commit(),
        "policy": policy.config,
        "rules": asdict(rules),
        "position_prior": prior_name,
        "settings": settings.to_config(),
        "data": {"train_games": len(train.scores), "val_games": len(val.scores)},
        "metrics": {
            "val_dice_last": last_dice,
            "iterations": settings.num_iterations,
            "seconds_this_run": round(time.perf_counter() - started, 1),
        },
    }
    write_json_atomic(note, root / "models" / "policy.json")
    write_inference_parts(root / "models", policy.config, rules)
    return note
