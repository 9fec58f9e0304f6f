"""Peak memory of ``medwss segment`` on large synthetic CT volumes, before and after the lean loading path.

Two synthetic abdominal CTs (int16 Hounsfield units, 512 x 512 x 129 and 512 x 512 x 600, 0.7 x 0.7 x 1.5 mm,
an LPS-flipped affine as scanner NIfTIs have) and a liver-shaped prior are written to a temporary folder; each is
segmented by one fresh ``medwss segment --bundle bundles/liver_tumour --method cam`` process, and its peak resident
set size is read with ``os.wait4``. ``--before DIR`` also runs the code of another checkout (e.g. the main branch,
``PYTHONPATH=DIR``) on the same files and checks that both write identical masks.

One float32 copy of the volume is 129 MiB (129 slices) or 600 MiB (600 slices); the target is at most two copies
beyond the input as read. The copies a run holds are counted as (peak - baseline) / one float32 copy, where the
baseline is the peak of the same code on a 512 x 512 x 2 scan (interpreter, torch, MONAI, SimpleITK, the bundle:
everything that does not grow with the volume). The count includes the stored input itself (int16: half a copy), so
it errs on the high side.

    .venv/bin/python benchmarks/memory.py [--before ../main]

Results: ``benchmarks/results/memory.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SIZES = (129, 600)
BASELINE_SLICES = 2  # the tiny scan whose peak is the process baseline: its volume is 2 MiB as float32


def write_case(folder: Path, slices: int) -> tuple[Path, Path]:
    """A synthetic CT (air, body, liver, noise) and its liver prior, as .nii.gz, written slice block by block."""
    import nibabel as nib

    x, y = np.mgrid[:512, :512]
    body = ((x - 256) ** 2 / 220**2 + (y - 256) ** 2 / 170**2) <= 1
    liver = ((x - 200) ** 2 / 90**2 + (y - 230) ** 2 / 70**2) <= 1
    rng = np.random.default_rng(slices)
    volume = np.full((512, 512, slices), -1000, np.int16)
    prior = np.zeros((512, 512, slices), np.uint8)
    for z in range(slices):
        in_liver = liver & (slices * 0.3 <= z <= slices * 0.7)
        plane = np.where(body, 40, -1000) + np.where(in_liver, 20, 0) + rng.normal(0, 15, (512, 512))
        volume[..., z] = plane.astype(np.int16)
        prior[..., z] = in_liver
    affine = np.diag([-0.7, -0.7, 1.5, 1.0])
    scan, mask = folder / f"ct_{slices}.nii.gz", folder / f"liver_{slices}.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), str(scan))
    nib.save(nib.Nifti1Image(prior, affine), str(mask))
    return scan, mask


def run_once(code: Path, scan: Path, prior: Path, out: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one ``medwss segment`` process running the code under ``code``."""
    cmd = [sys.executable, "-c", "from medwss.cli import run; run()", "segment", str(scan), "-o", str(out),
           "--bundle", str(REPO / "bundles" / "liver_tumour"), "--roi-mask", str(prior), "--method", "cam",
           "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "2"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=out.parent)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err[-800:]}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=None, help="another checkout to compare (its medwss code)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    import nibabel as nib

    codes = {"after": REPO, **({"before": args.before.resolve()} if args.before else {})}
    rows = []
    with tempfile.TemporaryDirectory(prefix="medwss-memory-") as tmp:
        scan, prior = write_case(Path(tmp), BASELINE_SLICES)
        baseline = {}
        for label, code in codes.items():
            baseline[label] = round(run_once(code, scan, prior, Path(tmp) / f"mask_{label}_baseline.nii.gz")[1], 1)
            print(f"baseline ({BASELINE_SLICES} slices), {label}: peak {baseline[label]:.0f} MiB", flush=True)
        for slices in args.sizes:
            scan, prior = write_case(Path(tmp), slices)
            copy_mib = 512 * 512 * slices * 4 / 2**20
            row: dict = {"shape": [512, 512, slices], "float32_copy_mib": copy_mib}
            masks = {}
            for label, code in codes.items():
                out = Path(tmp) / f"mask_{label}_{slices}.nii.gz"
                seconds, peak = run_once(code, scan, prior, out)
                copies = (peak - baseline[label]) / copy_mib
                row[label] = {"peak_rss_mib": round(peak, 1), "float32_copies": round(copies, 2),
                              "seconds": round(seconds, 1)}  # fmt: skip
                masks[label] = np.asarray(nib.load(str(out)).dataobj)
                print(f"{slices} slices, {label}: {peak:.0f} MiB, {copies:.2f} copies, {seconds:.0f} s", flush=True)
            if "before" in masks:
                row["masks_identical"] = bool(np.array_equal(masks["before"], masks["after"]))
            rows.append(row)
    result = {"cases": rows, "baseline_peak_rss_mib": baseline, "baseline_shape": [512, 512, BASELINE_SLICES],
              "cpu_count": os.cpu_count(), "method": "cam", "bundle": "liver_tumour"}  # fmt: skip
    lines = [
        "# Peak memory of `medwss segment` on synthetic CT",
        "",
        "One fresh `medwss segment --bundle bundles/liver_tumour --method cam` process per run (liver prior "
        "given); peak resident set size from `os.wait4`. A float32 copy of the volume is 1 MiB per slice. "
        "Copies = (peak - baseline) / one float32 copy, where the baseline is the peak of the same code on a "
        f"512 x 512 x {BASELINE_SLICES} scan ("
        + ", ".join(f"{k}: {v:.0f} MiB" for k, v in baseline.items())
        + "); the count includes the int16 input itself (half a copy). Target: at most 2 copies.",
        "",
        "| volume | one float32 copy MiB | before: peak MiB | before: copies | after: peak MiB | after: copies "
        "| masks identical |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        before = r.get("before", {"peak_rss_mib": float("nan"), "float32_copies": float("nan")})
        lines.append(
            f"| 512 x 512 x {r['shape'][2]} int16 CT | {r['float32_copy_mib']:.0f} | "
            f"{before['peak_rss_mib']:.0f} | {before['float32_copies']:.2f} | "
            f"{r['after']['peak_rss_mib']:.0f} | {r['after']['float32_copies']:.2f} | "
            f"{r.get('masks_identical', 'n/a')} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    for path, text in (
        (args.out / "memory.json", json.dumps(result, indent=1) + "\n"),
        (args.out / "memory.md", "\n".join(lines) + "\n"),
    ):
        tmp_path = path.with_suffix(path.suffix + ".tmp")
        tmp_path.write_text(text)
        os.replace(tmp_path, path)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
