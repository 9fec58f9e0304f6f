"""How much of a liver tumour a patch mask can hold at the working size: the whole field of view or the liver's box.

The game can only output unions of patches. At 128 x 128 with a 16 x 16 grid a patch is 8 x 8 working pixels, 32 x 32
of a 512-pixel CT: most LiTS tumours cover less than half of one, so even the oracle patch mask (reads the masks:
every patch at least half tumour) is empty on them. This measures the oracle's 3D Dice per patient on the full field
of view resized to the working size, and on the in-plane bounding box of the patient's liver (plus a margin, all
slices kept) resized to the same size, at grids 16 and 32. It reads masks only (no model): it bounds what cropping to
the organ prior could give any patch method, the ceiling before anything is trained.

Patients: the shared liver cohort (3D-IRCADb volumes: tumour = union of ``livertumorNN``, never the cyst or patient
7's ``tumor_not_liver``; LiTS slices: label 2). Tumour-free patients (IRCADb 7) score 1.0 for an empty oracle and are
left out of the means (said in the report).

    .venv/bin/python benchmarks/crop_oracle.py [--data-dir ../shared/data]

Results: ``benchmarks/results/crop_oracle.{md,json}``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
GRIDS = (16, 32)


def ircad_patients(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{patient: (tumour (Z, H, W) bool, liver (Z, H, W) bool)} of the 3D-IRCADb volumes."""
    import nibabel as nib

    out = {}
    for folder in sorted((root / "liver" / "labelsTr").glob("ircadb*")):
        liver = np.asarray(nib.load(folder / "liver.nii.gz").dataobj) > 0
        tumour = np.zeros_like(liver)
        for f in sorted(folder.glob("livertumor*.nii.gz")):
            tumour |= np.asarray(nib.load(f).dataobj) > 0
        out[folder.name] = (tumour.transpose(2, 1, 0), liver.transpose(2, 1, 0))  # (x, y, z) -> (z, y, x)
    return out


def lits_patients(root: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{patient: (tumour, liver)} of the LiTS slice folder (label 2 tumour, label > 0 liver), slices in order."""
    from PIL import Image

    folder = root / "liver" / "lits_slices_2d"
    rows: dict[str, list[dict[str, str]]] = defaultdict(list)
    with (folder / "slices.csv").open() as f:
        for row in csv.DictReader(f):
            rows[row["patient"]].append(row)
    out = {}
    for patient, items in sorted(rows.items()):
        items.sort(key=lambda r: int(r["slice_index"]))
        labels = np.stack([np.asarray(Image.open(folder / r["mask"])) for r in items])
        out[patient] = (labels == 2, labels > 0)
    return out


def resize(mask: np.ndarray, size: int) -> torch.Tensor:
    """(Z, H, W) bool -> (Z, size, size) bool, nearest-exact (as the pipeline resizes masks)."""
    t = torch.as_tensor(mask, dtype=torch.float32)[:, None]
    return F.interpolate(t, size=(size, size), mode="nearest-exact")[:, 0] > 0.5


def oracle_dice(truth: torch.Tensor, grid: int) -> float:
    """3D Dice of the oracle patch mask (patches at least half inside the truth) against the truth, same grid."""
    from medwss.metrics.patches import oracle_patch_mask

    pred = torch.as_tensor(oracle_patch_mask(truth, grid, 0.5))
    total = int(pred.sum() + truth.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & truth).sum()) / total


def liver_box(liver: np.ndarray, margin: int) -> tuple[slice, slice]:
    """In-plane bounding box of the liver over all slices, plus ``margin`` source pixels, inside the image."""
    ys, xs = np.nonzero(liver.any(axis=0))
    h, w = liver.shape[1:]
    return (slice(max(int(ys.min()) - margin, 0), min(int(ys.max()) + margin + 1, h)),
            slice(max(int(xs.min()) - margin, 0), min(int(xs.max()) + margin + 1, w)))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--working-size", type=int, default=128)
    ap.add_argument("--margin", type=int, default=8, help="source pixels around the liver's box")
    args = ap.parse_args(argv)
    size = args.working_size
    patients = {**{k: ("3D-IRCADb", *v) for k, v in ircad_patients(args.data_dir).items()},
                **{k: ("LiTS slices", *v) for k, v in lits_patients(args.data_dir).items()}}  # fmt: skip
    rows = []
    for name, (kind, tumour, liver) in patients.items():
        ys, xs = liver_box(liver, args.margin)
        full, crop = resize(tumour, size), resize(tumour[:, ys, xs], size)
        row = {"patient": name, "kind": kind, "tumour_voxels": int(tumour.sum()),
               "box": [ys.stop - ys.start, xs.stop - xs.start],
               "source": [int(n) for n in tumour.shape[1:]]}  # fmt: skip
        for g in GRIDS:
            row[f"full G{g}"], row[f"liver box G{g}"] = oracle_dice(full, g), oracle_dice(crop, g)
        rows.append(row)
        print(json.dumps(row), flush=True)
    columns = [f"{v} G{g}" for g in GRIDS for v in ("full", "liver box")]
    scored = [r for r in rows if r["tumour_voxels"] > 0]
    means = {c: float(np.mean([r[c] for r in scored])) for c in columns}
    by_kind = {k: {c: float(np.mean([r[c] for r in scored if r["kind"] == k])) for c in columns}
               for k in sorted({r["kind"] for r in scored})}  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {"rows": rows, "means": means, "by_kind": by_kind, "working_size": size, "margin": args.margin}
    (RESULTS / "crop_oracle.json").write_text(json.dumps(result, indent=1))
    lines = [
        "# Oracle patch mask on liver tumours: full field of view vs the liver's box",
        "",
        f"3D Dice of the oracle patch mask (reads the masks) at {size} x {size}, per patient; the liver's in-plane box "
        f"over all slices plus {args.margin} source pixels, resized to the same size. Tumour-free patients "
        f"({', '.join(r['patient'] for r in rows if not r['tumour_voxels']) or 'none'}) are left out of the means.",
        "",
        "| patients | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
        f"| all {len(scored)} with tumour | " + " | ".join(f"{means[c]:.3f}" for c in columns) + " |",
        *[f"| {k} ({sum(r['kind'] == k for r in scored)}) | " + " | ".join(f"{v[c]:.3f}" for c in columns) + " |"
          for k, v in by_kind.items()],
        "",
        "| patient | kind | tumour voxels | liver box (source px) | " + " | ".join(columns) + " |",
        "|---|---|---:|---|" + "---:|" * len(columns),
        *[f"| {r['patient']} | {r['kind']} | {r['tumour_voxels']} | {r['box'][0]} x {r['box'][1]} of "
          f"{r['source'][0]} x {r['source'][1]} | " + " | ".join(f"{r[c]:.3f}" for c in columns) + " |" for r in rows],
    ]  # fmt: skip
    (RESULTS / "crop_oracle.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
