"""One refiner setting for the bundle: chosen on every fold's validation patients pooled, reported on held-out ones.

``benchmarks/cohort.py --refine`` trains, per fold, a UNet on the agent's masks of the training patients and keeps
every candidate setting's Dice per validation and per test patient (the checkpoint's epoch, the probability
threshold, which slices keep a mask: the detector's gate at a level, or ``rlsp``, the slices the agent itself put
patches on, and whether only the largest 3D component is kept). Its own "RLSP refined" row picks the setting per
fold on that fold's 4 validation patients; a bundle ships one setting. This script ranks the settings by their mean
validation Dice over all folds and seeds pooled, and reads the held-out Dice of the best ones, beside plain RLSP and
the content-free and gated boxes of the same runs.

    .venv/bin/python benchmarks/cohort.py --only N --seed S --refine --partial results/cohort_folds_ref_sS.json ...
    .venv/bin/python benchmarks/refine_study.py results/cohort_folds_ref_s0.json ... --name refine_study

Results: ``benchmarks/results/NAME.{md,json}``; 3D Dice on the 128 x 128 working grid, per held-out patient.
Caveat, as for the stop study: a fold's validation patients are other folds' test patients, so the pooled choice
is not strictly nested; the per-fold pick (cohort's own row) is, and is reported beside it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
ROWS = {
    "rlsp": "RLSP (as `medwss segment` 0.4.1: volume stop)",
    "rlsp_refined": "RLSP refined, setting picked per fold (strictly nested)",
    "box_gated": "gated central box",
    "cam": "Grad-CAM++",
    "box_all": "content-free box",
}


def setting_key(candidate: dict) -> tuple:
    """A candidate's setting, hashable and in a stable order."""
    return (candidate["epochs"], candidate["threshold"], str(candidate["gate"]), candidate["largest_component"])


def describe(key: tuple) -> str:
    epochs, threshold, gate, largest = key
    keep = "the agent's slices" if gate == "rlsp" else f"gate >= {gate}"
    return f"epoch {epochs}, p > {threshold}, {keep}{', largest component' if largest else ''}"


def load_runs(paths: list[Path], task: str) -> dict[str, list[dict]]:
    """Seed name (file stem) -> its folds that have a refinement record."""
    runs = {}
    for path in paths:
        folds = [f for k, f in sorted(json.loads(path.read_text()).items()) if k.startswith(f"{task}/")]
        missing = [f["fold"] for f in folds if "refinement" not in f or "candidates" not in f["refinement"]]
        if missing or not folds:
            raise SystemExit(f"error: {path}: folds {missing or 'none'} have no refinement candidates "
                             "(run benchmarks/cohort.py --refine)")  # fmt: skip
        runs[path.stem] = folds
    return runs


def study(runs: dict[str, list[dict]], top: int) -> dict:
    """Pooled validation ranking of every setting and the held-out Dice of plain, boxes and the best settings."""
    val, test = defaultdict(list), defaultdict(lambda: defaultdict(dict))
    for seed, folds in runs.items():
        for fold in folds:
            for c in fold["refinement"]["candidates"]:
                key = setting_key(c)
                val[key] += list(c["val"].values())
                test[key][seed] |= c["test"]
    ranked = sorted(val, key=lambda k: (-float(np.mean(val[k])), k))
    per_seed = lambda dice: {s: float(np.mean(list(d.values()))) for s, d in dice.items()}  # noqa: E731
    rows = {}
    for row in ROWS:
        rows[row] = per_seed({s: {p: v for f in folds for p, v in f["dice"][row].items()} for s, folds in runs.items()})
    settings = [{"setting": describe(k), "key": list(k), "val": float(np.mean(val[k])), "n_val": len(val[k]),
                 "test": per_seed(test[k])} for k in ranked[:top]]  # fmt: skip
    plain_val = float(np.mean([f["refinement"]["val"]["rlsp"] for folds in runs.values() for f in folds]))
    chosen = [{s: f["refinement"]["chosen"] for s, folds in runs.items() for f in folds if f["fold"] == i}
              for i in sorted({f["fold"] for folds in runs.values() for f in folds})]  # fmt: skip
    return {"rows": rows, "settings": settings, "plain_val_mean_of_folds": plain_val, "per_fold_choices": chosen,
            "candidates": len(val)}


def markdown(result: dict, name: str, header: str) -> str:
    seeds = list(result["rows"]["rlsp"])
    mean = lambda d: float(np.mean(list(d.values())))  # noqa: E731
    box = result["rows"]["box_all"]
    lines = [f"# {name}: one refiner setting, chosen on pooled validation patients", "", header, "",
             "Mean held-out 3D Dice over the cohort's patients, per seed (each patient is held out once per seed):", "",
             "| row | " + " | ".join(seeds) + " | mean | mean - content-free box |",
             "|---|" + "---:|" * (len(seeds) + 2)]  # fmt: skip

    def line(label: str, dice: dict) -> str:
        return (f"| {label} | " + " | ".join(f"{dice[s]:.3f}" for s in seeds)
                + f" | {mean(dice):.3f} | {mean(dice) - mean(box):+.3f} |")

    for row, label in ROWS.items():
        lines.append(line(label, result["rows"][row]))
    best = result["settings"][0]
    lines.append(line(f"**RLSP refined, one setting: {best['setting']}**", best["test"]))
    lines += ["", f"Settings ranked by mean validation Dice over all folds and seeds pooled "
              f"({best['n_val']} validation patient-runs; {result['candidates']} settings; plain RLSP's validation "
              f"Dice, the mean of the folds' means: {result['plain_val_mean_of_folds']:.3f}):", "",
              "| setting | validation Dice | held-out Dice (mean of seeds) |", "|---|---:|---:|"]  # fmt: skip
    for s in result["settings"]:
        lines.append(f"| {s['setting']} | {s['val']:.4f} | {mean(s['test']):.3f} |")
    lines += ["", "Per-fold picks (the nested row), per seed:", ""]
    for i, choices in enumerate(result["per_fold_choices"]):
        lines.append(f"- fold {i}: " + "; ".join(
            f"{s}: epoch {c['epochs']}, p > {c['threshold']}, gate {c['gate']}, largest {c['largest_component']}"
            for s, c in choices.items()))  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("partials", nargs="+", type=Path, help="per-fold files of cohort.py --refine, one per seed")
    ap.add_argument("--task", default="prostate")
    ap.add_argument("--name", default="refine_study")
    ap.add_argument("--top", type=int, default=12, help="settings listed")
    ap.add_argument("--header", default="", help="a line on how the runs were made (commit, commands)")
    args = ap.parse_args(argv)
    result = study(load_runs(args.partials, args.task), args.top)
    result["meta"] = {"partials": [str(p) for p in args.partials], "task": args.task}
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{args.name}.md").write_text(markdown(result, args.name, args.header))
    print((RESULTS / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
