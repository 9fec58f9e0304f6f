"""Which patches, and how many? A study of agent a's picks and stops on the cohort's folds, without retraining.

Alone at inference, agent a's picks do not depend on when it stops (the board changes only by its own picks), so
one deterministic game per slice played to the end of the board gives the agent's whole ranking of the patches and
its P(terminate) at every step: every stopping rule is a cut of that ranking, and any other ranking (the game
score, the position prior, the distance to the centre) can be cut at the same counts. ``benchmarks/cohort.py
--dump DIR`` writes each fold's rankings with the slice gate, the scores, the position prior, the region and the
masks of the validation and test patients (masks only for scoring); this script compares, per fold:

* **rankings** at the reference's patch count on each slice (an oracle stop that reads masks: which ranking finds
  the organ, whatever the stop) and at one fixed count on the slices the gate calls positive (count and gate
  picked on validation): the agent's, the game score's, the detector's MIL cells, the learned position prior (the
  contrast map, and its fitted Gaussian), the distance to the centre of the field of view, and local evidence x
  the Gaussian prior;
* **stopping rules** of the agent's own ranking, each knob picked on the fold's validation patients: the quantile of
  its stopping time (the bundle's rule, at the bundle's quantile and picked), the counts median-filtered along the
  patient's slices with the slice gate, the volume stop of ``medwss.inference.volume_stop`` (that plus only the
  longest run of gated slices; picked, and at ``--bundle``'s settings), and the mean of the agent's count and the
  game-score rule's count.

    .venv/bin/python benchmarks/cohort.py --only N --seed S --dump /tmp/dump_sS ...   # each fold, each seed
    .venv/bin/python benchmarks/stop_study.py /tmp/dump_s0 /tmp/dump_s1 --name NAME   # one DIR per seed

Results: ``benchmarks/results/NAME.{md,json}``: 3D Dice on the 128 x 128 working grid, per held-out patient,
mean over the cohort's patients for each seed and over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from medwss.detector.scoring import gaussian_fit
from medwss.inference.volume_stop import (
    VolumeStop,
    median_along_slices,
    quantile_counts,
    threshold_counts,
    volume_rows,
)
from medwss.inference.volume_stop import cut_ranking as cut
from medwss.metrics.patches import patch_labels
from medwss.selfplay.rollout import agent_ranking

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
QUANTILES = (0.5, 0.6, 0.7, 0.8, 0.9)
WIDTHS = (1, 3, 5)
GATES = (0.0, 0.3, 0.5, 0.7)
COUNTS = (20, 24, 28, 32, 36, 44)
VOLUME_STOPS = [VolumeStop(w, g, run) for w in (1, 3, 5, 7, 9) for g in (0.3, 0.5, 0.7) for run in (False, True)]
"""Volume stops (``inference.volume_stop``) tried after each quantile: the counts' median width, the gate, one run."""
RULE_QUANTILES = (0.8, 0.9, 0.95)
LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.2)
"""Stop levels of the "threshold" rule tried, as fractions of the game's ROI threshold (1 = the game's own test);
with ``WIDTHS`` also the candidates of ``cohort.py``'s ``rlsp_threshold_picked`` row."""


def dump_fold(path: Path, *, policy, rules, features, scored, gate, regions, truth, patients, rows, grid: int,
              extra_scores: dict[str, torch.Tensor] | None = None, solo_counts: torch.Tensor | None = None,
              stop_quantile: float = 0.5, prior: torch.Tensor | None = None, stopping: str = "quantile",
              stop_level: float = 1.0, count_width: int = 1) -> None:
    """Write one fold's rankings and everything a stopping rule may read, for the validation and test rows
    (``stopping``: the bundle's rule, which decides the study's rows; the game's ROI threshold, the bundle's
    ``stop_level`` and its volume stop's ``count_width`` for the "threshold" rule: ``solo_counts`` were played
    with them)."""
    va, te = rows
    idx = (va | te).nonzero().squeeze(1)
    order, p_stop = agent_ranking(policy, features[idx], scored.scores[idx], scored.region[idx], rules)
    torch.save({
        "order": order, "p_stop": p_stop, "gate": gate[idx], "legal": scored.region[idx],
        "scores": scored.scores[idx], "region": None if regions is None else regions[idx].bool(),
        "truth": truth[idx].bool(), "patients": [patients[i] for i in idx.tolist()],
        "is_test": te[idx], "grid": grid, "solo_counts": solo_counts, "stop_quantile": stop_quantile,
        "prior": prior, "extra_scores": {k: v[idx] for k, v in (extra_scores or {}).items()},
        "stopping": stopping, "roi_threshold": float(rules.roi_threshold), "stop_level": float(stop_level),
        "count_width": int(count_width),
    }, path)  # fmt: skip


# ----------------------------------------------------------------------------------------------------- cuts
def ranking(scores: torch.Tensor, legal: torch.Tensor) -> torch.Tensor:
    """(B, G*G) patch indices by decreasing score, illegal patches as -1 at the end."""
    order = torch.where(legal, scores, -torch.inf).argsort(dim=1, descending=True, stable=True)
    return torch.where(legal.gather(1, order), order, -1)


def smooth_along_patient(counts: torch.Tensor, patients: list[str], width: int) -> torch.Tensor:
    """Median of each slice's count with its neighbours', within each patient (``volume_stop.median_along_slices``;
    rows are in slice order within a patient)."""
    out = counts.clone()
    for rows in volume_rows(len(counts), patients):
        out[rows] = median_along_slices(counts[rows], width)
    return out


def dice3d(pred: torch.Tensor, truth: torch.Tensor, patients: list[str]) -> dict[str, float]:
    out, pats = {}, np.array(patients)
    for p in dict.fromkeys(patients):
        m = torch.as_tensor(pats == p)
        a, b = pred[m], truth[m]
        total = int(a.sum()) + int(b.sum())
        out[p] = 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total
    return out


def fold_prior(fold: dict) -> torch.Tensor:
    """The fold's learned position prior (G*G,): dumped, or read back from score = local x prior x gate."""
    if fold.get("prior") is not None:
        return fold["prior"].flatten().float()
    local, gate, game = fold["extra_scores"]["local"].flatten(1), fold["gate"], fold["scores"].flatten(1)
    den = local * gate[:, None]
    ok = (den > 0.05) & (game < 0.999) & fold["legal"].flatten(1)
    ratio = torch.where(ok, game / den.clamp(min=1e-6), torch.nan)
    return torch.nanmedian(ratio, dim=0).values.nan_to_num(0.0)


# ----------------------------------------------------------------------------------------------------- one fold
def fold_metrics(fold: dict):
    """``dice(ranking, counts, rows)``: per patient 3D Dice of a ranking cut at per-slice counts on these rows (on the
    working grid, inside the region); ``picked(candidates)``: the test Dice of the candidate counts whose validation
    Dice is best, and its key."""
    g, order, truth, region, pats = fold["grid"], fold["order"], fold["truth"], fold["region"], fold["patients"]
    size, t = truth.shape[-1], order.shape[1]
    test = fold["is_test"].bool()

    def dice(o, counts, rows):
        px = cut(o[rows][:, :t], counts[rows], g)
        px = px.repeat_interleave(size // g, 1).repeat_interleave(size // g, 2)
        if region is not None:
            px &= region[rows]
        return dice3d(px, truth[rows], [pats[i] for i in rows.nonzero().squeeze(1).tolist()])

    def picked(candidates: dict, o=order):
        best = max(candidates, key=lambda k: mean_of(dice(o, candidates[k], ~test)))
        return dice(o, candidates[best], test), best

    return dice, picked


def mean_of(per_patient: dict[str, float]) -> float:
    return float(np.mean(list(per_patient.values())))


def hysteresis_counts(order: torch.Tensor, scores: torch.Tensor, grid: int, high: float, low: float) -> torch.Tensor:
    """Patches agent a takes when its next pick must score >= ``high``, or >= ``low`` and touch (4-neighbours) a
    patch it has taken: a tumour is one compact blob, so its rim, which a patch shares with the liver, may score less
    than its core. (B, T) ranking, (B, G*G) scores -> (B,) counts."""
    n, steps = order.shape
    taken = torch.zeros(n, grid + 2, grid + 2, dtype=torch.bool)  # padded board: neighbours need no bounds checks
    counts = torch.zeros(n, dtype=torch.long)
    live = torch.ones(n, dtype=torch.bool)
    rows = torch.arange(n)
    for t in range(steps):
        if not bool(live.any()):
            break
        pick = order[:, t]
        score = scores.gather(1, pick.clamp(min=0)[:, None])[:, 0]
        r, c = pick.clamp(min=0) // grid + 1, pick.clamp(min=0) % grid + 1
        touches = taken[rows, r - 1, c] | taken[rows, r + 1, c] | taken[rows, r, c - 1] | taken[rows, r, c + 1]
        ok = live & (pick >= 0) & ((score >= high) | ((score >= low) & touches))
        taken[rows[ok], r[ok], c[ok]] = True
        counts += ok.long()
        live &= ok
    return counts


def analyse_threshold(fold: dict) -> dict:
    """The study for a bundle that stops by the game's threshold (the liver tumour's): per test patient 3D Dice of
    agent a's ranking cut by the threshold rule at several levels (fractions of the game's ROI threshold), the
    counts median-filtered along each patient's slices, and references (the game score's rule at the same levels,
    both rankings at the reference's counts); knobs picked on the fold's validation patients."""
    order, truth, pats = fold["order"], fold["truth"], fold["patients"]
    g, test = fold["grid"], fold["is_test"].bool()
    legal, scores, threshold = fold["legal"].flatten(1), fold["scores"].flatten(1), fold["roi_threshold"]
    dice, picked = fold_metrics(fold)
    counts = {lv: threshold_counts(order, scores, lv * threshold) for lv in LEVELS}
    level, width = fold.get("stop_level", 1.0), fold.get("count_width", 1)
    shipped = smooth_along_patient(threshold_counts(order, scores, level * threshold), pats, width)
    if fold.get("solo_counts") is not None:  # the cut must be the game the cohort played with the bundle's settings
        played = fold["solo_counts"].to(shipped.dtype)
        if not torch.equal(played, shipped[test]):
            differ = int((played != shipped[test]).sum())
            raise ValueError(f"the threshold cut differs from the played games on {differ} test slices")
    out: dict[str, dict[str, float]] = {}
    picks: dict[str, object] = {}
    out["stop: the game's ROI threshold (level 1)"] = dice(order, counts[1.0], test)
    out[f"stop: the bundle's (level {level}, counts median width {width})"] = dice(order, shipped, test)
    out["stop: threshold level, picked"], picks["level"] = picked(counts)
    smoothed = {(lv, w): smooth_along_patient(counts[lv], pats, w) for lv in LEVELS for w in WIDTHS}
    out["stop: threshold level, counts median along slices, picked"], picks["smoothed"] = picked(smoothed)
    grow = {(hi, lo): hysteresis_counts(order, scores, g, hi * threshold, lo * threshold)
            for hi in LEVELS for lo in LEVELS if lo < hi}
    out["stop: threshold level, lower level beside taken patches, picked"], picks["hysteresis"] = picked(grow)
    score_order = ranking(scores, legal)
    rule = {lv: ((scores >= lv * threshold) & legal).sum(1) for lv in LEVELS}
    out["reference: score rule (all patches >= level), level picked"], picks["rule"] = picked(rule, score_order)
    rule_smoothed = {(lv, w): smooth_along_patient(c, pats, w) for lv, c in rule.items() for w in WIDTHS}
    out["reference: score rule, counts median along slices, picked"], picks["rule smoothed"] = picked(
        rule_smoothed, score_order)
    labels = patch_labels(truth, g).flatten(1)
    true_counts = labels.sum(1)
    on = test & (true_counts > 0)  # test slices with ROI: how often is each ranking's first pick an ROI patch?
    share = lambda o: float(labels[on].gather(1, o[on, :1].clamp(min=0)).float().mean())  # noqa: E731
    picks["first pick on ROI, agent / score"] = f"{share(order):.2f} / {share(score_order):.2f}"
    out["oracle count: agent a (RLSP)"] = dice(order, true_counts, test)
    out["oracle count: game score"] = dice(score_order, true_counts, test)
    fixed = {f"level {lv}, width {w}": {"val": dice(order, c, ~test), "test": dice(order, c, test)}
             for (lv, w), c in smoothed.items()}
    fixed |= {f"level {hi}, beside taken {lo}": {"val": dice(order, c, ~test), "test": dice(order, c, test)}
              for (hi, lo), c in grow.items()}
    return {"dice": out, "picks": {k: str(v) for k, v in picks.items()}, "fixed_volume": fixed}


def analyse(fold: dict, bundle: tuple[float, VolumeStop] | None = None) -> dict:
    """Per test patient 3D Dice of every ranking and stopping rule of one fold (knobs picked on validation);
    ``bundle``: a fixed (stop quantile, volume stop) to report as well."""
    g, order, p_stop, truth = fold["grid"], fold["order"], fold["p_stop"], fold["truth"]
    gate, pats = fold["gate"], fold["patients"]
    test = fold["is_test"].bool()
    val = ~test
    legal = fold["legal"].flatten(1)
    n = order.shape[0]
    dice, picked = fold_metrics(fold)

    rows_, cols_ = torch.meshgrid(torch.arange(g).float(), torch.arange(g).float(), indexing="ij")
    centre = -((rows_ - (g - 1) / 2) ** 2 + (cols_ - (g - 1) / 2) ** 2).flatten()
    prior = fold_prior(fold)
    gauss = gaussian_fit(prior.view(g, g)).flatten()
    local = fold["extra_scores"]["local"].flatten(1)
    rankings = {
        "agent a (RLSP)": order,
        "game score (local x prior x gate)": ranking(fold["scores"].flatten(1), legal),
        "detector MIL cells": ranking(fold["extra_scores"]["mil"].flatten(1), legal),
        "learned prior (contrast map)": ranking(prior[None].expand(n, -1), legal),
        "learned prior, Gaussian fit": ranking(gauss[None].expand(n, -1), legal),
        "distance to the centre (content-free)": ranking(centre[None].expand(n, -1), legal),
        "local x Gaussian prior": ranking(local.clamp(min=1e-6).log() + gauss.clamp(min=1e-9).log(), legal),
    }
    true_counts = patch_labels(truth, g).flatten(1).sum(1)
    fixed = {(k, gt): torch.where(gate >= gt, k, 0) for k in COUNTS for gt in GATES}
    out: dict[str, dict[str, float]] = {}
    picks: dict[str, object] = {}
    for name, o in rankings.items():
        out[f"oracle count: {name}"] = dice(o, true_counts, test)
        out[f"fixed count, gated: {name}"], picks[f"fixed: {name}"] = picked(fixed, o)
    counts = {q: quantile_counts(p_stop, order, q) for q in QUANTILES}
    out["stop: quantile at the bundle's"] = dice(order, quantile_counts(p_stop, order, fold["stop_quantile"]), test)
    out["stop: quantile, picked"], picks["quantile"] = picked(counts)
    smoothed = {(q, w, gt): torch.where(gate >= gt, smooth_along_patient(counts[q], pats, w), 0)
                for q in QUANTILES for w in WIDTHS for gt in GATES}
    out["stop: quantile, median along slices, gated"], picks["smoothed"] = picked(smoothed)
    volume = {(q, vs): vs.counts(counts[q], gate, pats) for q in QUANTILES for vs in VOLUME_STOPS}
    out["stop: volume stop (median, gate, one run), picked"], picks["volume"] = picked(volume)
    # Every fixed volume stop on the validation and test patients: one setting for every fold is chosen on the
    # validation columns pooled over folds and seeds (how the bundle's was), never on the test columns.
    fixed_volume = {volume_key(q, vs): {"val": dice(order, c, val), "test": dice(order, c, test)}
                    for (q, vs), c in volume.items()}
    if bundle is not None:
        q, vs = bundle
        out["stop: volume stop at the bundle's"] = dice(order, vs.counts(quantile_counts(p_stop, order, q), gate, pats),
                                                        test)
    game = torch.where(legal, fold["scores"].flatten(1), -1.0)
    blend = {}
    for rq in RULE_QUANTILES:
        threshold = float(torch.quantile(game[val][legal[val]].float(), rq))
        rule = (game > threshold).sum(1)
        for q in QUANTILES:
            blend[(q, rq)] = ((counts[q] + rule) / 2).round().long()
    out["stop: mean of the quantile count and the score rule's count"], picks["blend"] = picked(blend)
    return {"dice": out, "picks": {k: str(v) for k, v in picks.items()}, "fixed_volume": fixed_volume}


def volume_key(quantile: float, stop: VolumeStop) -> str:
    return f"quantile {quantile}, width {stop.count_width}, gate {stop.gate}, one run {'yes' if stop.one_run else 'no'}"


def fixed_volume_table(means: dict[str, dict[str, float]], top: int = 12) -> list[str]:
    """The fixed volume stops ranked by validation Dice pooled over every fold and seed (``main``'s means)."""
    ranked = sorted(means, key=lambda k: -means[k]["val"])
    lines = ["", "One volume stop for every fold: each setting's mean Dice over the validation patients of all folds "
             f"and seeds (how a bundle's setting is chosen), and over the held-out patients; the top {top} by "
             "validation:",
             "", "| setting | validation | held-out |", "|---|---:|---:|"]
    lines += [f"| {k} | {means[k]['val']:.4f} | {means[k]['test']:.4f} |" for k in ranked[:top]]
    return lines


# ----------------------------------------------------------------------------------------------------- report
def markdown(result: dict, name: str) -> str:
    seeds = result["seeds"]
    lines = [f"# {name}: which patches, and how many ({result.get('task', 'prostate')} cohort, held-out patients)", "",
             result.get("header", ""), "",
             "3D Dice on the 128 x 128 working grid, mean over the held-out patients of all folds (each patient is "
             "held out once per seed). Knobs (fixed count, gate, quantile, filter width) are picked on each fold's "
             "validation patients; rows marked *oracle count* read the test masks for the count only.", ""]
    head = "| row | " + " | ".join(f"seed {s}" for s in seeds) + " | mean |"
    lines += [head, "|---|" + "---:|" * (len(seeds) + 1)]
    for row in result["rows"]:
        vals = [result["summary"][str(s)][row] for s in seeds]
        lines.append(f"| {row} | " + " | ".join(f"{v:.3f}" for v in vals) + f" | **{np.mean(vals):.3f}** |")
    lines += ["", "Picks per fold (seed, fold: pick):", ""]
    for key, picks in result["picks"].items():
        lines.append(f"- {key}: " + "; ".join(f"{k} {v}" for k, v in picks.items()))
    if result.get("fixed_volume"):
        lines += fixed_volume_table(result["fixed_volume"])
    return "\n".join(lines) + "\n"


def bundle_volume_stop(bundle: Path) -> tuple[float, VolumeStop]:
    """A bundle's (stop quantile, volume stop), read from its inference.yaml without building anything."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(bundle / "configs" / "inference.yaml")
    return float(parser.get("inferer#stop_quantile", 0.5)), VolumeStop(**(parser.get("inferer#volume_stop") or {}))


def write_results(name: str, result: dict, text: str) -> None:
    """``results/NAME.json`` and ``results/NAME.md`` of a study of the cohort dumps; the report is printed too."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{name}.md").write_text(text)
    print(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path, help="one --dump folder per seed")
    ap.add_argument("--name", default="stop_study", help="results/NAME.{md,json}")
    ap.add_argument("--header", default="", help="a line under the title: what the runs were")
    ap.add_argument("--task", default="prostate", help="the cohort's task, for the title")
    ap.add_argument("--bundle", type=Path, default=None,
                    help="also report this bundle's inferer#stop_quantile and inferer#volume_stop")
    args = ap.parse_args(argv)
    bundle = None if args.bundle is None else bundle_volume_stop(args.bundle)
    per_seed: dict[str, dict[str, dict[str, float]]] = {}
    picks: dict[str, dict[str, str]] = {}
    rows: list[str] = []
    pooled: dict[str, dict[str, dict[str, float]]] = {}
    for seed, d in enumerate(args.dirs):
        merged: dict[str, dict[str, float]] = {}
        for f in sorted(d.glob("fold*.pt")):
            fold = torch.load(f, weights_only=False)
            res = analyse_threshold(fold) if fold.get("stopping") == "threshold" else analyse(fold, bundle)
            for row, per_patient in res["dice"].items():
                merged.setdefault(row, {}).update(per_patient)
                rows += [row] if row not in rows else []
            picks[f"{d.name} {f.stem}"] = res["picks"]
            for key, parts in res["fixed_volume"].items():
                for part, per_patient in parts.items():
                    pooled.setdefault(key, {"val": {}, "test": {}})[part].update(
                        {f"{d.name} {f.stem} {p}": v for p, v in per_patient.items()})
            print(d.name, f.stem, {k: round(float(np.mean(list(v.values()))), 3) for k, v in res["dice"].items()},
                  flush=True)
        per_seed[str(seed)] = {row: float(np.mean(list(v.values()))) for row, v in merged.items()}
    result = {"seeds": list(range(len(args.dirs))), "dirs": [str(d) for d in args.dirs], "rows": rows,
              "summary": per_seed, "picks": {"by fold": {k: v for k, v in picks.items()}}, "header": args.header,
              "task": args.task,
              "fixed_volume": {k: {part: float(np.mean(list(v[part].values()))) for part in ("val", "test")}
                               for k, v in pooled.items()}}
    result["picks"] = {key: {fold: p[key] for fold, p in picks.items()} for key in next(iter(picks.values()))}
    write_results(args.name, result, markdown(result, args.name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
