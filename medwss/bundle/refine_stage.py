"""The optional ``refine`` stage of a scan bundle: a MONAI UNet trained on the agent's own masks of the training
slices, exported as ``models/refiner.pt`` + ``models/refiner.json`` (issue 15 item 5).

Why: the agent's masks are unions of grid patches; a segmenter trained on many of them learns the organ's
appearance and draws pixel borders. On the prostate cross-validation (benchmarks/results/refinement.md) it beat the
agent on the test patients of 5 of 6 folds (two runs), all but the one fold whose agent was already good. It runs
after ``selfplay`` and only when asked (``medwss train BUNDLE --stage refine``: it is not in ``common.yaml``'s
``stages``), and inference uses it only when ``inference.yaml`` sets ``refiner``. No reference mask is read: the
targets are what ``medwss segment`` would output.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from monai.utils import set_determinism

from medwss.bundle.stages import git_commit, stage_slices, training_regions, write_json_atomic
from medwss.runtime import distributed
from medwss.runtime.config import parsed
from medwss.runtime.progress import ProgressTask


def agent_masks(
    root: Path, parser, slices: torch.Tensor, regions: torch.Tensor | None, patients: Sequence[str] | None = None
) -> torch.Tensor:
    """(N, H, W) bool masks of the bundle's trained agent on ``slices``, exactly as ``medwss segment`` plays.

    ``patients`` names each slice's patient (slices of a patient in order): ``medwss segment`` sees one scan at a
    time, so a volume stop must agree its counts per patient, never across two patients' slices.

    Why through inference.yaml: the refiner must learn the masks a user gets (same scorer, stopping rule, region),
    not a re-implementation of them. The grid, detector context and region are the training config's (``parser``),
    so a bundle trained with ``--set`` overrides is replayed as it was trained.
    """
    from medwss.inference.inferer import METHODS
    from medwss.inference.loading import load_inference

    data = parsed(parser, "data")
    same = {"grid_size": int(parser["grid_size"]), "context": int(data.get("context", 0)),
            "region": str(data.get("region", "none")), "refiner": None}  # fmt: skip
    _, inference, network = load_inference(root, "rlsp", METHODS, same)
    inferer = parsed(inference, "inferer")
    return inferer.method_masks(slices, regions, network, groups=patients)


def train_refine_stage(
    root: Path, parser, stage_dir: Path, *, restart: bool, task: ProgressTask, command: str = ""
) -> dict[str, Any]:
    """Train the refiner on the agent's masks of every training slice; export it with its architecture note.

    ``restart`` is accepted for the stage interface; the refiner trains in minutes and always starts afresh.
    """
    from medwss.refinement.training import RefinementSettings, train_refiner
    from medwss.runtime.checkpoint import save_checkpoint
    from medwss.runtime.metric_log import MetricLog

    started = time.perf_counter()
    seed = int(parser["seed"])
    set_determinism(seed)
    settings = RefinementSettings(**{**(parser["refine"].get("training") or {}), "seed": seed})
    task.describe("refine: the agent segments the training slices")
    slices = stage_slices(parser)
    regions = training_regions(slices, str(parsed(parser, "data").get("region", "none")))
    targets = agent_masks(root, parser, slices.images, regions, slices.patients)
    log = MetricLog(stage_dir / "metrics.jsonl")
    log.reset()
    task.describe("refine: epoch")
    task.set_total(settings.epochs)

    def progress(epoch: int, loss: float) -> None:
        log.log(epoch, **{"losses/refiner": loss})
        task.status(f"loss {loss:.3f}")
        task.advance(1)

    model = train_refiner(slices.images, targets, settings, progress=progress)
    if not distributed.world().is_main:
        distributed.barrier()
        return {"stage": "refine", "rank": distributed.world().rank}
    save_checkpoint({k: v.cpu() for k, v in model.state_dict().items()}, root / "models" / "refiner.pt")
    note = {
        "stage": "refine",
        "command": command,
        "seed": seed,
        "medwss_commit": git_commit(),
        "network": {"in_channels": int(slices.images.shape[1]), "channels": list(settings.channels),
                    "num_res_units": settings.num_res_units},
        "settings": asdict(settings),
        "data": {"classes": slices.classes, "slices": len(slices),
                 "agent_pixels_per_slice": float(targets.flatten(1).sum(1).float().mean())},
        "metrics": {"final_loss": log.records()[-1]["losses/refiner"] if settings.epochs else None,
                    "seconds_this_run": round(time.perf_counter() - started, 1)},
    }  # fmt: skip
    write_json_atomic(note, root / "models" / "refiner.json")
    distributed.barrier()
    return note
