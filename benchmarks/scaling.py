"""1 vs 2 processes (torchrun, gloo, CPU) for detector epochs, self-play iterations and folder segmentation.

Each row times the whole command (`python -m medwss ...` or `torchrun --nproc_per_node 2 -m medwss ...`, process
start and imports included) on a tiny generated prostate-like data set (tests/bundle/fixtures.py) with one torch
thread per process, so on this 2-core machine the best possible speed-up is 2x and start-up costs weigh heavily.
GPU rows are written as not measured when torch sees no GPU. The committed results carry a hand-written note on
why 2 processes were slower there (the work per process is tiny; start-up and all-reduces dominate).

    .venv/bin/python benchmarks/scaling.py [--repeats 1] [--epochs 6] [--iterations 12] [--scans 8]

Results: ``benchmarks/results/scaling.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.bundle.fixtures import tiny_bundle, tiny_overrides, write_tiny_prostate  # noqa: E402
from tests.distributed.torchrun import run_medwss, set_flags  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"


def timed(nproc: int, args: list[str]) -> float:
    started = time.perf_counter()
    done = run_medwss(nproc, args, timeout=1800)
    if done.returncode not in (0,):
        raise SystemExit(f"failed: {' '.join(args[:3])}: {done.stderr[-2000:]}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=12)
    parser.add_argument("--scans", type=int, default=8)
    opts = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medwss_scaling_"))
    data = write_tiny_prostate(work / "data", patients=opts.scans)
    small = {
        **tiny_overrides(data),
        "detector#training#epochs": opts.epochs,
        "detector#training#batch_size": 8,
        "selfplay#training#num_iterations": opts.iterations,
        "selfplay#training#games_per_iteration": 16,
        "selfplay#ppo#minibatch_size": 64,
        "selfplay#ppo#update_epochs": 2,
        "selfplay#training#checkpoint_every": 1000,
        "selfplay#training#eval_every": 1000,
        "selfplay#training#termination_warmup": 2,
        "selfplay#training#warmup_turns": 4,
        "selfplay#policy#channels": 8,
    }
    scans = work / "scans"
    scans.mkdir()
    for case in sorted(p.name for p in data.iterdir()):
        shutil.copy(data / case / "t2.nii.gz", scans / f"{case}.nii.gz")
    rows = []
    times: dict[tuple[str, int], list[float]] = {}
    for repeat in range(opts.repeats):
        for nproc in (1, 2):
            bundle = tiny_bundle(work / f"r{repeat}n{nproc}")
            runs = work / f"runs{repeat}n{nproc}"
            base = ["train", str(bundle), "--run-dir", str(runs), "--device", "cpu", "--no-progress"]
            flags = set_flags(small)
            times.setdefault(("detector", nproc), []).append(timed(nproc, [*base, "--stage", "detector", *flags]))
            times.setdefault(("selfplay", nproc), []).append(timed(nproc, [*base, "--stage", "selfplay", *flags]))
            config = bundle / "configs" / "inference.yaml"
            text = config.read_text().replace("grid_size: 16 ", "grid_size: 4 ")
            config.write_text(text.replace("working_size: 128 ", "working_size: 32 "))
            seg = ["segment", str(scans), "-o", str(work / f"masks{repeat}n{nproc}"), "--bundle", str(bundle),
                   "--device", "cpu", "--no-progress"]  # fmt: skip
            times.setdefault(("segment", nproc), []).append(timed(nproc, seg))
    what = {
        "detector": f"`medwss train --stage detector`, {opts.epochs} epochs x 3 members",
        "selfplay": f"`medwss train --stage selfplay`, {opts.iterations} iterations of 16 games",
        "segment": f"`medwss segment` of a {opts.scans}-scan folder",
    }
    for task in ("detector", "selfplay", "segment"):
        one, two = statistics.median(times[(task, 1)]), statistics.median(times[(task, 2)])
        rows.append({"task": task, "what": what[task], "one_process_s": round(one, 1), "two_processes_s": round(two, 1),
                     "speed_up": round(one / two, 2)})  # fmt: skip
    gpu = torch.cuda.is_available()
    result = {"machine": f"{torch.get_num_threads()} torch threads available; 1 per process", "repeats": opts.repeats,
              "rows": rows, "gpu": "not measured: no GPU on this machine" if not gpu else "run on a GPU machine"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "scaling.json").write_text(json.dumps(result, indent=1) + "\n")
    title = "# Scaling: 1 vs 2 processes (torchrun, gloo, CPU)"
    lines = [title, "",
             f"`benchmarks/scaling.py`, whole commands (start-up included), median of {opts.repeats} run(s), "
             "one torch thread per process, tiny generated data set (32 px slices, 4 x 4 grid).", "",
             "| task | what | 1 process (s) | 2 processes (s) | speed-up |",
             "| --- | --- | --- | --- | --- |"]  # fmt: skip
    lines += [f"| {r['task']} | {r['what']} | {r['one_process_s']} | {r['two_processes_s']} | {r['speed_up']}x |"
              for r in rows]  # fmt: skip
    lines += ["", "GPU rows (CPU/GPU ratio of `medwss segment` on a prostate volume and a 512 x 512 CT, one self-play "
              f"iteration): {result['gpu']}."]  # fmt: skip
    (RESULTS / "scaling.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
