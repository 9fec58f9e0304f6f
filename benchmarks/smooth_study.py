"""Which mask smoothing (``inferer#smooth``), picked on validation patients, from the cohort's dumps (no retraining).

``benchmarks/cohort.py --dump DIR --seed S`` writes, per fold, each validation and test slice's full ranking of the
patches by agent a, its P(terminate) at each step and the slice gate. This script makes each slice's mask as
``medwss segment`` does (``--bundle``'s stop quantile and volume stop), smooths it with every candidate
``medwss.inference.mask_smoothing.MaskSmoothing`` (in-plane sigma x sigma across slices x threshold), and ranks the
candidates by their mean validation Dice over every fold and seed pooled (the way the volume stop was chosen): one
setting for the bundle, picked without a test mask. It reports the held-out Dice of the pick beside the unsmoothed
mask, the strictly nested per-fold pick, and the content-free central box, plain and smoothed the same way (so the
gain is not one that any blocky mask would get).

    .venv/bin/python benchmarks/smooth_study.py /tmp/dump_s0 /tmp/dump_s1 /tmp/dump_s2 --name smooth_study

Results: ``benchmarks/results/NAME.{md,json}``; 3D Dice on the 128 x 128 working grid per held-out patient.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from cohort import BOX_FRACTION, GATES
from stop_study import bundle_volume_stop, dice3d, write_results

from medwss.inference.mask_smoothing import MaskSmoothing
from medwss.inference.volume_stop import cut_ranking, quantile_counts

REPO = Path(__file__).resolve().parents[1]
SIGMAS = (0.0, 0.25, 0.375, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
SIGMAS_SLICES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
THRESHOLDS = (0.2, 0.3, 0.4, 0.5, 0.6)
CANDIDATES = [MaskSmoothing(s, z, t) for s in SIGMAS for z in SIGMAS_SLICES for t in THRESHOLDS
              if (s > 0 or z > 0) or t == 0.5]  # fmt: skip
"""Every candidate; the unsmoothed mask is the one with both sigmas 0."""


def key(smooth: MaskSmoothing) -> str:
    return f"sigma={smooth.sigma:g} slices={smooth.sigma_slices:g} t={smooth.threshold:g}"


def fold_dice(fold: dict, quantile: float, volume_stop, candidates=CANDIDATES) -> dict:
    """{"val" | "test" | "box": {candidate key: {patient: 3D Dice}}, "volume": {candidate key: {patient: mask
    volume / reference volume}}} for one fold's dump: the agent's mask on the
    validation and test patients, and the content-free box on the test patients, each smoothed by every candidate
    (one blur per pair of sigmas, cut at each threshold)."""
    grid, truth, region, patients = fold["grid"], fold["truth"], fold["region"], fold["patients"]
    scale = truth.shape[-1] // grid
    counts = volume_stop.counts(quantile_counts(fold["p_stop"], fold["order"], quantile), fold["gate"], patients)
    cells = cut_ranking(fold["order"], counts, grid)
    box = central_cells(len(patients), grid)
    test = fold["is_test"].bool()
    out: dict[str, dict] = {"val": {}, "test": {}, "box": {}, "volume": {}}

    def volume_ratio(px: torch.Tensor) -> dict[str, float]:
        """Each test patient's mask volume over the reference's (inside the region): does smoothing grow it?"""
        px = px if region is None else px & region
        names = np.asarray(patients)
        return {p: float(px[rows].sum()) / max(float(truth[rows].sum()), 1.0)
                for p in dict.fromkeys(names[test.numpy()])
                for rows in [torch.as_tensor(names == p)]}  # fmt: skip

    def score(px: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
        px = px if region is None else px & region
        names = [patients[i] for i in rows.nonzero().squeeze(1).tolist()]
        return dice3d(px[rows], truth[rows], names)

    masks = {name: c.repeat_interleave(scale, 1).repeat_interleave(scale, 2) for name, c in (("agent", cells),
                                                                                           ("box", box))}
    pair, blurred = None, {}
    for smooth in candidates:  # candidates of one pair of sigmas follow each other: blur once per pair
        if (smooth.sigma, smooth.sigma_slices) != pair:
            pair = (smooth.sigma, smooth.sigma_slices)
            blurred = {name: smooth.blur(m, grid, patients) if smooth.active else m.float()
                       for name, m in masks.items()}  # fmt: skip
        agent, boxed = (blurred[name] > smooth.threshold for name in ("agent", "box"))
        out["val"][key(smooth)] = score(agent, ~test)
        out["test"][key(smooth)] = score(agent, test)
        out["box"][key(smooth)] = score(boxed, test)
        out["volume"][key(smooth)] = volume_ratio(agent)
    return out


def central_cells(slices: int, grid: int) -> torch.Tensor:
    """(slices, grid, grid) bool: the central box of ``cohort.py`` (``BOX_FRACTION`` of the field of view)."""
    box = torch.zeros(slices, grid, grid, dtype=torch.bool)
    g0, g1 = int(round(grid * (0.5 - BOX_FRACTION / 2))), int(round(grid * (0.5 + BOX_FRACTION / 2)))
    box[:, g0:g1, g0:g1] = True
    return box


def gated_box_dice(fold: dict, smooth: MaskSmoothing) -> dict[str, dict[str, float]]:
    """Held-out Dice per patient of the central box on the slices the fold's detector calls positive, the gate
    picked on the fold's validation patients among ``cohort.GATES`` (``cohort.py``'s ``box_gated`` row): plain
    (``"plain"``) and smoothed by ``smooth`` (``"smoothed"``, its gate picked again)."""
    grid, truth, region, patients = fold["grid"], fold["truth"], fold["region"], fold["patients"]
    scale = truth.shape[-1] // grid
    box = central_cells(len(patients), grid).repeat_interleave(scale, 1).repeat_interleave(scale, 2)
    test = fold["is_test"].bool()

    def score(px: torch.Tensor, rows: torch.Tensor) -> dict[str, float]:
        px = px if region is None else px & region
        return dice3d(px[rows], truth[rows], [patients[i] for i in rows.nonzero().squeeze(1).tolist()])

    out = {}
    for name, shape in (("plain", lambda m: m), ("smoothed", lambda m: smooth(m, grid, patients))):
        masks = {g: shape(box & (fold["gate"] >= g)[:, None, None]) for g in GATES}
        best = max(GATES, key=lambda g: (float(np.mean(list(score(masks[g], ~test).values()))), -g))
        out[name] = score(masks[best], test)
    return out


def pick(val: dict[str, dict[str, float]]) -> str:
    """The candidate of best mean validation Dice (the first in ``CANDIDATES`` order on ties)."""
    return max(val, key=lambda k: (float(np.mean(list(val[k].values()))), -list(val).index(k)))


def markdown(result: dict, name: str) -> str:
    m = result["mean"]
    lines = [f"# {name}: the agent's mask smoothed along the volume (`inferer#smooth`)", "",
             f"Dumps: {', '.join(result['meta']['dumps'])}; stop quantile {result['meta']['stop_quantile']}, volume "
             f"stop {result['meta']['volume_stop']} (`{result['meta']['bundle']}`). {len(CANDIDATES)} candidates "
             "(in-plane sigma in patch widths x sigma across slices x threshold), ranked by mean validation "
             "Dice over every fold and seed pooled. Mean held-out 3D Dice over the cohort's patients (each held out "
             "once per seed), then over seeds.", "",
             f"Picked on pooled validation: **{result['picked']}** (validation {m['picked']['val']:.3f}, unsmoothed "
             f"{m['none']['val']:.3f}).", "",
             "| row | " + " | ".join(f"seed {s}" for s in result["seeds"]) + " | mean |",
             "|---|" + "---:|" * (len(result["seeds"]) + 1)]  # fmt: skip
    labels = {"none": "agent's patch mask (as `medwss segment` 0.4.1)",
              "picked": f"smoothed, pooled-validation pick ({result['picked']})",
              "nested": "smoothed, picked per fold on its own validation patients (nested)",
              "box_gated": "central box on the slices the detector calls positive (gate picked per fold on validation)",
              "box_gated_smoothed": "the same gated box, smoothed the same way (gate picked again)",
              "box": "content-free central box", "box_smoothed": "content-free central box, smoothed the same way"}
    for row, label in labels.items():
        per = [result["per_seed"][s][row] for s in result["seeds"]]
        lines.append(f"| {label} | " + " | ".join(f"{v:.3f}" for v in per) + f" | {np.mean(per):.3f} |")
    v = result["volume_ratio"]
    lines += ["", f"Mask volume over the reference's, median over the held-out patients of every seed: {v['none']:.2f} "
              f"unsmoothed, {v['picked']:.2f} smoothed by the pick."]
    lines += ["", "Top ten candidates on pooled validation (held-out Dice for reference only, not used to pick):", "",
              "| candidate | validation | held-out |", "|---|---:|---:|"]
    for k in result["ranking"][:10]:
        lines.append(f"| {k} | {result['pooled'][k]['val']:.3f} | {result['pooled'][k]['test']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", nargs="+", type=Path, help="cohort.py --dump folders, one per seed")
    ap.add_argument("--bundle", type=Path, default=REPO / "bundles" / "prostate", help="whose stop to apply")
    ap.add_argument("--name", default="smooth_study")
    args = ap.parse_args(argv)
    quantile, volume_stop = bundle_volume_stop(args.bundle)
    dumps: dict[str, dict] = {}  # each fold's dump, read once: scored here, its gated box once the pick is known
    folds: dict[str, dict] = {}
    for seed, d in enumerate(args.dumps):
        files = sorted(d.glob("fold*.pt"))
        if not files:
            raise SystemExit(f"error: {d}: no fold*.pt dumps (run benchmarks/cohort.py --dump)")
        for f in files:
            dumps[f"{seed} {f.stem}"] = torch.load(f, weights_only=False)
            folds[f"{seed} {f.stem}"] = fold_dice(dumps[f"{seed} {f.stem}"], quantile, volume_stop)
            print(d.name, f.stem, flush=True)
    pooled_val = {k: {f"{fold} {p}": v for fold, res in folds.items() for p, v in res["val"][k].items()}
                  for k in map(key, CANDIDATES)}  # fmt: skip
    pooled_test = {k: {f"{fold} {p}": v for fold, res in folds.items() for p, v in res["test"][k].items()}
                   for k in map(key, CANDIDATES)}  # fmt: skip
    picked = pick(pooled_val)
    none = key(MaskSmoothing())
    chosen = next(c for c in CANDIDATES if key(c) == picked)
    gated = {f: gated_box_dice(dump, chosen) for f, dump in dumps.items()}  # plain and smoothed by the pick
    per_seed: dict[str, dict[str, float]] = {}
    for seed in range(len(args.dumps)):
        mine = [r for f, r in folds.items() if f.split(" ")[0] == str(seed)]
        row = lambda get, mine=mine: float(np.mean([v for r in mine for v in get(r).values()]))  # noqa: E731
        per_seed[str(seed)] = {"none": row(lambda r: r["test"][none]), "picked": row(lambda r: r["test"][picked]),
                               "nested": row(lambda r: r["test"][pick(r["val"])]),
                               "box": row(lambda r: r["box"][none]), "box_smoothed": row(lambda r: r["box"][picked])}
        boxes = [r for f, r in gated.items() if f.split(" ")[0] == str(seed)]
        per_seed[str(seed)] |= {f"box_gated{k}": float(np.mean([v for r in boxes for v in r[name].values()]))
                                for k, name in (("", "plain"), ("_smoothed", "smoothed"))}
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    ranking = sorted(pooled_val, key=lambda k: -mean(pooled_val[k]))
    result = {"seeds": [str(s) for s in range(len(args.dumps))], "picked": picked, "per_seed": per_seed,
              "nested_picks": {f: pick(r["val"]) for f, r in folds.items()}, "ranking": ranking,
              "pooled": {k: {"val": mean(pooled_val[k]), "test": mean(pooled_test[k])} for k in ranking},
              "mean": {"picked": {"val": mean(pooled_val[picked])}, "none": {"val": mean(pooled_val[none])}},
              "volume_ratio": {k: float(np.median([v for r in folds.values() for v in r["volume"][c].values()]))
                               for k, c in (("none", none), ("picked", picked))},
              "meta": {"dumps": [str(d) for d in args.dumps], "stop_quantile": quantile,
                       "volume_stop": str(volume_stop), "bundle": args.bundle.name}}  # fmt: skip
    write_results(args.name, result, markdown(result, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
