"""Peak memory of ``medwss train`` on a whole shared cohort (the prostate bundle: 26 patients).

Fresh processes on a temporary copy of the bundle's configs (the shipped weights are never touched), with the
bundle's own data sources, model, batch sizes and self-play iterations, and one detector epoch per ensemble member
(an epoch holds what every epoch holds: the cohort's slices, the network, one batch). Three processes, so the peak
can be put where it happens: reading the cohort into training slices alone, the detector stage, the self-play
stage. Peak resident set size from ``os.wait4``.

    .venv/bin/python benchmarks/train_memory.py [--bundle prostate] [--epochs 1] [--iterations N]

Results: ``benchmarks/results/train_memory.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
READ_SLICES = """
import json, sys
from pathlib import Path
from medwss.runtime.config import load_config, stage_config_file
from medwss.bundle.stages import stage_slices
bundle = Path(sys.argv[1])
parser = load_config(bundle, [stage_config_file(bundle, "detector")], {"dataset_dir": sys.argv[2]})
slices = stage_slices(parser)
print(json.dumps({"slices": len(slices), "patients": len(set(slices.patients)),
                  "shape": list(slices.images.shape[1:]),
                  "mib": slices.images.numel() * slices.images.element_size() / 2**20}))
"""


def peak(cmd: list[str]) -> tuple[float, float, str]:
    """Seconds, peak RSS (MiB) and stdout of one fresh process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    out, err = proc.stdout.read(), proc.stderr.read()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} failed: {err[-2000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, out


def measure(bundle: str, data_dir: Path, epochs: int, iterations: int | None) -> dict:
    with tempfile.TemporaryDirectory() as work:
        copy = Path(work) / bundle
        shutil.copytree(REPO / "bundles" / bundle / "configs", copy / "configs")
        overrides = [f"dataset_dir={data_dir}", f"detector#training#epochs={epochs}"]
        if iterations is not None:
            overrides.append(f"selfplay#training#num_iterations={iterations}")
        sets = [a for o in overrides for a in ("--set", o)]
        rows = {}
        seconds, mib, out = peak([sys.executable, "-c", READ_SLICES, str(copy), str(data_dir)])
        data = json.loads(out.strip().splitlines()[-1])
        rows["reading the cohort into training slices"] = {"seconds": round(seconds, 1), "peak_mib": round(mib, 1)}
        for stage in ("detector", "selfplay"):
            cmd = [sys.executable, "-m", "medwss", "train", str(copy), "--stage", stage, "--run-dir",
                   str(Path(work) / "runs"), "--no-progress", *sets]  # fmt: skip
            seconds, mib, _ = peak(cmd)
            rows[f"`medwss train --stage {stage}`"] = {"seconds": round(seconds, 1), "peak_mib": round(mib, 1)}
        baseline_s, baseline, _ = peak([sys.executable, "-c", "import medwss.bundle.stages, monai, torch"])
        return {"bundle": bundle, "epochs": epochs, "iterations": iterations, "data": data, "rows": rows,
                "imports_peak_mib": round(baseline, 1),
                "command": " ".join(["medwss", "train", f"bundles/{bundle}", *sets])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default="prostate")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--epochs", type=int, default=1, help="detector epochs per ensemble member")
    ap.add_argument("--iterations", type=int, default=None, help="self-play iterations (default: the bundle's)")
    args = ap.parse_args(argv)
    res = measure(args.bundle, args.data_dir.resolve(), args.epochs, args.iterations)
    res["meta"] = {"torch": __import__("torch").__version__, "cpu_count": os.cpu_count(),
                   "python": platform.python_version(), "load": os.getloadavg()[0]}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "train_memory.json").write_text(json.dumps(res, indent=1))
    d = res["data"]
    schedule = "its full schedule" if args.iterations is None else f"{args.iterations} iterations"
    lines = [f"# Peak memory of `medwss train` on the {args.bundle} cohort", "",
             f"`{res['command']}` on a temporary copy of the bundle's configs, each step in a fresh process; peak "
             f"resident set size from `os.wait4`. One detector epoch per ensemble member stands for all of them (an "
             f"epoch holds what every epoch holds); self-play runs {schedule}.",
             "", f"Cohort: {d['patients']} patients, {d['slices']} training slices of "
             f"{' x '.join(map(str, d['shape']))} float32 = {d['mib']:.1f} MiB. Importing torch, MONAI and medwss "
             f"alone peaks at {res['imports_peak_mib']:.0f} MiB.", "",
             "| step | peak RSS MiB | seconds |", "|---|---:|---:|"]
    lines += [f"| {name} | {r['peak_mib']:.0f} | {r['seconds']:.0f} |" for name, r in res["rows"].items()]
    lines += ["", f"torch {res['meta']['torch']}, {res['meta']['cpu_count']} CPU cores shared with other jobs "
              f"(load {res['meta']['load']:.1f} at the end)."]
    (RESULTS / "train_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
