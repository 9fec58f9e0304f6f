"""Self-play benchmark (issue #5): game and PPO speed, the bundles' self-play stage, and the agents' mask Dice.

* Game steps per second (one step = one agent action in one game) of the batched engine with uniformly random legal
  moves (whole games, G = 16, B in 1/64/1024) and of the PettingZoo AEC wrapper on the same rules, torch threads 1
  and 2 (median of repeats; the players are `benchmarks/game_speed.py`'s).
* PPO updates per second (one update = one optimizer step on a full minibatch) for the policy of the prostate
  bundle's `train_selfplay.yaml`, on a rollout of random features and scores (speed does not depend on them).
* Wall time of `medwss train BUNDLE --stage selfplay` (a subprocess, the stage's own torch thread setting) for the
  prostate and liver-tumour bundles, run on a copy of the bundle (configs + the shipped `models/detector.pt`) so the
  shipped `models/model.pt` is left alone.
* 2D mask Dice on validation slices of the freshly trained agent (agent a alone), of the single agent that stops
  below a 0.8 detector score, of the oracle patch mask (patches >= 50 % ROI) and of the empty mask, on the bundles'
  validation slices (the detector stage's patient split) and on the synthetic bright-square task of
  `medwss.selfplay.synthetic` (a perfect detector), where the opponent sampling modes are also compared over seeds.

    .venv/bin/python benchmarks/selfplay.py [--data-dir ../shared/data] [--quick] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from detector import git_state, write  # shared report plumbing of benchmarks/detector.py
from game_speed import engine_whole_games, pettingzoo_games

from medwss.agents.encoders import RandomConvEncoder
from medwss.agents.inputs import observation_base
from medwss.agents.policy import AgentPolicy
from medwss.agents.ppo import compute_returns
from medwss.agents.threshold import threshold_segment
from medwss.bundle.selfplay_stage import SELFPLAY_KEYS, game_rules, load_detector, slice_inputs
from medwss.bundle.stages import stage_slices, training_regions
from medwss.data.splits import patient_split
from medwss.detector.features import DetectorEncoder
from medwss.metrics.patches import patch_labels, patches_to_pixels
from medwss.runtime.checkpoint import FINAL, load_checkpoint
from medwss.runtime.config import load_config, parsed, stage_config_file
from medwss.runtime.metric_log import MetricLog
from medwss.selfplay.baselines import patch_mask_dice
from medwss.selfplay.loop import SelfPlaySettings, ppo_update, train_selfplay
from medwss.selfplay.rollout import play_alone, play_selfplay_games
from medwss.selfplay.synthetic import synthetic_data

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BUNDLES = {"prostate": REPO / "bundles" / "prostate", "liver_tumour": REPO / "bundles" / "liver_tumour"}
THRESHOLD = 0.8
TARGETS = {"engine_steps_per_s": 100_000, "stage_seconds": 30 * 60}
SAMPLING = ("prioritised", "uniform", "vanilla")


# ================================================================================================ speed
def rate(play: Callable[[], int], min_seconds: float) -> float:
    """Steps per second over whole calls of `play` (it returns its steps) until `min_seconds` have passed."""
    steps, start = 0, time.perf_counter()
    while True:
        steps += play()
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return steps / elapsed


def game_speed(batches: list[int], threads: list[int], repeats: int, env_games: int, min_seconds: float) -> list[dict]:
    """Engine (whole games of random legal moves, per B) and PettingZoo wrapper steps/s, median of `repeats`."""
    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        cases = [("engine", b, lambda b=b: engine_whole_games(b, gen)) for b in batches]
        cases.append(("pettingzoo", 1, lambda: pettingzoo_games(env_games, rng)))
        for name, batch, play in cases:
            play()  # warm-up
            runs = [rate(play, min_seconds) for _ in range(repeats)]
            rows.append({"name": name, "batch": batch, "threads": t, "steps_per_s": statistics.median(runs),
                         "runs": runs, "load": os.getloadavg()[0]})  # fmt: skip
            logging.info("%s B=%d threads=%d: %.0f steps/s", name, batch, t, rows[-1]["steps_per_s"])
    return rows


def bundle_parser(bundle: Path, overrides: dict | None = None):
    """The self-play stage's layered config (common + detector + selfplay), as `medwss train` reads it."""
    files = [stage_config_file(bundle, s) for s in ("detector", "selfplay")]
    return load_config(bundle, files, overrides)


def bundle_settings(parser, **changes) -> SelfPlaySettings:
    """`SelfPlaySettings` of the bundle's ``selfplay`` sections with its seed, as the stage builds them; ``changes``
    by field name (`SelfPlaySettings.replace`)."""
    settings = SelfPlaySettings.from_config(parser["selfplay"], seed=int(parser["seed"]), node_keys=SELFPLAY_KEYS)
    return settings.replace(**changes)


def ppo_speed(bundle: Path, threads: list[int], repeats: int, games: int | None = None) -> list[dict]:
    """PPO updates/s of the bundle's policy; warm-up games (no TERMINATE, fixed length) fill every minibatch."""
    parser = bundle_parser(bundle)
    rules = game_rules(parser, roi_threshold=0.5)  # speed only: the threshold changes no work per step
    settings = bundle_settings(parser)
    g, b = rules.grid_size, games or settings.games_per_iteration
    channels = int(parsed(parser, "data").get("context", 0)) * 2 + 1
    gen = torch.Generator().manual_seed(0)
    ppo = settings.ppo
    if settings.policy.observation == "features":
        in_channels = DetectorEncoder(parsed(parser, "detector#network_def"), g).out_channels
        base = torch.randn(b, in_channels, g, g, generator=gen)
    else:
        in_channels, size = channels, g * settings.policy.pixels_per_patch
        base = torch.randn(b, in_channels, size, size, generator=gen)
    config = settings.policy.network_config(g, in_channels)
    scores, region = torch.rand(b, g, g, generator=gen), torch.ones(b, g, g, dtype=torch.bool)
    warm_rules = dataclasses.replace(rules, max_turns=settings.warmup_turns)
    rows = []
    for t in threads:
        torch.set_num_threads(t)
        torch.manual_seed(0)
        policy, opponent = AgentPolicy(**config), AgentPolicy(**config).requires_grad_(False)
        optimizer = torch.optim.Adam(policy.parameters(), lr=ppo.learning_rate, eps=1e-5)
        rng, runs, plays = np.random.default_rng(0), [], []
        for _ in range(repeats + 1):  # the first is a warm-up
            start = time.perf_counter()
            rollout = play_selfplay_games(policy, opponent, base, scores, region, warm_rules, gen,
                                          torch.arange(b) % 2, allow_termination=False)  # fmt: skip
            played = time.perf_counter() - start
            advantages, returns = compute_returns(rollout.rewards * ppo.reward_scale, rollout.values,
                                                  rollout.dones, rollout.valid, ppo.gamma, ppo.gae_lambda)
            start = time.perf_counter()
            stats = ppo_update(policy, optimizer, rollout, base, region, advantages, returns, ppo, rng)
            runs.append(stats["updates"] / (time.perf_counter() - start))
            plays.append(int(rollout.valid.sum()) / played)
        rows.append({"threads": t, "updates_per_s": statistics.median(runs[1:]), "runs": runs[1:],
                     "transitions": int(rollout.valid.sum()), "updates_per_iteration": int(stats["updates"]),
                     "rollout_learner_steps_per_s": statistics.median(plays[1:]), "policy": config,
                     "minibatch_size": ppo.minibatch_size, "games": b})  # fmt: skip
        logging.info("PPO threads=%d: %.1f updates/s", t, rows[-1]["updates_per_s"])
    return rows


# ================================================================================================ Dice
def mask_scores(patches: torch.Tensor, masks: torch.Tensor) -> dict[str, float]:
    """Dice of patch masks (M, G, G) vs reference masks (M, H, W): per-slice mean (an empty slice scores 1 when the
    prediction is empty too, as the training loop's val/dice), mean over ROI slices, and pooled over all slices."""
    masks = masks.bool()
    dice = patch_mask_dice(patches, masks)
    has_roi = masks.flatten(1).any(1)
    pixels = patches_to_pixels(patches.bool(), (masks.shape[-2], masks.shape[-1]))
    total = int(pixels.sum() + masks.sum())
    return {
        "dice_mean": float(dice.mean()),
        "dice_roi_slices": float(dice[has_roi].mean()) if bool(has_roi.any()) else math.nan,
        "dice_pooled": 2.0 * int((pixels & masks).sum()) / total if total else 1.0,
        "empty_predictions": float((~patches.flatten(1).any(1)).float().mean()),
        "patches_per_slice": float(patches.flatten(1).sum(1).float().mean()),
    }


def compare(agent: torch.Tensor, scores: torch.Tensor, region: torch.Tensor | None, masks: torch.Tensor,
            rules) -> dict[str, dict]:  # fmt: skip
    """Scores of the agent's patches and of the reference patch masks on the same slices."""
    g = rules.grid_size
    return {
        "agent": mask_scores(agent, masks),
        "threshold_0.8": mask_scores(threshold_segment(scores, region, THRESHOLD, rules), masks),
        "oracle": mask_scores(torch.as_tensor(patch_labels(masks.bool(), g, 0.5)).bool(), masks),
        "empty": mask_scores(torch.zeros(len(masks), g, g, dtype=torch.bool), masks),
    }


# ================================================================================================ bundles
def run_stage(bundle: Path, data_dir: Path, work: Path, iterations: int | None) -> tuple[Path, Path, dict]:
    """`medwss train COPY --stage selfplay` on a copy of the bundle; returns (copy, run dir, timing facts)."""
    copy, run_dir = work / bundle.name, work / "runs" / bundle.name
    shutil.copytree(bundle / "configs", copy / "configs")
    (copy / "models").mkdir(parents=True)
    shutil.copy2(bundle / "models" / "detector.pt", copy / "models" / "detector.pt")
    command = [str(Path(sys.executable).with_name("medwss")), "train", str(copy), "--stage", "selfplay",
               "--run-dir", str(run_dir), "--set", f"dataset_dir={data_dir}", "--no-progress", "--restart"]
    if iterations is not None:
        command += ["--set", f"selfplay#training#num_iterations={iterations}"]
    start, load = time.perf_counter(), os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    note = json.loads((copy / "models" / "policy.json").read_text())
    records = MetricLog(run_dir / "selfplay" / "metrics.jsonl").records()
    facts = {
        "command": " ".join(command), "wall_seconds": wall, "stage_seconds": note["metrics"]["seconds_this_run"],
        "iterations": note["metrics"]["iterations"], "train_slices": note["data"]["train_slices"],
        "val_slices": note["data"]["val_slices"], "val_patients": note["data"]["val_patients"],
        "iterations_seconds": sum(r["charts/iteration_s"] for r in records),
        "val_dice_curve": [[r["step"], r["val/dice"]] for r in records if r.get("val/dice") is not None],
        "num_threads": parser_threads(copy), "load_before_after": [load, os.getloadavg()[0]],
    }  # fmt: skip
    logging.info("%s stage: %.0f s wall", bundle.name, wall)
    return copy, run_dir, facts


def parser_threads(bundle: Path) -> int:
    """Torch threads the bundle's self-play stage sets for itself (``selfplay#num_threads``)."""
    return int(bundle_parser(bundle)["selfplay"].get("num_threads", 1))


def bundle_dice(copy: Path, run_dir: Path, data_dir: Path) -> dict:
    """Mask Dice on the stage's validation slices (its patient split; all slices when it holds none out)."""
    parser = bundle_parser(copy, {"dataset_dir": str(data_dir)})
    trained = json.loads((copy / "models" / "policy.json").read_text())["rules"]  # the threshold it trained with
    rules, g = game_rules(parser, roi_threshold=trained["roi_threshold"]), int(parser["grid_size"])
    detector = load_detector(parser, copy)
    slices = stage_slices(parser, with_masks=True, cache_dir=run_dir / "mask_cache")
    regions = training_regions(slices, str(parsed(parser, "data").get("region", "none")))
    val_fraction = float(parser["detector"]["val_fraction"])
    _, val_patients = patient_split(slices.patients, val_fraction, int(parser["seed"])) if val_fraction else ([], [])
    is_val = torch.tensor([p in set(val_patients) for p in slices.patients])
    held_out = bool(is_val.any())
    if not held_out:
        is_val = torch.ones(len(slices), dtype=torch.bool)  # as the stage: watch the training slices
    images, masks = slices.images[is_val], slices.masks[is_val, 0]
    scores, region = slice_inputs(detector, images, None if regions is None else regions[is_val], g)
    state = load_checkpoint(run_dir / "selfplay" / FINAL)
    policy = AgentPolicy(**state["policy_config"])
    policy.load_state_dict(state["policy"])
    policy.eval()
    encoder = DetectorEncoder(detector, g) if policy.observation == "features" else None
    base = observation_base(images, policy.observation, g, encoder=encoder, pixels_per_patch=policy.pixels_per_patch)
    agent = play_alone(policy, None, scores, region, rules, base=base)
    return {"held_out": held_out, "val_patients": val_patients, "slices": len(images),
            "roi_slices": int(masks.flatten(1).any(1).sum()), "scores": compare(agent, scores, region, masks, rules)}


# ================================================================================================ synthetic
def synthetic(
    parser, runs: list[tuple[str, int]], iterations: int, sizes: tuple[int, int, int], work: Path, **changes
) -> dict:
    """Self-play on bright squares (the detector = patch coverage) with the bundle's settings, per (sampling, seed).

    Args:
        changes: further `SelfPlaySettings` changes (the quick mode's smaller games).
    """
    train, val, size = sizes
    g = int(parser["grid_size"])
    rules = game_rules(parser, roi_threshold=0.5)  # the synthetic detector is patch coverage: calibrated as it is
    data = synthetic_data(train, val, size, g, seed=0)
    out: dict = {"train_slices": train, "val_slices": val, "size": size, "iterations": iterations, "runs": []}
    out["references"] = {k: v for k, v in compare(data.val_masks.new_zeros(val, g, g), data.val_scores, None,
                                                  data.val_masks, rules).items() if k != "agent"}  # fmt: skip
    torch.set_num_threads(1)
    for sampling, seed in runs:
        settings = bundle_settings(parser, seed=seed, opponent_sampling=sampling, num_iterations=iterations,
                                   checkpoint_every=iterations, eval_every=max(1, iterations // 6),
                                   **changes)  # fmt: skip
        encoder = RandomConvEncoder(data.images.shape[1], g, seed=seed)  # the loop's default, kept for evaluation
        start = time.perf_counter()
        policy = train_selfplay(data, rules, settings, work / f"synthetic_{sampling}_{seed}", restart=True,
                                encoder=encoder)  # fmt: skip
        seconds = time.perf_counter() - start
        base = observation_base(data.val_images, settings.policy.observation, g, encoder=encoder,
                                pixels_per_patch=settings.policy.pixels_per_patch)  # fmt: skip
        agent = play_alone(policy, None, data.val_scores, None, rules, base=base)
        records = MetricLog(work / f"synthetic_{sampling}_{seed}" / "metrics.jsonl").records()
        curve = [[r["step"], r["val/dice"]] for r in records if "val/dice" in r]
        scores = mask_scores(agent, data.val_masks)
        out["runs"].append({"sampling": sampling, "seed": seed, "seconds": seconds, **scores, "val_dice_curve": curve,
                            "load": os.getloadavg()[0]})  # fmt: skip
        logging.info("synthetic %s seed %d: Dice %.3f (%.0f s)", sampling, seed, out["runs"][-1]["dice_mean"], seconds)
    stored = settings.to_config()
    stored["training"]["seed"] = None  # one entry per seed above
    out["observation"], out["settings"] = settings.policy.observation, stored
    return out


def sampling_summary(runs: list[dict], threshold: float) -> dict[str, dict]:
    """Median and spread of the final Dice over seeds, per opponent sampling mode."""
    out = {}
    for mode in SAMPLING:
        dice = [r["dice_mean"] for r in runs if r["sampling"] == mode]
        if dice:
            out[mode] = {"seeds": [r["seed"] for r in runs if r["sampling"] == mode], "dice": dice,
                         "median": statistics.median(dice), "min": min(dice), "max": max(dice),
                         "beats_threshold": sum(d > threshold for d in dice)}  # fmt: skip
    return out


# ================================================================================================ report
def targets(result: dict) -> list[dict]:
    """The issue's three targets, each with the measured value, met or missed, and the margin."""
    rows = []
    engine = [r for r in result["game_speed"] if r["name"] == "engine"]
    if engine:
        best = max(engine, key=lambda r: r["steps_per_s"])
        two = max((r for r in engine if r["threads"] == 2), key=lambda r: r["steps_per_s"], default=best)
        rows.append({"target": "engine >= 100,000 steps/s (G = 16, random legal moves) on 2 CPU cores",
                     "value": best["steps_per_s"], "unit": "steps/s",
                     "met": best["steps_per_s"] >= TARGETS["engine_steps_per_s"],
                     "by": best["steps_per_s"] / TARGETS["engine_steps_per_s"],
                     "detail": f"best B={best['batch']}, torch threads {best['threads']}; with 2 threads best "
                               f"{two['steps_per_s']:,.0f} at B={two['batch']}"})  # fmt: skip
    stage = result["bundles"].get("prostate", {}).get("stage")
    if stage:
        rows.append({"target": "prostate self-play stage < 30 min on 2 CPU cores", "value": stage["wall_seconds"],
                     "unit": "s",
                     "met": stage["wall_seconds"] < TARGETS["stage_seconds"],
                     "by": stage["wall_seconds"] / TARGETS["stage_seconds"],
                     "detail": f"{stage['iterations']} iterations, torch threads {stage['num_threads']}"})
    for task, entry in result["bundles"].items():
        s = entry["dice"]["scores"]
        where = "validation slices" if entry["dice"]["held_out"] else "training slices (no patient held out)"
        pooled = f"; pooled Dice {s['agent']['dice_pooled']:.3f} vs {s['threshold_0.8']['dice_pooled']:.3f}"
        rows.append(beats(f"{task}: agent Dice > 0.8-threshold baseline", s["agent"]["dice_mean"],
                          s["threshold_0.8"]["dice_mean"], f"mean slice Dice on {where}{pooled}"))  # fmt: skip
    if result.get("synthetic"):
        syn = result["synthetic"]
        prio = syn["sampling"].get("prioritised")
        if prio:
            rows.append(beats("synthetic: agent Dice > 0.8-threshold baseline", prio["median"],
                              syn["references"]["threshold_0.8"]["dice_mean"],
                              f"median of seeds {prio['seeds']} (prioritised)"))  # fmt: skip
    return rows


def beats(target: str, agent: float, baseline: float, detail: str) -> dict:
    return {"target": target, "value": agent, "baseline": baseline, "met": agent > baseline, "by": agent - baseline,
            "detail": detail}


def fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def dice_table(title: str, scores: dict[str, dict]) -> list[str]:
    lines = [f"| {title} | mean slice Dice | Dice on ROI slices | pooled Dice | empty masks | patches/slice |"]
    lines.append("|---|---:|---:|---:|---:|---:|")
    for name, s in scores.items():
        lines.append(f"| {name} | {fmt(s['dice_mean'])} | {fmt(s['dice_roi_slices'])} | {fmt(s['dice_pooled'])} | "
                     f"{s['empty_predictions']:.0%} | {s['patches_per_slice']:.1f} |")
    return lines


def markdown(result: dict) -> str:
    meta = result["meta"]
    load = "/".join(f"{v:.1f}" for v in meta["load_average_before_after"])
    lines = [f"# Self-play benchmark{' (QUICK smoke run, not the committed numbers)' if meta['quick'] else ''}", "",
             f"Commit {meta['git_commit']}{' (uncommitted changes)' if meta['git_dirty'] else ''}; torch "
             f"{meta['torch']}, {meta['cpu_count']} CPU cores ({meta['machine']}), 1-min load average before/after "
             f"{load}. The machine was shared with other jobs (other helpers' training) during the run, so speeds are "
             f"lower bounds and times upper bounds. Total run time {meta['total_seconds'] / 60:.1f} min.", "",
             "## Targets (issue #5)", "", "| target | measured | baseline | met | by | detail |",
             "|---|---:|---:|---|---:|---|"]  # fmt: skip
    for t in result["targets"]:
        value = f"{t['value']:,.0f} {t['unit']}" if "unit" in t else fmt(t["value"])
        by = f"{t['by']:.2f}x" if "baseline" not in t else f"{t['by']:+.3f}"
        lines.append(f"| {t['target']} | {value} | {fmt(t.get('baseline'))} | {'met' if t['met'] else 'MISSED'} | "
                     f"{by} | {t['detail']} |")
    speed = result["game_speed"]
    lines += ["", f"## Game steps per second (G = 16, uniformly random legal moves, whole games, median of "
              f"{meta['repeats']} repeats of >= {meta['min_seconds']} s)", "",
              "One step = one agent action in one game. Players of `benchmarks/game_speed.py`; the PettingZoo wrapper "
              "(`medwss.game.env.PatchGameEnv`, AEC, one game) picks uniformly among `action_mask` like the engine's "
              "player. Ratio = engine at that B / wrapper, same thread count.", "",
              "| measure | B | torch threads | steps/s | engine / wrapper | 1-min load |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in speed:
        env = next(e for e in speed if e["name"] == "pettingzoo" and e["threads"] == r["threads"])
        ratio = f"{r['steps_per_s'] / env['steps_per_s']:.0f}x" if r["name"] == "engine" else "1x"
        name = "batched engine" if r["name"] == "engine" else "PettingZoo AEC wrapper"
        lines.append(f"| {name} | {r['batch']} | {r['threads']} | {r['steps_per_s']:,.0f} | {ratio} | "
                     f"{r['load']:.1f} |")
    ppo = result["ppo_speed"]
    p = ppo[0]["policy"]
    lines += ["", "## PPO updates per second (prostate bundle policy)", "",
              f"Policy of `bundles/prostate/configs/train_selfplay.yaml`: observation {p['observation']} "
              f"({p['in_channels']} input channels + state planes at {p['grid_size']} x {p['grid_size']}), width "
              f"{p['channels']}, {p['num_res_units']} residual unit(s); one update = one Adam step on "
              f"{ppo[0]['minibatch_size']} learner transitions (observations rebuilt from the stored game state, "
              f"forward, backward, clip). Rollout: {ppo[0]['games']} warm-up games (no TERMINATE, fixed length), "
              f"{ppo[0]['transitions']} learner transitions, {ppo[0]['updates_per_iteration']} updates per iteration; "
              f"median of {len(ppo[0]['runs'])} iterations.", "",
              "| torch threads | PPO updates/s | rollout, learner steps/s |", "|---:|---:|---:|"]
    lines += [f"| {r['threads']} | {r['updates_per_s']:.1f} | {r['rollout_learner_steps_per_s']:,.0f} |" for r in ppo]
    lines += ["", "## Self-play stage of the bundles (`medwss train BUNDLE --stage selfplay`)", "",
              "A subprocess on a copy of the bundle (configs + shipped `models/detector.pt`), data from "
              f"`{meta['data_dir']}`; wall time includes start-up, reading the scans and scoring the slices.", "",
              "| bundle | iterations | torch threads | wall time | stage's own time | sum of iteration times | "
              "train / val slices | val patients | 1-min load before/after |",
              "|---|---:|---:|---:|---:|---:|---|---|---|"]
    for task, entry in result["bundles"].items():
        s = entry["stage"]
        lines.append(f"| {task} | {s['iterations']} | {s['num_threads']} | {s['wall_seconds']:.0f} s "
                     f"({s['wall_seconds'] / 60:.1f} min) | {s['stage_seconds']:.0f} s | "
                     f"{s['iterations_seconds']:.0f} s | {s['train_slices']} / {s['val_slices']} | "
                     f"{', '.join(s['val_patients']) or 'none'} | "
                     f"{'/'.join(f'{v:.1f}' for v in s['load_before_after'])} |")
    lines += ["", "## Mask Dice on validation slices", "",
              "2D Dice at 128 x 128 of the patches taken; 'mean slice Dice' counts a slice without ROI as 1 when the "
              "mask is empty (the training loop's val/dice), 'pooled' sums intersections over all slices (3D-like). "
              f"agent = the freshly trained agent a playing alone, deterministic; threshold_{THRESHOLD} = the single "
              "agent taking the best-scored patch while its detector score >= 0.8 (RLSP §5); oracle = patches >= 50 % "
              "ROI (best patch mask at G = 16); empty = no patch.", ""]
    for task, entry in result["bundles"].items():
        d = entry["dice"]
        where = (f"validation patient(s) {', '.join(d['val_patients'])}" if d["held_out"] else
                 "all slices (the bundle holds no patient out: these are its training slices)")
        curve = entry["stage"]["val_dice_curve"]
        lines += [f"**{task}**: {d['slices']} slices ({d['roi_slices']} with ROI), {where}; the stage's last "
                  f"val/dice {fmt(curve[-1][1] if curve else None)}.",
                  "", *dice_table(task, d["scores"]), ""]  # fmt: skip
    if result.get("synthetic"):
        lines += synthetic_markdown(result["synthetic"])
    return "\n".join(lines) + "\n"


def synthetic_markdown(syn: dict) -> list[str]:
    refs = syn["references"]
    lines = ["## Synthetic task (perfect detector)", "",
             f"`medwss.selfplay.synthetic.synthetic_data({syn['train_slices']}, {syn['val_slices']}, {syn['size']}, "
             "16, seed=0)`: noisy slices, a bright square in 70 % of them, detector score = patch coverage. "
             f"Settings of the prostate bundle's `train_selfplay.yaml` ({syn['observation']} observation from the "
             f"loop's random conv encoder) with {syn['iterations']} iterations; same data and budget for every run, "
             "seeds vary the weights, games and opponent draws. Dice of the final policy on the validation slices.", "",
             *dice_table("reference", refs), "",
             "| opponent sampling | seed | mean slice Dice | Dice on ROI slices | pooled Dice | empty masks | "
             "time | 1-min load after | val/dice curve (iteration: Dice) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in syn["runs"]:
        curve = ", ".join(f"{int(s)}: {d:.2f}" for s, d in r["val_dice_curve"])
        lines.append(f"| {r['sampling']} | {r['seed']} | {fmt(r['dice_mean'])} | {fmt(r['dice_roi_slices'])} | "
                     f"{fmt(r['dice_pooled'])} | {r['empty_predictions']:.0%} | {r['seconds']:.0f} s | "
                     f"{r['load']:.1f} | {curve} |")
    lines += ["", f"Per sampling mode over seeds (threshold baseline {fmt(refs['threshold_0.8']['dice_mean'])}, "
              f"oracle {fmt(refs['oracle']['dice_mean'])}):", "",
              "| opponent sampling | seeds | median Dice | min | max | seeds above the baseline |",
              "|---|---|---:|---:|---:|---:|"]
    for mode, s in syn["sampling"].items():
        lines.append(f"| {mode} | {', '.join(map(str, s['seeds']))} | {fmt(s['median'])} | {fmt(s['min'])} | "
                     f"{fmt(s['max'])} | {s['beats_threshold']}/{len(s['dice'])} |")
    return lines


# ================================================================================================ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="relative to the repo root")
    parser.add_argument("--quick", action="store_true", help="smoke run: few repeats and iterations, tiny task")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="torch threads for the speed parts")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--bundles", nargs="*", default=list(BUNDLES), choices=list(BUNDLES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="synthetic seeds, prioritised")
    parser.add_argument("--ablation-seeds", type=int, nargs="*", default=[0, 1, 2], help="uniform and vanilla")
    parser.add_argument("--synthetic-iterations", type=int, default=None, help="default: the bundle's")
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS} ({tempfile.gettempdir()} quick)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s")
    logging.getLogger("medwss").setLevel(logging.WARNING)
    data_dir = args.data_dir if args.data_dir.is_absolute() else (REPO / args.data_dir).resolve()
    quick = args.quick
    out = args.out or (Path(tempfile.gettempdir()) / "medwss-selfplay-quick" if quick else RESULTS)
    repeats, min_seconds = (1, 0.05) if quick else (max(args.repeats, 3), 1.0)
    load_before, started = os.getloadavg(), time.perf_counter()
    commit, dirty = git_state()
    prostate = bundle_parser(BUNDLES["prostate"])
    result: dict = {
        "game_speed": game_speed(args.batch, args.threads, repeats, 2 if quick else 20, min_seconds),
        "ppo_speed": ppo_speed(BUNDLES["prostate"], args.threads, repeats),
        "bundles": {},
    }
    with tempfile.TemporaryDirectory(prefix="medwss-selfplay-bench-") as tmp:
        for name in args.bundles:
            copy, run_dir, stage = run_stage(BUNDLES[name], data_dir, Path(tmp), 2 if quick else None)
            torch.set_num_threads(1)
            result["bundles"][name] = {"stage": stage, "dice": bundle_dice(copy, run_dir, data_dir)}
        iterations = 2 if quick else (args.synthetic_iterations or bundle_settings(prostate).num_iterations)
        runs = [("prioritised", s) for s in args.seeds]
        runs += [(m, s) for m in ("uniform", "vanilla") for s in args.ablation_seeds]
        if quick:
            runs, sizes, changes = [(m, 0) for m in SAMPLING], (64, 16, 64), {"games_per_iteration": 8}
        else:
            sizes, changes = (512, 128, 128), {}
        syn = synthetic(prostate, runs, iterations, sizes, Path(tmp), **changes)
        syn["sampling"] = sampling_summary(syn["runs"], syn["references"]["threshold_0.8"]["dice_mean"])
        result["synthetic"] = syn
    result["meta"] = {
        "quick": quick, "git_commit": commit, "git_dirty": dirty, "data_dir": str(args.data_dir),
        "repeats": repeats, "min_seconds": min_seconds, "torch": torch.__version__, "cpu_count": os.cpu_count(),
        "machine": platform.machine(), "python": platform.python_version(),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]], "shared_machine": True,
        "total_seconds": time.perf_counter() - started,
    }  # fmt: skip
    result["targets"] = targets(result)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "selfplay.json", json.dumps(result, indent=1, default=float) + "\n")
    write(out / "selfplay.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
