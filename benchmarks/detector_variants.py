"""Which detector localises on held-out patients: patch ROC AUC and score-rule Dice per detector variant and seed.

The cohort benchmark (``benchmarks/cohort.py``) showed the game's patch scores, not the agent, limit RLSP: the
bundle's detector ranks slices well (slice AUC 0.93-0.97) but on some folds its patch scores sit at or below chance
(Grad-CAM++ patch AUC 0.30-0.68 on fold 2, depending on the seed). This study trains detector variants on the same
patient folds, one network per seed (no ensemble, so the seed spread is visible), and measures, per fold and seed:

* slice AUC on the test patients; Grad-CAM++ patch AUC inside the region on the validation and the test patients
  (the bundle's ``scoring#method: cam``), also inside the central box where position alone says little;
* the game score (local x learned position prior x slice gate) patch AUC on the test patients;
* 3D Dice of the score rule at the calibrated threshold, its ROI quantile picked on the validation patients (what
  an agent that follows the score perfectly marks), beside the gated central box of the same detector.

A variant is a set of overrides of the bundle's ``detector#network_def`` and ``detector#training`` as they were
before this study (``BEFORES``; the prostate bundle now trains as ``box_instance``). ``--task liver_tumour`` runs
the same study on the liver-tumour cohort (region: the liver, the bundle's crop); there a variant may also change
what the detector sees (``"input": "organ_relative"``), and each fold reports a score that reads no label
(``hypodensity_reference``) as a yardstick:

    .venv/bin/python benchmarks/detector_variants.py [--task prostate] --variants before long_instance --seeds 0 1 \
        [--only 2] [--out detector_variants]

Results: ``benchmarks/results/detector_variants.{json,md}`` (each finished run is saved at once;
runs already there are skipped).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cohort import (  # noqa: E402
    BOX_FRACTION,
    GATES,
    QUANTILES,
    RESULTS,
    fold_rows,
    git_state,
    mean_dice,
    patient_folds,
    pick_on_validation,
    rows_of,
    task_parser,
    to_pixels,
)

from medwss.agents.threshold import threshold_segment  # noqa: E402
from medwss.bundle.stages import stage_slices, training_regions  # noqa: E402
from medwss.detector.calibration import background_score_quantile  # noqa: E402
from medwss.detector.network import build_detector  # noqa: E402
from medwss.detector.scoring import PatchScorer, position_prior  # noqa: E402
from medwss.detector.training import DetectorTrainer, DetectorTrainingSettings  # noqa: E402
from medwss.metrics.patches import patch_labels, roc_auc  # noqa: E402
from medwss.runtime.config import parsed  # noqa: E402

BEFORES = {"prostate": {"training": {"loss": "bag", "epochs": 15}}, "liver_tumour": {}}
"""Each bundle's detector training before this study; every variant starts from it (then the bundle's other
settings: width 16, 1 extra block, coordinate channels, mean pooling, the MONAI affine + intensity augmentation).
The liver-tumour bundle is unchanged (bag loss, 6 epochs over its ~1,370 slices)."""

VARIANTS: dict[str, dict[str, dict]] = {
    "before": {},
    # receptive field over the whole 128 px slice (3 more stride-1 residual units: 135 px), as the study's
    # whole-slice classifiers, still one logit per 8 x 8 cell so Grad-CAM++ and cell pooling both apply
    "deep": {"network": {"extra_blocks": 3}},
    "deep_long": {"network": {"extra_blocks": 3}, "training": {"epochs": 40}},
    "long": {"training": {"epochs": 40}},
    "instance": {"training": {"loss": "instance"}},
    "long_instance": {"training": {"loss": "instance", "epochs": 40}},
    # the liver-tumour bundle at the optimizer steps of the prostate's long runs (~1,400 steps: 16 epochs)
    "steps": {"training": {"epochs": 16}},
    "steps_instance": {"training": {"loss": "instance", "epochs": 16}},
    "no_coords": {"network": {"coord_channels": False}},
    # the bundle's settings (instance loss, 40 epochs), but on ROI slices only the cells of the central box are
    # positives and the rest of the body negatives: the slice-level anatomy a gland slice shows everywhere can no
    # longer explain the label, only what lies in the box (``network_def#positive_box``; with and without coordinates)
    "box_instance": {"network": {"positive_box": 0.5}, "training": {"loss": "instance", "epochs": 40}},
    "box_instance_nocoords": {"network": {"positive_box": 0.5, "coord_channels": False},
                              "training": {"loss": "instance", "epochs": 40}},
    # how large the box is: a tighter or a looser central box than the chosen half of the field of view
    "box40_instance": {"network": {"positive_box": 0.4}, "training": {"loss": "instance", "epochs": 40}},
    "box60_instance": {"network": {"positive_box": 0.6}, "training": {"loss": "instance", "epochs": 40}},
    "strong_aug": {"training": {"rotate_range": 0.35, "scale_range": 0.25, "translate_fraction": 0.125}},
    # liver: a 39 px receptive field and no coordinates (the cell cannot see the liver's extent or where it lies)...
    "small_nocoords": {"network": {"extra_blocks": 0, "coord_channels": False}, "training": {"epochs": 16}},
    # ...and the input as the liver alone, intensity relative to its median on each slice (``organ_relative``)
    "small_nocoords_relative": {"input": "organ_relative", "network": {"extra_blocks": 0, "coord_channels": False},
                                "training": {"epochs": 16}},
}


def organ_relative(images: torch.Tensor, regions: torch.Tensor) -> torch.Tensor:
    """Each slice's intensity relative to the median inside its region (moved to 0.5), 0.5 outside the region.

    Why (liver): a tumour is told apart by its contrast to the parenchyma around it, which shifts with the patient,
    the contrast phase and the window of an 8-bit export; outside the liver there is nothing to find, only the
    liver's extent, which goes with tumour slices in this cohort (the confound that inverts the CAM).
    """
    out = images.clone()
    for i in range(len(images)):
        inside = regions[i].bool()
        if inside.any():
            for c in range(images.shape[1]):
                out[i, c] = (images[i, c] - images[i, c][inside].median() + 0.5).clamp(0, 1)
        out[i] = torch.where(inside, out[i], torch.full_like(out[i], 0.5))
    return out


def hypodensity_reference(data, regions, fold, grid: int) -> dict:
    """A score that reads no label: how much darker a patch is than the median of the region on its slice.

    Why: a yardstick for the learned liver scores. Most liver tumours are hypodense on portal-venous CT, so a
    patch AUC far above the detector's says the evidence is in the image and the slice labels fail to teach it.
    Its threshold is picked on the validation patients (3D Dice), as the score rule's.
    """
    size = tuple(data.images.shape[-2:])
    (tr, va, te), pats = fold_rows(data.patients, fold)
    truth = data.masks[:, 0]
    img = data.images[:, data.images.shape[1] // 2].float()
    reg = regions.bool()
    n = size[0] // grid
    cells = lambda x: x.reshape(len(x), grid, n, grid, n).float().mean((2, 4))  # noqa: E731
    frac = cells(reg)
    median = torch.stack([im[r].median() if r.any() else im.new_tensor(0.0) for im, r in zip(img, reg, strict=True)])
    dark = median[:, None, None] - cells(img * reg) / frac.clamp_min(1e-6)
    legal = frac > 0.5
    labels = patch_labels(truth, grid)

    def masks(t, rows):
        return to_pixels(((dark > t) & legal)[rows], size, reg[rows])

    t, val = pick_on_validation([float(x) for x in np.linspace(0.0, 0.5, 26)],
                                lambda c: mean_dice(masks(c, va), truth[va], pats["val"]))
    inside = legal & te[:, None, None]
    return {"patch_auc": roc_auc(dark[inside], labels[inside]), "threshold": t, "dice_val": val,
            "dice": mean_dice(masks(t, te), truth[te], pats["test"])}


def centre_reference(data, regions, fold, grid: int) -> dict:
    """Closeness to the centre of the field of view as a patch score (reads no image and no label): a yardstick.

    Why: the central box on the gated slices is the baseline RLSP must beat, so a learned score must rank the
    patches of an ROI slice better than position alone does (``patch_auc_slice``: mean AUC inside each ROI slice).
    """
    (tr, va, te), pats = fold_rows(data.patients, fold)
    n = data.images.shape[-1] // grid
    legal = regions.bool().reshape(len(data), grid, n, grid, n).float().mean((2, 4)) > 0.5
    labels = patch_labels(data.masks[:, 0], grid)
    centre = torch.linspace(-1, 1, grid)
    score = -(centre[:, None] ** 2 + centre[None, :] ** 2).expand(len(data), grid, grid)
    aucs = [roc_auc(score[i][legal[i]], labels[i][legal[i]]) for i in torch.nonzero(te)[:, 0].tolist()
            if data.presence[i, 0] > 0.5]
    inside = legal & te[:, None, None]
    return {"patch_auc": roc_auc(score[inside], labels[inside]),
            "patch_auc_slice": float(np.nanmean(aucs)) if aucs else float("nan")}


def train_one(parser, data, regions, rows, variant: dict, seed: int, before: dict):
    """One detector network (no ensemble) on ``rows``: the bundle's settings, then ``before``, then ``variant``."""
    raw = parser["detector"]["network_def"]
    net_cfg = {k: parser.get_parsed_content(f"detector#network_def#{k}") for k in raw if not k.startswith("_")}
    net_cfg |= {"members": 1} | before.get("network", {}) | variant.get("network", {})
    settings = dict(parser["detector"]["training"]) | {"seed": seed} | before.get("training", {})
    settings |= variant.get("training", {})
    settings = DetectorTrainingSettings(**settings)
    torch.manual_seed(seed)
    model = build_detector(**net_cfg)
    trainer = DetectorTrainer(model, data.images[rows], data.presence[rows],
                              None if regions is None else regions[rows], settings=settings)
    while trainer.epoch < settings.epochs:
        trainer.step()
    return model.eval()


SCORINGS = {"cam_gate": ("cam", False, True), "mil_prior_gate": ("mil", True, True), "mil_gate": ("mil", False, True),
            "mil": ("mil", False, False)}
"""Other ways the game could score a patch with the same network (``PatchScorer``: local method, position prior,
slice gate), measured beside the bundle's Grad-CAM++ x prior x gate with ``--scorings``. Why: with the central box
the detector's own cell probabilities say *whether* the gland lies in a patch, not only *where* (the cohort's MIL
cell patch AUC 0.95-0.97 against 0.91-0.94 for Grad-CAM++ and 0.84-0.90 for the game score)."""


def evaluate(parser, data, regions, fold, detector, scorings: bool = False) -> dict:
    """AUCs and Dice of one detector on one fold, scored as the bundle scores (Grad-CAM++ x prior x gate).

    With ``scorings`` also the score rule's Dice and the within-slice AUC of each of ``SCORINGS``."""
    grid = int(parser["grid_size"])
    size = tuple(data.images.shape[-2:])
    (tr, va, te), pats = fold_rows(data.patients, fold)
    truth = data.masks[:, 0]
    scorer = PatchScorer(detector, grid, "cam", True)
    scored = scorer.score(data.images, regions)
    gate = scored.gate
    scorer.prior = position_prior(scored.local[tr], data.presence[tr, 0], scored.region[tr])
    scores = scorer.combine(scored.local, gate)
    legal = scored.region
    labels = patch_labels(truth, grid)
    g0, g1 = int(round(grid * (0.5 - BOX_FRACTION / 2))), int(round(grid * (0.5 + BOX_FRACTION / 2)))
    box = torch.zeros(grid, grid, dtype=torch.bool)
    box[g0:g1, g0:g1] = True

    def auc(values, rows, extra=None):
        inside = legal & rows[:, None, None]
        if extra is not None:
            inside = inside & extra
        return roc_auc(values[inside], labels[inside])

    out = {"slice_auc": roc_auc(gate[te], data.presence[te, 0] > 0.5),
           "cam_auc_val": auc(scored.local, va), "cam_auc": auc(scored.local, te),
           "cam_auc_box": auc(scored.local, te, box), "game_auc": auc(scores, te)}

    def within(values, rows):
        """Mean patch AUC inside each ROI slice: the ranking a stop on the slice relies on (the gate cannot help)."""
        aucs = [roc_auc(values[i][legal[i]], labels[i][legal[i]]) for i in torch.nonzero(rows)[:, 0].tolist()
                if data.presence[i, 0] > 0.5]
        return float(np.nanmean(aucs)) if aucs else float("nan")

    out |= {"cam_auc_slice_val": within(scored.local, va), "cam_auc_slice": within(scored.local, te),
            "game_auc_slice_val": within(scores, va), "game_auc_slice": within(scores, te)}

    def on(rows, pred, key):
        return mean_dice(pred[rows], truth[rows], pats[key])

    def rule_at(q, values=scores):
        """The score rule at the ``q`` quantile of the training patients' ROI-free patch scores, in pixels."""
        t = background_score_quantile(values[tr], data.presence[tr, 0], q, legal[tr])
        return to_pixels(threshold_segment(values, legal, t), size, regions)

    q, val_dice = pick_on_validation(QUANTILES, lambda c: on(va, rule_at(c), "val"))
    out |= {"rule_quantile": q, "rule_dice_val": val_dice, "rule_dice": on(te, rule_at(q), "test")}
    if scorings:
        out["scorings"] = {}
        local = {"cam": scored.local}
        for name, (method, use_prior, use_gate) in SCORINGS.items():
            if method not in local:
                local[method] = PatchScorer(detector, grid, method).local_scores(data.images, regions)
            alt = local[method] * (gate.view(-1, 1, 1) if use_gate else 1.0)
            if use_prior:
                alt = alt * position_prior(local[method][tr], data.presence[tr, 0], legal[tr])
            qa, dva = pick_on_validation(QUANTILES, lambda c, alt=alt: on(va, rule_at(c, alt), "val"))
            out["scorings"][name] = {"auc": auc(alt, te), "auc_slice_val": within(alt, va),
                                     "auc_slice": within(alt, te), "rule_quantile": qa, "rule_dice_val": dva,
                                     "rule_dice": on(te, rule_at(qa, alt), "test")}
    box_px = to_pixels(box.expand(len(data), grid, grid), size, regions)
    gated = lambda g: box_px & (gate >= g)[:, None, None]  # noqa: E731
    gb, _ = pick_on_validation(GATES, lambda g: on(va, gated(g), "val"))
    out["box_gated_dice"] = on(te, gated(gb), "test")
    return out


def markdown(runs: dict, task: str = "prostate", references: dict | None = None) -> str:
    lines = [f"# Detector variants: patch AUC and score-rule Dice on held-out {task} patients", "",
             "One network per seed, 3 patient folds of `benchmarks/cohort.py`; see the module docstring of "
             "`benchmarks/detector_variants.py`. Per variant: mean over folds and seeds, then the worst run. "
             "A variant is chosen on the validation columns (validation patients of each fold); the test columns "
             "report it.", "",
             "| variant | runs | slice AUC | CAM patch AUC val | score-rule Dice val | CAM patch AUC test (min) | "
             "in box | game AUC (min) | within ROI slices, CAM / game: val | test | score-rule Dice test (min) | "
             "gated box | train s |",
             "|---|---:|---:|---:|---:|---|---:|---|---|---|---|---:|---:|"]
    by_variant: dict[str, list[dict]] = {}
    for run in runs.values():
        by_variant.setdefault(run["variant"], []).append(run)
    for name, rs in by_variant.items():
        def m(k, rs=rs):
            return float(np.mean([r.get(k, np.nan) for r in rs]))  # runs before the within-slice AUC lack it

        def lo(k, rs=rs):
            return float(np.min([r[k] for r in rs]))

        lines.append(f"| {name} | {len(rs)} | {m('slice_auc'):.3f} | {m('cam_auc_val'):.3f} | "
                     f"{m('rule_dice_val'):.3f} | {m('cam_auc'):.3f} ({lo('cam_auc'):.3f}) | {m('cam_auc_box'):.3f} | "
                     f"{m('game_auc'):.3f} ({lo('game_auc'):.3f}) | "
                     f"{m('cam_auc_slice_val'):.3f} / {m('game_auc_slice_val'):.3f} | "
                     f"{m('cam_auc_slice'):.3f} / {m('game_auc_slice'):.3f} | "
                     f"{m('rule_dice'):.3f} ({lo('rule_dice'):.3f}) | {m('box_gated_dice'):.3f} | "
                     f"{m('train_s'):.0f} |")
    lines += ["", f"Variants (overrides of the {task} bundle's `detector#network_def` and `detector#training` as "
              f"they were before this study: {BEFORES[task] or 'the bundle as it is'}"
              + ("; the bundle now trains as `box_instance` (0.3.0; `long_instance` in 0.2.0)"
                 if task == "prostate" else "") + "):", ""]
    lines += [f"- `{name}`: {VARIANTS[name] or 'no override'}" for name in by_variant]
    centre = {k: r for k, r in (references or {}).items() if k.startswith("centre/")}
    if centre:
        lines += ["", "Reference that reads no image and no label (`centre_reference`: closeness to the centre of the "
                  "field of view), held-out patients:", "", "| fold | patch AUC in body | within ROI slices |",
                  "|---|---:|---:|"]
        lines += [f"| {k.split('/')[1]} | {r['patch_auc']:.3f} | {r['patch_auc_slice']:.3f} |"
                  for k, r in sorted(centre.items())]
    references = {k: r for k, r in (references or {}).items() if not k.startswith("centre/")}
    if references:
        lines += ["", "Reference that reads no label (`hypodensity_reference`: a patch's darkness against the median "
                  "of the liver on its slice; threshold picked on the validation patients):", "",
                  "| fold | patch AUC test | threshold | Dice val | Dice test |", "|---|---:|---:|---:|---:|"]
        lines += [f"| {k.split('/')[1]} | {r['patch_auc']:.3f} | {r['threshold']:.2f} | {r['dice_val']:.3f} | "
                  f"{r['dice']:.3f} |" for k, r in sorted(references.items())]
    scored = [r for r in runs.values() if "scorings" in r]
    if scored:
        lines += ["", "Other scorings of the same networks (`--scorings`; bundle: Grad-CAM++ x prior x gate), mean "
                  "over runs: patch AUC on the test patients pooled and within ROI slices (validation / test), "
                  "score-rule Dice (its ROI quantile picked on validation) on validation and test:", "",
                  "| variant | scoring | runs | AUC test | within ROI slices val / test | rule Dice val | "
                  "rule Dice test (min) |", "|---|---|---:|---:|---|---:|---|"]
        for name in sorted({r["variant"] for r in scored}):
            rs = [r for r in scored if r["variant"] == name]
            lines.append(f"| {name} | cam x prior x gate (bundle) | {len(rs)} | "
                         f"{np.mean([r['game_auc'] for r in rs]):.3f} | "
                         f"{np.mean([r['game_auc_slice_val'] for r in rs]):.3f} / "
                         f"{np.mean([r['game_auc_slice'] for r in rs]):.3f} | "
                         f"{np.mean([r['rule_dice_val'] for r in rs]):.3f} | "
                         f"{np.mean([r['rule_dice'] for r in rs]):.3f} ({np.min([r['rule_dice'] for r in rs]):.3f}) |")
            for sc in SCORINGS:
                v = [r["scorings"][sc] for r in rs]
                lines.append(f"| {name} | {sc.replace('_', ' x ')} | {len(v)} | {np.mean([x['auc'] for x in v]):.3f} | "
                             f"{np.mean([x['auc_slice_val'] for x in v]):.3f} / "
                             f"{np.mean([x['auc_slice'] for x in v]):.3f} | "
                             f"{np.mean([x['rule_dice_val'] for x in v]):.3f} | "
                             f"{np.mean([x['rule_dice'] for x in v]):.3f} "
                             f"({np.min([x['rule_dice'] for x in v]):.3f}) |")
    lines += ["", "Per run:", "",
              "| variant | fold | seed | slice AUC | CAM val | CAM test | in box | game | rule val | rule test | "
              "gated box |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(runs.values(), key=lambda r: (r["variant"], r["fold"], r["seed"])):
        lines.append(f"| {r['variant']} | {r['fold']} | {r['seed']} | {r['slice_auc']:.3f} | {r['cam_auc_val']:.3f} | "
                     f"{r['cam_auc']:.3f} | {r['cam_auc_box']:.3f} | {r['game_auc']:.3f} | "
                     f"{r['rule_dice_val']:.3f} | {r['rule_dice']:.3f} | {r['box_gated_dice']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="prostate", choices=sorted(BEFORES))
    ap.add_argument("--variants", nargs="+", default=["before", "long_instance"], choices=sorted(VARIANTS))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--only", type=int, nargs="*", default=None, help="run only these folds")
    ap.add_argument("--data-dir", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="detector_variants")
    ap.add_argument("--scorings", action="store_true", help="also score each network as in SCORINGS")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = RESULTS / f"{args.out}.json"
    saved = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
    parser = task_parser(args.task, args.data_dir)
    data = stage_slices(parser, with_masks=True, cache_dir=Path(tempfile.gettempdir()) / "medwss_cohort_masks")
    regions = training_regions(data, str(parsed(parser, "data").get("region", "none")))
    relative = None

    def inputs(name):
        """The slices as this variant's detector sees them (the bundle's, or ``organ_relative``)."""
        nonlocal relative
        if name is None:
            return data
        if relative is None:
            relative = dataclasses.replace(data, images=organ_relative(data.images, regions))
        return relative

    for fold in patient_folds(data.patients, args.folds, 4):
        if args.only is not None and fold["fold"] not in args.only:
            continue
        if args.task == "prostate" and f"centre/{fold['fold']}" not in saved.get("references", {}):
            saved.setdefault("references", {})[f"centre/{fold['fold']}"] = centre_reference(
                data, regions, fold, int(parser["grid_size"]))
        if args.task == "liver_tumour" and f"hypodensity/{fold['fold']}" not in saved.get("references", {}):
            ref = hypodensity_reference(data, regions, fold, int(parser["grid_size"]))
            print(f"hypodensity/{fold['fold']}", ref, flush=True)
            saved.setdefault("references", {})[f"hypodensity/{fold['fold']}"] = ref
        for variant in args.variants:
            for seed in args.seeds:
                key = f"{variant}/{fold['fold']}/{seed}"
                if key in saved["runs"]:
                    continue
                start = time.perf_counter()
                seen = inputs(VARIANTS[variant].get("input"))
                detector = train_one(parser, seen, regions, rows_of(data.patients, fold["train"]),
                                     VARIANTS[variant], seed, BEFORES[args.task])
                run = {"variant": variant, "fold": fold["fold"], "seed": seed,
                       "train_s": time.perf_counter() - start} | evaluate(parser, seen, regions, fold, detector,
                                                                           scorings=args.scorings)
                print(key, {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}, flush=True)
                on_disk = json.loads(path.read_text()) if path.is_file() else {"runs": {}}
                saved["runs"] = on_disk["runs"] | saved["runs"] | {key: run}
                saved["references"] = on_disk.get("references", {}) | saved.get("references", {})
                names = sorted({r["variant"] for r in saved["runs"].values()})
                saved["meta"] = {"task": args.task, "git": git_state(), "torch": torch.__version__,
                                 "load": os.getloadavg()[0], "variants": {k: VARIANTS[k] for k in names}}
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(json.dumps(saved, indent=1))
                os.replace(tmp, path)
    (RESULTS / f"{args.out}.md").write_text(markdown(saved["runs"], args.task, saved.get("references", {})))
    print((RESULTS / f"{args.out}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
