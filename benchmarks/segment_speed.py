"""Whole-process speed of ``medwss segment`` on real volumes: RLSP against Grad-CAM++ in the same run, peak memory.

Each measurement is one fresh ``medwss segment`` process (interpreter start, imports, bundle loading, reading,
segmenting and writing the mask), as a user runs it. Methods are interleaved (rlsp, cam, single-agent, rlsp, ...)
so that load from other jobs hits them alike; the report gives medians and the RLSP / Grad-CAM++ ratio of medians.
Peak memory is the child's own maximum resident set size (``os.wait4``).

    .venv/bin/python benchmarks/segment_speed.py [--repeats 5] [--data-dir ../shared/data]

Results: ``benchmarks/results/segment_speed.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
METHODS = ("rlsp", "cam", "single-agent")


def cases(data_dir: Path) -> dict[str, dict]:
    """One prostate MR volume (shipped default bundle) and one liver CT (liver bundle + liver mask as prior)."""
    liver = data_dir / "liver"
    return {
        "prostate 021 (270 x 270 x 24 MR)": {
            "scan": data_dir / "prostate" / "prostate158_subset" / "021" / "t2.nii.gz", "args": []},
        "liver ircadb01_01 (512 x 512 x 129 CT)": {
            "scan": liver / "imagesTr" / "ircadb01_01.nii.gz",
            "args": ["--bundle", str(REPO / "bundles" / "liver_tumour"),
                     "--roi-mask", str(liver / "labelsTr" / "ircadb01_01" / "liver.nii.gz")]},
    }


def run_once(scan: Path, extra: list[str], method: str, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one ``medwss segment`` process; raises if it fails."""
    medwss = Path(sys.executable).with_name("medwss")
    cmd = [str(medwss), "segment", str(scan), "-o", str(out), "--method", method, "--no-progress", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:]}")
    proc.stderr.close()
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"), help="relative to the repo root")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    data_dir = args.data_dir if args.data_dir.is_absolute() else (REPO / args.data_dir).resolve()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="medwss-speed-") as tmp:
        for name, case in cases(data_dir).items():
            runs: dict[str, list] = {m: [] for m in METHODS}
            out = Path(tmp) / name.split()[0]  # one folder per case: segment refuses another scan's mask
            run_once(case["scan"], case["args"], "rlsp", out / "warm.nii.gz")  # page cache, .pyc files
            for _ in range(args.repeats):
                for method in METHODS:
                    runs[method].append(run_once(case["scan"], case["args"], method, out / f"{method}.nii.gz"))
            medians = {m: statistics.median(s for s, _ in r) for m, r in runs.items()}
            row = {"case": name, "median_s": medians, "peak_mib": {m: max(p for _, p in r) for m, r in runs.items()},
                   "runs_s": {m: [s for s, _ in r] for m, r in runs.items()},
                   "rlsp_over_cam": medians["rlsp"] / medians["cam"]}
            print(f"{name}: " + ", ".join(f"{m} {s:.1f} s" for m, s in medians.items()), flush=True)
            rows.append(row)
    import torch

    meta = {"repeats": args.repeats, "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads_default": torch.get_num_threads(), "load_average_before_after": [load_before,
                                                                                            os.getloadavg()[0]]}
    result = {"meta": meta, "cases": rows}
    lines = ["# `medwss segment` whole-process speed", "",
             f"{args.repeats} fresh processes per method and case, methods interleaved; medians. {meta['cpu_count']} "
             f"CPU cores, torch {meta['torch']}; 1-min load average before/after {load_before:.1f}/"
             f"{meta['load_average_before_after'][1]:.1f} (other jobs shared the machine: compare the ratio, "
             "measured in the same run). Each process imports torch and MONAI, loads the bundle, reads the scan, "
             "segments every slice and writes the NIfTI mask.", "",
             "| volume | RLSP s | Grad-CAM++ s | single agent s | RLSP / Grad-CAM++ | peak RSS MiB (RLSP / CAM) |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        m, p = r["median_s"], r["peak_mib"]
        lines.append(f"| {r['case']} | {m['rlsp']:.1f} | {m['cam']:.1f} | {m['single-agent']:.1f} | "
                     f"{r['rlsp_over_cam']:.2f} | {p['rlsp']:.0f} / {p['cam']:.0f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    for path, text in ((args.out / "segment_speed.json", json.dumps(result, indent=1) + "\n"),
                       (args.out / "segment_speed.md", "\n".join(lines) + "\n")):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
