"""The self-play stage of a bundle: cache detector scores per slice, train the agent, export ``models/model.pt`` and
the network and game rules ``inference.yaml`` includes (``bundle.export``).

Layered on the detector stage (``common.yaml`` + ``train_detector.yaml`` + ``train_selfplay.yaml``): it rebuilds the
detector from ``detector#network_def``, loads ``models/detector.pt``, scores every training slice once (the game
never runs the detector), and hands slices, scores and regions to ``medwss.selfplay.loop.train_selfplay``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from medwss.bundle.export import write_inference_parts
from medwss.bundle.scoring import bundle_scorer, scoring_settings
from medwss.bundle.stages import (
    bundle_splits,
    git_commit,
    rows_of,
    stage_device,
    stage_slices,
    training_regions,
    write_json_atomic,
)
from medwss.errors import MedwssError
from medwss.runtime import distributed
from medwss.runtime.config import parsed
from medwss.runtime.device import configure_threads
from medwss.runtime.progress import ProgressTask

SELFPLAY_KEYS = ("rules", "roi_quantile", "agent_planes", "position_prior", "num_threads")
"""Keys of a bundle's ``selfplay`` node that the stages read themselves, beside the settings' sections
(`medwss.selfplay.settings`): the game rules, ROI calibration, extra agent planes (scans), the photos' position prior
and torch threads. Any other key is refused, so a misspelt section cannot drop its settings silently."""


def load_detector(parser, root: Path):
    """The bundle's trained detector (``detector#network_def`` + ``models/detector.pt``), in eval mode.

    Raises:
        MedwssError: the detector stage has not run yet.
    """
    from medwss.inference.loading import load_weights

    weights = root / "models" / "detector.pt"
    if not weights.is_file():
        raise MedwssError(weights, "no trained detector: run `medwss train BUNDLE --stage detector` first")
    return load_weights(parsed(parser, "detector#network_def"), weights)


def game_rules(parser, roi_threshold: float | None = None):
    """``GameRules`` from ``selfplay#rules`` with the bundle's ``grid_size``.

    Args:
        roi_threshold: overrides the config's value; needed when it is ``auto`` (see `calibrated_roi_threshold`).
    """
    from medwss.detector.calibration import AUTO
    from medwss.game.rules import GameRules

    rules = dict(parser["selfplay"].get("rules") or {})
    if roi_threshold is not None:
        rules["roi_threshold"] = roi_threshold
    if rules.get("roi_threshold") == AUTO:
        raise MedwssError("selfplay#rules#roi_threshold", "'auto' is resolved from the training slices' scores")
    try:
        return GameRules(**{**rules, "grid_size": int(parser["grid_size"])})
    except (TypeError, ValueError) as err:
        raise MedwssError("selfplay#rules", str(err)) from None


def calibrated_roi_threshold(parser, scores: torch.Tensor, presence: torch.Tensor, region) -> tuple[float, dict]:
    """The game's ROI threshold: the config's number, or with ``auto`` the ``selfplay#roi_quantile`` of the
    training ROI-absent slices' patch scores (``medwss.detector.calibration``). Returns it and a provenance note.
    """
    from medwss.detector.calibration import AUTO, background_score_quantile

    value = (parser["selfplay"].get("rules") or {}).get("roi_threshold", 0.5)
    if value != AUTO:
        return float(value), {"roi_threshold": "fixed"}
    quantile = float(parser["selfplay"].get("roi_quantile", 0.8))
    try:
        threshold = background_score_quantile(scores, presence, quantile, region)
    except ValueError as err:
        raise MedwssError("selfplay#rules#roi_threshold", str(err)) from None
    absent = int((presence.reshape(-1) == 0).sum())
    return threshold, {"roi_threshold": AUTO, "roi_quantile": quantile, "absent_slices": absent}


def slice_inputs(detector, images: torch.Tensor, region_pixels: torch.Tensor | None, grid: int):
    """Detector patch scores (N, G, G) and legal patches (N, G, G) for slices; the region limits both."""
    from medwss.detector.scoring import PatchScorer

    scored = PatchScorer(detector, grid).score(images, region_pixels)
    return scored.scores, scored.region


def train_selfplay_stage(
    root: Path, parser, stage_dir: Path, *, restart: bool, task: ProgressTask, command: str = ""
) -> dict[str, Any]:
    """Train the RLSP agent by prioritised fictitious self-play; export ``models/model.pt``, the provenance note
    ``models/policy.json`` and the config nodes inference includes (``models/inference_parts.json``).

    A multi-class bundle (``runtime.config.is_multiclass_bundle``) plays one game per (training image, labelled
    class) instead of one per slice (``class_game_data``); everything else is the same stage."""
    from medwss.runtime.config import is_multiclass_bundle
    from medwss.selfplay.loop import train_selfplay
    from medwss.selfplay.settings import SelfPlaySettings

    started = time.perf_counter()
    # Many tiny tensor ops per game step: one thread avoids oversubscription (measured 2-10x faster on 2 cores).
    device = stage_device(parser)
    configure_threads(device, int(parser["selfplay"].get("num_threads", 1)))
    seed = int(parser["seed"])
    settings = SelfPlaySettings.from_config(parser["selfplay"], seed=seed, node_keys=SELFPLAY_KEYS)
    if settings.policy.score_prior > 0 and tuple(parser["selfplay"].get("agent_planes") or ())[-1:] != ("scores",):
        raise MedwssError("selfplay#policy#score_prior", 'reads the game scores: agent_planes must end with "scores"')
    task.describe("self-play: scoring slices")
    detector = load_detector(parser, root).to(device)
    with distributed.main_first():  # rank 0 fills the mask cache, the others then read it
        slices = stage_slices(parser, with_masks=True, cache_dir=stage_dir.parent / "mask_cache")

    # Validation = the detector's validation patients; masks only measure (val/dice), never steer training.
    splits = bundle_splits(parser, slices.patients)
    is_train, is_val = rows_of(slices, splits["train"]), rows_of(slices, splits["val"])
    if not bool(is_val.any()):  # no patient to hold out: watch the training slices instead
        is_val = is_train.clone()
    make = class_game_data if is_multiclass_bundle(root) else slice_game_data
    play, rules, encoder, details = make(parser, root, detector, slices, is_train, is_val, settings)
    policy = train_selfplay(
        play, rules, settings, stage_dir, restart=restart, task=task, encoder=encoder, device=device
    )
    if not distributed.world().is_main:  # rank 0 exports; the others wait so that `train` ends when it is written
        distributed.barrier()
        return {"stage": "selfplay", "rank": distributed.world().rank}

    from medwss.runtime.checkpoint import save_checkpoint
    from medwss.runtime.metric_log import MetricLog

    save_checkpoint({k: v.cpu() for k, v in policy.state_dict().items()}, root / "models" / "model.pt")
    records = MetricLog(stage_dir / "metrics.jsonl").records()
    last_dice = next((r["val/dice"] for r in reversed(records) if r.get("val/dice") is not None), None)
    planes = tuple(details.pop("agent_planes", ()))
    note = {
        "stage": "selfplay",
        "command": command,
        "seed": seed,
        "medwss_commit": git_commit(),
        "policy": policy.config,
        "agent_planes": list(planes),
        "rules": asdict(rules),
        **details,
        "settings": settings.to_config(),
        "world_size": distributed.world().size,
        "device": str(device),
        "data": {
            "classes": slices.classes,
            "train_slices": int(is_train.sum()),
            "val_slices": int(is_val.sum()),
            "val_patients": splits["val"],
            "train_games": len(play.scores),
            "val_games": len(play.val_scores),
        },
        "metrics": {
            "val_dice_last": last_dice,
            "iterations": settings.num_iterations,
            "seconds_this_run": round(time.perf_counter() - started, 1),
        },
    }
    write_json_atomic(note, root / "models" / "policy.json")
    write_inference_parts(root / "models", policy.config, rules, planes)
    distributed.barrier()
    return note


def slice_game_data(parser, root: Path, detector, slices, is_train, is_val, settings):
    """One game per slice on the bundle scorer's patch scores (the binary bundles).

    Returns:
        ``SelfPlayData``, the ``GameRules`` (ROI threshold calibrated on the training slices), the detector encoder
        and the note's details (scoring, ROI calibration, agent planes).
    """
    from medwss.detector.features import DetectorEncoder, agent_features
    from medwss.selfplay.loop import SelfPlayData

    scorer = bundle_scorer(parser, root, detector)
    regions = training_regions(slices, str(parsed(parser, "data").get("region", "none")))
    scored = scorer.score(slices.images, regions)
    scores, region = scored.scores, scored.region
    encoder = DetectorEncoder(detector, int(parser["grid_size"]))
    planes = tuple(parser["selfplay"].get("agent_planes") or ())
    features = None
    if settings.policy.observation == "features":
        try:
            features = agent_features(encoder, slices.images, scored, planes, scorer.prior)
        except ValueError as err:
            raise MedwssError("selfplay#agent_planes", str(err)) from None
    elif planes:
        raise MedwssError("selfplay#agent_planes", "extra planes need observation: features")

    def part(x, keep):
        return None if x is None else x[keep]

    # The ROI threshold is calibrated on the training slices only, as everything else the agent learns from.
    threshold, calibration = calibrated_roi_threshold(
        parser, scores[is_train], slices.presence[is_train, 0], part(region, is_train)
    )
    play = SelfPlayData(
        images=slices.images[is_train],
        scores=scores[is_train],
        region=part(region, is_train),
        val_images=slices.images[is_val],
        val_scores=scores[is_val],
        val_region=part(region, is_val),
        val_masks=slices.masks[is_val, 0],
        features=part(features, is_train),
        val_features=part(features, is_val),
    )
    details = {"agent_planes": list(planes), "scoring": scoring_settings(parser), "roi_calibration": calibration}
    return play, game_rules(parser, roi_threshold=threshold), encoder, details


def class_game_data(parser, root: Path, detector, slices, is_train, is_val, settings):
    """The multi-class step of the stage: one game per (image, labelled class) on that class's patch scores, with
    the class cue plane in the observation (``medwss.inference.multiclass``); same return as ``slice_game_data``.

    Raises:
        MedwssError: a pixels policy (it has no plane for the class cue), an unknown ``selfplay#position_prior``.
    """
    from medwss.detector.features import DetectorEncoder
    from medwss.inference.multiclass import class_games, class_scores, named_prior
    from medwss.selfplay.loop import SelfPlayData

    if settings.policy.observation != "features":
        raise MedwssError("selfplay#policy#observation", "multi-class bundles need 'features' (the class cue)")
    rules = game_rules(parser)
    _, patch_probs = class_scores(detector, slices.images, rules.grid_size)
    prior_name = str(parser["selfplay"].get("position_prior", "none"))
    try:
        prior = named_prior(prior_name, rules.grid_size)
    except ValueError as err:
        raise MedwssError("selfplay#position_prior", str(err)) from None
    if prior is not None:  # the game scores the inferer plays on (SelfPlayInferer position_prior)
        patch_probs = patch_probs * prior
    trunk = DetectorEncoder(detector, rules.grid_size)(slices.images)
    labelled = slices.presence == 1
    train = class_games(labelled & is_train[:, None], patch_probs, trunk)
    val = class_games(labelled & is_val[:, None], patch_probs, trunk)
    play = SelfPlayData(
        images=slices.images[train.image_index], scores=train.scores, region=None,
        val_images=slices.images[val.image_index], val_scores=val.scores, val_region=None,
        val_masks=slices.masks[val.image_index, val.class_index],
        features=train.features, val_features=val.features,
    )  # fmt: skip
    return play, rules, None, {"position_prior": prior_name}
