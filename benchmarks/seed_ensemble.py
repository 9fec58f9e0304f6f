"""Three seeds' detector-and-agent pairs as one segmenter, from the cohort's dumps (no retraining).

``benchmarks/cohort.py --dump DIR --seed S`` writes, per fold, each validation and test slice's full ranking of the
patches by agent a, its P(terminate) at each step and the slice gate of that seed's detector. Runs of several seeds
share the folds, so the same slices appear in every seed's dump. Per fold this script gives each seed's mask as
``medwss segment`` makes it (``--bundle``'s stop quantile and volume stop) and three ensembles: the patches ranked by
their mean position over the seeds (``cohort.mean_rank_order``) cut at the mean, or the median, of the seeds' agreed
counts, and a majority vote of the seeds' masks. Nothing is picked, so no test mask is read except to score.

    .venv/bin/python benchmarks/seed_ensemble.py /tmp/dump_s0 /tmp/dump_s1 /tmp/dump_s2 --name seed_ensemble

Results: ``benchmarks/results/NAME.{md,json}``; 3D Dice on the 128 x 128 working grid per held-out patient.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from cohort import mean_rank_order
from stop_study import bundle_volume_stop, dice3d, write_results

from medwss.inference.volume_stop import cut_ranking, quantile_counts

REPO = Path(__file__).resolve().parents[1]
ROWS = {"mean_count": "ensemble: mean ranking cut at the mean of the seeds' counts",
        "median_count": "ensemble: mean ranking cut at the median of the seeds' counts",
        "vote": "ensemble: majority vote of the seeds' masks"}  # fmt: skip


def fold_dice(folds: list[dict], quantile: float, volume_stop) -> dict[str, dict[str, float]]:
    """Per test patient 3D Dice of each seed alone (``seed0``...) and of each ensemble, for one fold's dumps."""
    first = folds[0]
    if any(f["patients"] != first["patients"] for f in folds):
        raise SystemExit("error: the dumps' slices differ: use runs of the same folds (cohort.py --dump)")
    grid, truth, region, patients = first["grid"], first["truth"], first["region"], first["patients"]
    test = first["is_test"].bool()
    names = [patients[i] for i in test.nonzero().squeeze(1).tolist()]
    scale = truth.shape[-1] // grid

    def score(cells: torch.Tensor) -> dict[str, float]:
        px = cells.repeat_interleave(scale, 1).repeat_interleave(scale, 2)
        if region is not None:
            px = px & region
        return dice3d(px[test], truth[test], names)

    orders, counts, masks = [], [], []
    for fold in folds:
        agreed = volume_stop.counts(quantile_counts(fold["p_stop"], fold["order"], quantile), fold["gate"], patients)
        orders.append(fold["order"])
        counts.append(agreed)
        masks.append(cut_ranking(fold["order"], agreed, grid))
    merged = mean_rank_order(orders, grid * grid)
    stacked = torch.stack(counts).float()
    out = {f"seed{i}": score(m) for i, m in enumerate(masks)}
    out["mean_count"] = score(cut_ranking(merged, stacked.mean(0).round().long(), grid))
    out["median_count"] = score(cut_ranking(merged, stacked.median(0).values.long(), grid))
    out["vote"] = score(torch.stack(masks).float().mean(0) > 0.5)
    return out


def markdown(result: dict, name: str) -> str:
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    lines = [f"# {name}: several seeds' detector-and-agent pairs as one segmenter", "",
             f"Dumps: {', '.join(result['meta']['dumps'])}; stop quantile {result['meta']['stop_quantile']}, volume "
             f"stop {result['meta']['volume_stop']} (`{result['meta']['bundle']}`). Mean held-out 3D Dice over the "
             "cohort's patients (each held out once); nothing is picked on validation.", "",
             "| row | mean 3D Dice |", "|---|---:|"]  # fmt: skip
    for key, dice in result["dice"].items():
        label = ROWS.get(key, f"{key} alone (as `medwss segment`)")
        lines.append(f"| {label} | {mean(dice):.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dumps", nargs="+", type=Path, help="cohort.py --dump folders, one per seed, same folds")
    ap.add_argument("--bundle", type=Path, default=REPO / "bundles" / "prostate", help="whose stop to apply")
    ap.add_argument("--name", default="seed_ensemble")
    args = ap.parse_args(argv)
    quantile, volume_stop = bundle_volume_stop(args.bundle)
    files = sorted(p.name for p in args.dumps[0].glob("fold*.pt"))
    if not files:
        raise SystemExit(f"error: {args.dumps[0]}: no fold*.pt dumps (run benchmarks/cohort.py --dump)")
    dice: dict[str, dict[str, float]] = {}
    for name in files:
        folds = [torch.load(d / name, weights_only=False) for d in args.dumps]
        for key, per_patient in fold_dice(folds, quantile, volume_stop).items():
            dice.setdefault(key, {}).update(per_patient)
    result = {"dice": dice, "meta": {"dumps": [str(d) for d in args.dumps], "stop_quantile": quantile,
                                     "volume_stop": str(volume_stop), "bundle": args.bundle.name}}  # fmt: skip
    write_results(args.name, result, markdown(result, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
