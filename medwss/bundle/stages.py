"""Training stages of a bundle, each resumable: ``detector`` then ``selfplay`` (nnU-Net's split: plan, train, infer).

A stage reads ``configs/common.yaml`` + ``configs/train_<stage>.yaml``, trains in ``<run_dir>/<stage>/`` with
``checkpoint_latest.pt`` / ``checkpoint_final.pt``, ``metrics.jsonl`` and ``progress.png``, and exports what
inference needs into the bundle's ``models/`` with a JSON note of the command, seed, data and metrics that made it.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from monai.utils import set_determinism

from medwss.bundle.scoring import export_position_prior, scoring_settings
from medwss.errors import MedwssError
from medwss.runtime import distributed
from medwss.runtime.atomic import atomic_output
from medwss.runtime.config import bundle_dir_of, load_config, parsed, stage_config_file, stages_of
from medwss.runtime.device import configure_threads, resolve_device
from medwss.runtime.interrupt import TrainingInterrupted, stopped_message
from medwss.runtime.progress import ProgressTask

logger = logging.getLogger(__name__)


def run_dir_for(bundle: Path, parser, run_dir: str | Path | None, stage: str) -> Path:
    """``<run_dir>/<stage>``; the default run dir is ``runs/<bundle name>`` under the current folder."""
    base = Path(run_dir) if run_dir else Path(str(parser.get("run_dir") or Path("runs") / bundle.name))
    return base / stage


def write_json_atomic(data: dict[str, Any], out: Path) -> Path:
    """A JSON file through a temporary file and a rename."""
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return out


def stage_device(parser) -> torch.device:
    """The device a stage trains on: the config's ``device`` (``medwss train --device`` sets it), default auto."""
    return resolve_device(str(parsed(parser, "device", "auto")))


def git_commit() -> str:
    """The medwss commit that trained a model (for the provenance note), or 'unknown'."""
    try:
        root = Path(__file__).resolve().parents[2]
        done = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        )
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def train_stage(
    bundle: str | Path,
    stage: str,
    *,
    overrides: dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    restart: bool = False,
    task: ProgressTask | None = None,
    command: str = "",
) -> dict[str, Any]:
    """Run one training stage of a bundle; returns the exported model note.

    Raises:
        MedwssError: bad bundle, config or data.
    """
    root = bundle_dir_of(bundle)
    # Every stage config is read (each under its own top-level key): self-play rebuilds the detector from
    # train_detector.yaml, and one set of --set overrides serves all stages of `medwss train`.
    names = [s for s in stages_of(root) if s != stage] + [stage]
    parser = load_config(root, [stage_config_file(root, s) for s in names], overrides)
    stage_dir = run_dir_for(root, parser, run_dir, stage)
    task = task or ProgressTask()
    from medwss.bundle.refine_stage import train_refine_stage
    from medwss.bundle.selfplay_stage import train_selfplay_stage

    # ``refine`` is optional: it runs only when named (``--stage refine``), after ``selfplay``.
    runners = {"detector": train_detector_stage, "selfplay": train_selfplay_stage, "refine": train_refine_stage}
    if stage not in runners:
        raise MedwssError(root / "configs", f"unknown stage {stage!r} (known: {', '.join(runners)})")
    if restart:
        from medwss.runtime.checkpoint import clear_checkpoints

        # Up front, for every ensemble member: an interrupted restart must not leave the old run's checkpoints to
        # be resumed by the next plain run.
        removed = clear_checkpoints(stage_dir)
        if removed:
            logger.info("--restart: removed %d old checkpoint(s) under %s", len(removed), stage_dir)
    try:
        return runners[stage](root, parser, stage_dir, restart=restart, task=task, command=command)
    except KeyboardInterrupt as interrupt:
        if isinstance(interrupt, TrainingInterrupted):
            raise
        raise TrainingInterrupted(stopped_message(stage, stage_dir, task)) from None


def stage_slices(parser, *, with_masks: bool = False, cache_dir: Path | None = None):
    """The bundle's training set as ``SliceTensors`` (weak labels; masks only when ``with_masks``): every labelled
    slice of the scans of ``data#sources`` / ``data#manifest``, or every photo of ``data#datalist`` (a one-slice
    case each). The one seam every kind of data goes through: the stages never ask which kind it was."""
    from medwss.bundle.data import build_slices, class_mask_files, photo_slices, weak_labels

    data = parsed(parser, "data")
    if data.get("datalist") is not None:
        return photo_slices(data, with_masks)
    manifest, sources = weak_labels(data)
    mask_files = None
    if with_masks:
        if not sources:
            raise MedwssError("data#sources", "evaluation needs data sources with masks, not only a manifest")
        mask_files = class_mask_files(sources, cache_dir or Path("runs") / "mask_cache")
    return build_slices(
        manifest,
        str(data.get("preset", "mr")),
        int(data.get("working_size", 128)),
        int(data.get("context", 0)),
        mask_files=mask_files,
        crop_margin=None if data.get("crop_margin") is None else int(data["crop_margin"]),
    )


def bundle_splits(parser, patients: list[str]) -> dict[str, list[str]]:
    """The stages' seeded patient split: ``holdout`` (``data#holdout_fraction``, never trained on: a benchmark's
    test patients), then ``val`` (``detector#val_fraction``: the detector's best epoch, self-play's validation Dice)
    out of the rest, the rest ``train``. Both stages call it, so they agree.

    A bundle that declares a hold-out (the photo bundles, even at 0) draws validation with the next seed, so the two
    draws are independent; one that does not keeps the seed (the scan bundles, as they were trained).
    """
    from medwss.data.splits import patient_split

    seed = int(parser["seed"])
    holdout_fraction = parser["data"].get("holdout_fraction")
    rest, holdout = sorted(set(patients)), []
    if holdout_fraction is not None and float(holdout_fraction) > 0:
        rest, holdout = patient_split(rest, float(holdout_fraction), seed)
    val_fraction = float(parser["detector"].get("val_fraction", 0.0))
    val_seed = seed if holdout_fraction is None else seed + 1
    train, val = patient_split(rest, val_fraction, val_seed) if val_fraction > 0 else (rest, [])
    return {"train": sorted(train), "val": sorted(val), "holdout": sorted(holdout)}


def rows_of(slices, patients: list[str]) -> torch.Tensor:
    """(N,) bool: the slices of these patients."""
    wanted = set(patients)
    return torch.tensor([p in wanted for p in slices.patients], dtype=torch.bool)


def training_regions(slices, region_rule: str) -> torch.Tensor | None:
    """Where the ROI may be: the organ prior (``prior``), the body (``body``), or anywhere (``none``)."""
    if region_rule == "prior":
        if slices.prior is None:
            raise MedwssError("data#region", "region 'prior' needs an organ prior in the data (dataset spec 'prior')")
        return slices.prior
    if region_rule == "body":
        from medwss.data.regions import body_mask

        centre = slices.images[:, slices.images.shape[1] // 2]  # the slice itself, not its context neighbours
        region = torch.zeros(centre.shape, dtype=torch.bool)
        for case in sorted(set(slices.cases)):  # Otsu's threshold is per scan
            rows = torch.tensor([c == case for c in slices.cases])
            region[rows] = torch.as_tensor(body_mask(centre[rows].numpy()))
        return region
    if region_rule == "none":
        return None
    raise MedwssError("data#region", f"unknown region {region_rule!r} (prior, body or none)")


def stage_detector(parser, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, dict[str, Any] | None]:
    """The detector a detector stage trains: ``detector#network_def``, its trunk from ``detector#pretrained``.

    ``detector#pretrained`` (optional) is a local state-dict file (a relative path is read from the current folder,
    like ``dataset_dir``; ``$@bundle_root + '/models/x.pt'`` names one in the bundle). Loaded with
    ``weights_only=True``: nothing is downloaded and nothing but tensors is unpickled.

    Returns:
        The model on ``device`` and a provenance note (file, sha256, tensors loaded), or None without a trunk.
    """
    import hashlib

    from medwss.detector.network import load_pretrained_trunk
    from medwss.runtime.checkpoint import load_checkpoint

    model = parsed(parser, "detector#network_def")
    source = parser["detector"].get("pretrained")
    if not source:
        return model.to(device), None
    path = Path(str(source)).expanduser()
    if not path.is_file():
        raise MedwssError(path, "detector#pretrained: no such file")
    state = load_checkpoint(path)
    try:
        loaded = load_pretrained_trunk(model, state)
    except ValueError as err:
        raise MedwssError(path, f"detector#pretrained: {err}") from None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return model.to(device), {"file": str(path.resolve()), "sha256": digest, "tensors": loaded}


def fit_detector(
    trainer,
    epochs: int,
    parser,
    stage_dir: Path,
    *,
    restart: bool,
    task: ProgressTask,
    plot_title: str | None = None,
    label: str = "detector",
    pretrained: dict[str, Any] | None = None,
) -> None:
    """Run a ``DetectorTrainer`` to ``epochs``, resuming from the stage's last checkpoint (volume and photo bundles).

    Writes ``metrics.jsonl``, ``checkpoint_latest.pt`` every ``detector#checkpoint_every`` epochs and
    ``checkpoint_final.pt`` at the end (plus ``progress.png`` when ``plot_title`` is given). ``pretrained`` (the
    note of ``stage_detector``) joins the checkpoint's provenance, so a run never resumes from another trunk.
    """
    from dataclasses import asdict

    from medwss.runtime.checkpoint import (
        FINAL,
        LATEST,
        check_provenance,
        load_checkpoint,
        provenance,
        resume_point,
        save_checkpoint,
    )
    from medwss.runtime.metric_log import MetricLog

    # Under torchrun every rank resumes from the same checkpoint (rank 0's, on a shared folder) and holds the same
    # model after every epoch; only rank 0 writes the log, the checkpoints and the plot.
    main = distributed.world().is_main
    log = MetricLog(stage_dir / "metrics.jsonl")
    settings = asdict(trainer.settings) | ({"pretrained_sha256": pretrained["sha256"]} if pretrained else {})
    made_from = provenance(trainer.data_fingerprint(), settings, trainer.settings.seed)
    checkpoint = resume_point(stage_dir, restart)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        check_provenance(checkpoint, state, made_from, resumable=("epochs",))
        try:
            trainer.load_state_dict(state["trainer"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            raise MedwssError(checkpoint, f"checkpoint does not fit this detector ({type(err).__name__}); "
                                          "pass --restart to start over") from None  # fmt: skip
        if main:
            log.truncate(trainer.epoch)
        logger.info("resumed the detector stage from %s at epoch %d", checkpoint, trainer.epoch)
    elif main:
        log.reset()
    distributed.barrier()  # no rank reads a checkpoint that rank 0 is about to replace
    every = int(parser["detector"].get("checkpoint_every", 1))
    task.describe(f"{label}: epoch")  # shown as "detector 2 of 3: epoch 7 of 15"
    task.set_total(epochs)
    task.skip(trainer.epoch)
    while trainer.epoch < epochs:
        metrics = trainer.step()
        task.status(epoch_status(metrics))
        task.advance(1)
        if not main:
            continue
        log.log(trainer.epoch, **metrics)
        if trainer.epoch % every == 0 or trainer.epoch == epochs:
            name = FINAL if trainer.epoch == epochs else LATEST
            state = {"trainer": trainer.state_dict(), "stage": "detector", "provenance": made_from}
            save_checkpoint(state, stage_dir / name)
            if plot_title is not None:
                from medwss.viz.curves import plot_progress

                plot_progress(log.records(), stage_dir / "progress.png", title=plot_title)


def epoch_status(metrics: dict[str, Any]) -> str:
    """The scores a person watches during training: ``loss 0.412, val AUC 0.871`` (``n/a``: no validation
    patient, or one class only among its slices)."""
    parts = []
    for key, name in (("losses/detector", "loss"), ("charts/val_slice_auc", "val AUC")):
        value = metrics.get(key)
        if value is not None:
            parts.append(f"{name} {float(value):.3f}" if math.isfinite(float(value)) else f"{name} n/a")
    return ", ".join(parts)


def train_detector_stage(
    root: Path, parser, stage_dir: Path, *, restart: bool, task: ProgressTask, command: str = ""
) -> dict[str, Any]:
    """The detector stage: fit the presence detector on slice (or photo) labels; export ``models/detector.pt``."""
    from medwss.detector.network import detector_members
    from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings
    from medwss.runtime.checkpoint import save_checkpoint

    # ---------------------------------------------------------------- setup (plumbing)
    scoring_settings(parser)  # a bad ``scoring`` fails now, not when the prior is exported after training
    seed = int(parser["seed"])
    set_determinism(seed)
    started = time.perf_counter()
    task.describe("detector: reading data")
    slices = stage_slices(parser)
    data = parsed(parser, "data")
    # Without validation patients (too few to hold one out: one tumour patient) the last epoch is kept.
    splits = bundle_splits(parser, slices.patients)
    train_patients, val_patients = splits["train"], splits["val"]
    slices = slices.select(~rows_of(slices, splits["holdout"]))  # held-out patients are never trained on
    regions = training_regions(slices, str(data.get("region", "none")))
    settings = DetectorTrainingSettings(**{**parser["detector"]["training"], "seed": seed})
    device = stage_device(parser)
    configure_threads(device, parser["detector"].get("num_threads"))
    model, pretrained_note = stage_detector(parser, device)
    members = detector_members(model)
    for k, member in enumerate(members):
        # An ensemble trains its members one after the other, each from its own seed and in its own run folder,
        # so an interrupted stage resumes inside the member it was training.
        member_settings = replace(settings, seed=seed + k)
        trainer = DetectorTrainer(
            member, slices.images, slices.presence, regions, slices.patients, val_patients, member_settings
        )
        member_dir = stage_dir if len(members) == 1 else stage_dir / f"member{k}"
        title = f"{root.name}: detector" + ("" if len(members) == 1 else f" {k + 1} of {len(members)}")
        label = "detector" + ("" if len(members) == 1 else f" {k + 1} of {len(members)}")
        fit_detector(
            trainer, settings.epochs, parser, member_dir, restart=restart, task=task, plot_title=title, label=label,
            pretrained=pretrained_note,
        )
        member.load_state_dict(trainer.best_model_state)

    # ---------------------------------------------------------------- export (plumbing, rank 0 only)
    if not distributed.world().is_main:
        distributed.barrier()  # the exports exist once this returns, for the self-play stage of every rank
        return {"stage": "detector", "rank": distributed.world().rank}
    out = root / "models" / "detector.pt"
    save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, out)
    # The position prior is learned from the training patients' slice labels, never the validation ones.
    task.describe("detector: learning the position prior")
    train_rows = torch.tensor([p in set(train_patients) for p in slices.patients])
    prior_note = export_position_prior(
        parser, root, model.eval(), slices.images[train_rows], slices.presence[train_rows],
        None if regions is None else regions[train_rows],
    )  # fmt: skip
    best = trainer.best_auc if math.isfinite(trainer.best_auc) else None
    note = {
        "stage": "detector",
        "command": command,
        "seed": seed,
        "medwss_commit": git_commit(),
        "data": {
            "classes": slices.classes,
            "cases": sorted(set(slices.cases)),
            "train_patients": train_patients,
            "val_patients": val_patients,
            "holdout_patients": splits["holdout"],
            "slices": len(slices),
            "present_absent": slices.counts(),
        },
        "settings": asdict(settings),
        "members": len(members),
        "pretrained": pretrained_note,
        "world_size": distributed.world().size,
        "device": str(device),
        "scoring": scoring_settings(parser),
        "position_prior": prior_note,
        "metrics": {
            "best_epoch": trainer.best_epoch,
            "val_slice_auc": best,
            "seconds_this_run": round(time.perf_counter() - started, 1),
        },
    }
    write_json_atomic(note, root / "models" / "detector.json")
    distributed.barrier()
    return note
