"""Which patch score could RLSP's reward be? Score rules over detector variants, on the cohort's folds.

The game's termination rule makes "take every patch whose score is at or above the ROI threshold" the target an
agent learns (the score rule), so a reward can only lift RLSP as far as its best threshold rule goes on held-out
patients. This study trains the prostate bundle's detector on each fold of ``benchmarks/cohort.py`` (same folds,
same validation patients), in variants, and measures for each patch score:

* patch ROC AUC inside the body and inside the central box (where position alone says little);
* held-out 3D Dice of its threshold rule, every choice (slice gate, threshold) picked on the validation patients.

Scores (G x G per slice; ``gate`` = the detector's slice presence probability, ``prior`` = the position prior learned
from slice labels, ``local`` = Grad-CAM++ per patch, scaled to max 1 per slice):

* ``soft``: local x prior x gate (today's bundles);
* ``hard``: local x prior on the slices whose gate clears a threshold picked on validation;
* ``hard_smooth``: the same on a 3 x 3 patch average of local (compact blobs instead of speckle);
* ``hard_sum``: (local + prior) / 2 on gated slices (evidence or position, not both);
* ``prior_hard``: prior on gated slices (no local evidence);
* ``box_gated``: the central 40% box on gated slices (content-free reference);
* ``mask_prior_hard``: the mean training mask as prior (reads training masks: how good a perfect prior would be).

    .venv/bin/python benchmarks/scorer_study.py [--variants base flips wide] [--folds 3]

Results: ``benchmarks/results/scorer_study.{md,json}``; detectors are cached in ``$TMPDIR/medwss_scorer_study``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort import (  # noqa: E402
    BOX_FRACTION,
    GATES,
    SEED,
    bootstrap_ci,
    dice_per_patient,
    fold_rows,
    git_state,
    patient_folds,
    task_parser,
    to_pixels,
)

from medwss.bundle.stages import stage_slices, training_regions  # noqa: E402
from medwss.detector.network import detector_members  # noqa: E402
from medwss.detector.scoring import PatchScorer, position_prior  # noqa: E402
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings  # noqa: E402
from medwss.metrics.patches import patch_labels, roc_auc  # noqa: E402
from medwss.runtime.config import parsed  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
THRESHOLDS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))
VARIANTS = {
    "base": ({}, {}),
    "flips": ({"flip_prob": 0.5}, {}),
    "wide": ({}, {"width": 32}),
    "flips_wide": ({"flip_prob": 0.5}, {"width": 32}),
}
"""name -> (DetectorTrainingSettings changes, detector#network_def changes)."""


def train_or_load(parser, data, regions, train_rows, variant: str, fold: int, cache: Path, epochs: int | None):
    train_changes, net_changes = VARIANTS[variant]
    if epochs is not None:
        train_changes = train_changes | {"epochs": epochs}
    for key, value in net_changes.items():
        parser[f"detector#network_def#{key}"] = value
    model = parsed(parser, "detector#network_def")
    path = cache / f"{variant}-e{epochs or 'bundle'}" / f"fold{fold}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        return model.eval(), 0.0
    settings = DetectorTrainingSettings(**(dict(parser["detector"]["training"]) | {"seed": SEED} | train_changes))
    start = time.perf_counter()
    for k, member in enumerate(detector_members(model)):
        trainer = DetectorTrainer(member, data.images[train_rows], data.presence[train_rows],
                                  None if regions is None else regions[train_rows],
                                  settings=dataclasses.replace(settings, seed=SEED + k))
        while trainer.epoch < settings.epochs:
            trainer.step()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return model.eval(), time.perf_counter() - start


def smooth3(scores: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(scores[:, None], 3, stride=1, padding=1, count_include_pad=False)[:, 0]


def study_fold(parser, data, regions, fold: dict, variant: str, cache: Path, epochs: int | None) -> dict:
    grid = int(parser["grid_size"])
    size = tuple(data.images.shape[-2:])
    (tr, va, te), pats = fold_rows(data.patients, fold)
    truth = data.masks[:, 0]
    detector, seconds = train_or_load(parser, data, regions, tr, variant, fold["fold"], cache, epochs)
    scorer = PatchScorer(detector, grid, "cam", gate=True)
    scored = scorer.score(data.images, regions)
    local, gate, legal = scored.local, scored.gate, scored.region
    prior = position_prior(local[tr], data.presence[tr, 0], legal[tr])
    labels = patch_labels(truth, grid)
    g0, g1 = int(round(grid * (0.5 - BOX_FRACTION / 2))), int(round(grid * (0.5 + BOX_FRACTION / 2)))
    box = torch.zeros(grid, grid, dtype=torch.bool)
    box[g0:g1, g0:g1] = True
    inside, in_box = legal & te[:, None, None], legal & te[:, None, None] & box
    mask_prior = labels[tr & (data.presence[:, 0] == 1)].float().mean(0)
    mask_prior = mask_prior / mask_prior.max()
    scores = {
        "soft": local * prior * gate[:, None, None],
        "hard": local * prior,
        "hard_smooth": smooth3(local) * prior,
        "hard_sum": (local + prior) / 2,
        "prior_hard": prior.expand_as(local),
        "box_gated": box.float().expand_as(local),
        "mask_prior_hard": mask_prior.expand_as(local),
    }
    auc = {name: {"body": roc_auc(s[inside], labels[inside]), "box": roc_auc(s[in_box], labels[in_box])}
           for name, s in scores.items() if name in ("soft", "hard", "hard_smooth", "hard_sum")}
    auc["slice"] = roc_auc(gate[te], data.presence[te, 0] > 0.5)

    def dice(rows, pred) -> dict[str, float]:
        return dice_per_patient(pred[rows], truth[rows], pats["val" if rows is va else "test"])

    dice_out, chosen = {}, {}
    for name, s in scores.items():
        gates = (0.0,) if name == "soft" else GATES
        thresholds = (0.5,) if name == "box_gated" else THRESHOLDS
        best = None
        for g in gates:
            for t in thresholds:
                px = to_pixels((s >= t) & legal & (gate >= g)[:, None, None], size, regions)
                v = float(np.mean(list(dice(va, px).values())))
                if best is None or v > best[0]:
                    best = (v, g, t, px)
        _, g, t, px = best
        dice_out[name] = dice(te, px)
        chosen[name] = {"gate": float(g), "threshold": float(t)}
    return {"fold": fold["fold"], "variant": variant, "auc": auc, "dice": dice_out, "chosen": chosen,
            "detector_s": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variants", nargs="+", default=["base", "flips", "wide"], choices=sorted(VARIANTS))
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--n-val", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="detector epochs (default: the bundle's)")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cache = Path(tempfile.gettempdir()) / "medwss_scorer_study"
    parser = task_parser("prostate", args.data_dir)
    data = stage_slices(parser, with_masks=True, cache_dir=Path(tempfile.gettempdir()) / "medwss_cohort_masks")
    regions = training_regions(data, str(parsed(parser, "data").get("region", "none")))
    folds = patient_folds(data.patients, args.folds, args.n_val)
    runs = []
    for variant in args.variants:
        for fold in folds:
            res = study_fold(task_parser("prostate", args.data_dir), data, regions, fold, variant, cache, args.epochs)
            means = {k: round(float(np.mean(list(v.values()))), 3) for k, v in res["dice"].items()}
            print(variant, fold["fold"], means, dict(res["auc"]), flush=True)
            runs.append(res)
    summary: dict[str, dict] = {}
    for variant in args.variants:
        mine = [r for r in runs if r["variant"] == variant]
        for name in mine[0]["dice"]:
            vals = [d for r in mine for d in r["dice"][name].values()]
            summary.setdefault(variant, {})[name] = {"mean": float(np.mean(vals)), "ci95": list(bootstrap_ci(vals)),
                                                     "n": len(vals)}
    result = {"runs": runs, "summary": summary, "meta": {"git": git_state(), "torch": torch.__version__,
                                                         "cpu_count": os.cpu_count(), "folds": args.folds}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scorer_study.json").write_text(json.dumps(result, indent=1))
    names = list(next(iter(summary.values())))
    lines = ["# Patch scores as rewards: threshold rules on held-out prostate patients", "",
             f"Commit {result['meta']['git'].get('commit')}; {args.folds} patient folds of `benchmarks/cohort.py` "
             f"(same seed, same validation patients); slice gate and threshold picked on validation per fold. "
             "3D Dice at 128 x 128, mean over the 26 held-out patients (95% bootstrap interval). See the module "
             "docstring of `benchmarks/scorer_study.py` for the scores.", "",
             "| score | " + " | ".join(args.variants) + " |", "|---|" + "---:|" * len(args.variants)]
    for name in names:
        cells = [f"{summary[v][name]['mean']:.3f} ({summary[v][name]['ci95'][0]:.3f}-{summary[v][name]['ci95'][1]:.3f})"
                 for v in args.variants]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "Patch ROC AUC on the held-out patients per fold (inside the body / inside the central box):", "",
              "| variant | fold | slice AUC | soft | hard (local x prior) | hard_smooth | hard_sum |",
              "|---|---:|---:|---|---|---|---|"]
    for r in runs:
        a = r["auc"]
        lines.append(f"| {r['variant']} | {r['fold']} | {a['slice']:.3f} | " + " | ".join(
            f"{a[k]['body']:.3f} / {a[k]['box']:.3f}" for k in ("soft", "hard", "hard_smooth", "hard_sum")) + " |")
    (RESULTS / "scorer_study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
