"""Which organ-contrast patch score finds liver tumours on held-out patients (``scoring#method: contrast``).

Every detector trained on the liver cohort's slice labels ranked tumour patches inside the liver at 0.23-0.77 patch
AUC on held-out patients (``detector_variants_liver.md``, ``cohort.md``), and RLSP on those scores marked no more
than the whole liver does. The label-free yardstick of that study (patch darkness against the liver's median, 8 x
8 px patches) ranked them at 0.96-0.98. This study measures the designs of that score on the cohort benchmark's
patient folds (same folds, same validation patients), each with no pixel label anywhere:

* patch AUC inside the legal patches of the test patients (labels: patches at least half tumour);
* slice AUC of the slice's highest patch score (is "some patch is dark" a slice gate?);
* the score rule: patches at or above the calibrated threshold (the ``roi_quantile`` of the tumour-free training
  slices' scores, as the game's termination threshold is set), the quantile picked on the validation patients
  (3D Dice), 3D Dice on the test patients, also per source (IRCADb HU volumes, LiTS slices).

The score rule is what an agent that follows the score perfectly and stops at the threshold marks, so it bounds
what RLSP on the score can be expected to reach.

    .venv/bin/python benchmarks/contrast_study.py        # ~2 min on 2 CPU cores

Results: ``benchmarks/results/contrast_study.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort import (  # noqa: E402
    QUANTILES,
    RESULTS,
    SEED,
    bootstrap_ci,
    dice_per_patient,
    fold_rows,
    git_state,
    mean_dice,
    patient_folds,
    patient_kinds,
    pick_on_validation,
    task_parser,
    to_pixels,
)

from medwss.bundle.stages import stage_slices, training_regions  # noqa: E402
from medwss.detector.calibration import background_score_quantile  # noqa: E402
from medwss.detector.contrast import OrganContrast, contrast_patch_scores  # noqa: E402
from medwss.metrics.patches import oracle_patch_mask, patch_labels, roc_auc  # noqa: E402

DESIGNS: dict[str, tuple[int, OrganContrast]] = {
    "G16, raw pixels, whole liver (the detector study's yardstick)": (16, OrganContrast(sigma=0.0, erosion=0)),
    "G32, raw pixels, whole liver": (32, OrganContrast(sigma=0.0, erosion=0)),
    "G32, smoothed (sigma 1), whole liver": (32, OrganContrast(sigma=1.0, erosion=0)),
    "G32, smoothed (sigma 1), border eroded 2 px": (32, OrganContrast(sigma=1.0, erosion=2)),
    "G32, smoothed (sigma 2), border eroded 2 px": (32, OrganContrast(sigma=2.0, erosion=2)),
    "G32, smoothed (sigma 1), border eroded 3 px": (32, OrganContrast(sigma=1.0, erosion=3)),
    "G32, smoothed (sigma 1), border eroded 4 px (shipped)": (32, OrganContrast(sigma=1.0, erosion=4)),
    "G32, smoothed (sigma 1), border eroded 5 px": (32, OrganContrast(sigma=1.0, erosion=5)),
    "G32, smoothed (sigma 1), border eroded 6 px": (32, OrganContrast(sigma=1.0, erosion=6)),
    "G32, brighter than the liver (wrong polarity)": (32, OrganContrast(polarity="brighter", sigma=1.0, erosion=2)),
    "G64, smoothed (sigma 1), border eroded 2 px": (64, OrganContrast(sigma=1.0, erosion=2)),
}
"""Designs measured: grid, ``OrganContrast`` settings. The shipped erosion (4 px) is the smallest within 0.02 of the
best mean validation Dice (5 px: 0.572 against 0.556), which keeps more of the tumours at the liver's border."""


def study_design(data, regions, folds, grid: int, contrast: OrganContrast) -> list[dict]:
    """Per fold: patch AUC, slice AUC, the score rule's picked quantile, validation and test 3D Dice per patient."""
    scores = contrast_patch_scores(data.images, grid, regions, contrast)
    return [study_fold(data, regions, fold, grid, scores) for fold in folds]


def study_fold(data, regions, fold: dict, grid: int, scores: torch.Tensor) -> dict:
    """One fold of ``study_design``: ``scores`` (N, G, G) of every slice."""
    size = tuple(data.images.shape[-2:])
    truth, present = data.masks[:, 0], data.presence[:, 0]
    legal = patch_labels(regions, grid).bool()
    labels = patch_labels(truth, grid)
    (tr, va, te), pats = fold_rows(data.patients, fold)

    def rule(q, rows):
        t = background_score_quantile(scores[tr], present[tr], q, legal[tr])
        return t, to_pixels((scores[rows] >= t) & legal[rows] & (scores[rows] > 0), size, regions[rows])

    q, val = pick_on_validation(QUANTILES, lambda c: mean_dice(rule(c, va)[1], truth[va], pats["val"]))
    threshold, test_px = rule(q, te)
    inside = legal & te[:, None, None]
    oracle = torch.as_tensor(oracle_patch_mask(truth[te], grid, 0.5))
    return {"fold": fold["fold"], "patch_auc": roc_auc(scores[inside], labels[inside]),
            "slice_auc": roc_auc(scores[te].flatten(1).amax(1), present[te] > 0.5),
            "roi_quantile": q, "threshold": threshold, "dice_val": val,
            "dice": dice_per_patient(test_px, truth[te], pats["test"]),
            "oracle": dice_per_patient(oracle, truth[te], pats["test"])}  # fmt: skip


def summary(folds: list[dict], key: str, kinds: dict[str, str], kind: str | None = None) -> dict:
    vals = [d for f in folds for p, d in f[key].items() if kind is None or kinds.get(p) == kind]
    lo, hi = bootstrap_ci(vals)
    return {"mean": float(np.mean(vals)), "ci95": [lo, hi], "n": len(vals)}


def report(result: dict) -> str:
    kinds_seen = sorted(set(result["kinds"].values()))
    git = result["meta"]["git"]
    joined = lambda folds, key, fmt: " / ".join(format(f[key], fmt) for f in folds)  # noqa: E731
    dirty = " (medwss/ modified)" if git["dirty"] else ""
    lines = [
        "# Organ-contrast patch scores on the liver-tumour cohort",
        "",
        f"`benchmarks/contrast_study.py` at {git['commit']}{dirty}; {result['patients']} patients, "
        f"{result['slices']} slices, the cohort benchmark's patient folds (4 validation patients inside each training "
        "fold). No pixel label is read except to score. Score rule: patches at or above the `roi_quantile` of the "
        "tumour-free training slices' scores, the quantile picked on validation.",
        "",
        "| design | patch AUC per fold | slice AUC (max patch) | picked quantiles | score rule, validation 3D Dice "
        "| score rule, held-out 3D Dice | 95% CI | " + " | ".join(kinds_seen) + " | oracle patch mask |",
        "|---|---|---|---|---:|---:|---|" + "---:|" * len(kinds_seen) + "---:|",
    ]
    for name, folds in result["designs"].items():
        s = summary(folds, "dice", result["kinds"])
        per_kind = [f"{summary(folds, 'dice', result['kinds'], k)['mean']:.3f}" for k in kinds_seen]
        val = np.mean([f["dice_val"] for f in folds])
        lines.append(f"| {name} | {joined(folds, 'patch_auc', '.3f')} | {joined(folds, 'slice_auc', '.2f')} | "
                     f"{joined(folds, 'roi_quantile', '')} | {val:.3f} | {s['mean']:.3f} | "
                     f"{s['ci95'][0]:.3f}-{s['ci95'][1]:.3f} | "
                     + " | ".join(per_kind) + f" | {summary(folds, 'oracle', result['kinds'])['mean']:.3f} |")
    lines += ["", "Per held-out patient, shipped design (3D Dice of the score rule):", "",
              "| patient | source | Dice |", "|---|---|---:|"]
    shipped = next(v for k, v in result["designs"].items() if "(shipped)" in k)
    for f in shipped:
        for p, d in sorted(f["dice"].items()):
            lines.append(f"| {p} | {result['kinds'].get(p, '?')} | {d:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--out", default="contrast_study", help="report name: results/NAME.{json,md}")
    args = ap.parse_args(argv)
    parser = task_parser("liver_tumour", args.data_dir)
    data = stage_slices(parser, with_masks=True, cache_dir=Path(tempfile.gettempdir()) / "medwss_cohort_masks")
    regions = training_regions(data, "prior")
    folds = patient_folds(data.patients, 3, 4, SEED)
    result = {"designs": {}, "patients": len(set(data.patients)), "slices": len(data),
              "kinds": patient_kinds(parser), "meta": {"git": git_state(), "torch": torch.__version__}}  # fmt: skip
    for name, (grid, contrast) in DESIGNS.items():
        result["designs"][name] = study_design(data, regions, folds, grid, contrast)
        s = summary(result["designs"][name], "dice", result["kinds"])
        print(f"{name}: score rule {s['mean']:.3f}", flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{args.out}.md").write_text(report(result))


if __name__ == "__main__":
    main()
