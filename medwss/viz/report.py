"""``medwss eval --report``: one self-contained HTML page a person can open and judge a model by.

The page holds the summary per class (mDSC, mIoU, HD95, MSD), one row per case sorted by Dice (worst first) with a
small overlay of prediction (red fill) and ground truth (green outline) on the slices that matter, a Dice
distribution plot, and the command, bundle and package versions behind it. Every image is a base64 PNG data URI,
so the file can be mailed or attached to a ticket alone.
"""

from __future__ import annotations

import base64
import html
import io
import math
import platform
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import MedwssError
from medwss.runtime.atomic import atomic_output

REPORT_SUFFIXES = (".html", ".htm")
VERSIONED = ("medwss", "monai", "torch", "numpy", "SimpleITK", "nibabel", "highdicom", "pydicom")
"""Packages whose versions the report lists (those installed)."""


def check_report_path(out: str | Path) -> Path:
    """Refuse, before any scoring, a report path that cannot be written as HTML.

    Raises:
        MedwssError: not an .html/.htm name, or a folder.
    """
    out = Path(out)
    if out.suffix.lower() not in REPORT_SUFFIXES:
        raise MedwssError(out, "the report is an HTML page: give a .html file name")
    if out.is_dir():
        raise MedwssError(out, "is a folder; give a .html file name for the report")
    return out


def slices_that_matter(pred: np.ndarray, gt: np.ndarray, count: int = 3) -> list[int]:
    """Up to ``count`` axial slices (z of (x, y, z) masks): most disagreement, largest ground truth, largest
    prediction, then spread over the rest of the slices either mask covers; the middle slice when both are empty.

    Every method scored against the same ground truth with the same masks gets the same slices.
    """
    depth = gt.shape[-1]
    area = lambda m: m.reshape(-1, depth).sum(axis=0)  # noqa: E731
    wrong, gt_area, pred_area = area(pred ^ gt), area(gt), area(pred)
    chosen: list[int] = []
    for score in (wrong, gt_area, pred_area):
        if score.max() > 0 and int(score.argmax()) not in chosen:
            chosen.append(int(score.argmax()))
    covered = [z for z in np.flatnonzero((gt_area + pred_area) > 0) if z not in chosen]
    while len(chosen) < count and covered:
        chosen.append(int(covered.pop(len(covered) // 2)))
    return sorted(chosen[:count]) or [depth // 2]


def _png(fig, dpi: int = 80) -> str:
    """A matplotlib figure as a PNG data URI (figure closed)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def case_overlay(
    pred: np.ndarray,
    gt: np.ndarray,
    image: np.ndarray | None = None,
    modality: str = "",
    title: str = "",
    codes: Sequence[str] = ("L", "P", "S"),
) -> str:
    """A small PNG data URI: the slices that matter, prediction filled red and ground truth outlined green, on the
    scan when given (soft-tissue window for CT) or on black, shown as ``segment`` overlays are (``codes``: where
    the array's axes point, ``medwss.viz.overlay.axis_codes``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from medwss.viz.overlay import display_range, display_slice

    zs = slices_that_matter(pred, gt)
    fig, axes = plt.subplots(1, len(zs), figsize=(2.0 * len(zs), 2.2), squeeze=False)
    red = ListedColormap(["red"])
    lo, hi = display_range(image, modality) if image is not None else (0.0, 1.0)
    for ax, z in zip(axes[0], zs, strict=True):
        background = image[..., z] if image is not None else np.zeros(gt.shape[:2])
        ax.imshow(display_slice(background, codes), cmap="gray", vmin=lo, vmax=hi, origin="upper")
        p = display_slice(pred[..., z], codes)
        ax.imshow(np.ma.masked_where(~p, p), cmap=red, alpha=0.45, origin="upper")
        if gt[..., z].any():
            ax.contour(display_slice(gt[..., z], codes), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(f"z={z}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=7)
    fig.tight_layout(pad=0.3)
    return _png(fig)


def dice_plot(rows: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> str:
    """Dice of every case per class: a histogram and the cases as dots, as a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (hist, strip) = plt.subplots(1, 2, figsize=(8, 2.8))
    bins = np.linspace(0, 1, 21)
    for k, name in enumerate(classes):
        dice = np.array([r["dice"] for r in rows if r["class"] == name and math.isfinite(r["dice"])])
        hist.hist(dice, bins=bins, alpha=0.6, label=name)
        jitter = np.random.default_rng(k).uniform(-0.15, 0.15, dice.size)
        strip.scatter(dice, k + jitter, s=14, alpha=0.7)
        if dice.size:
            strip.plot([dice.mean()] * 2, [k - 0.3, k + 0.3], color="black", linewidth=1.5)
    hist.set_xlabel("Dice")
    hist.set_ylabel("cases")
    hist.set_xlim(0, 1)
    hist.legend(fontsize=7)
    strip.set_yticks(range(len(classes)), list(classes))
    strip.set_xlim(0, 1)
    strip.set_xlabel("Dice per case (bar: mean)")
    fig.tight_layout()
    return _png(fig, dpi=90)


def versions() -> dict[str, str]:
    """Installed versions of the packages behind a score (and Python's)."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def render_html(
    report: Any,
    overlays: Mapping[str, str],
    *,
    command: str = "",
    bundle: str | None = None,
    title: str = "medwss evaluation",
) -> str:
    """The page as text: ``report`` is an ``EvalReport``, ``overlays`` a PNG data URI per case id."""
    e = html.escape
    classes = list(report.summary)
    summary_rows = "".join(
        f"<tr><td>{e(name)}</td><td>{_fmt(s['dice']['mean'])}</td><td>{_fmt(s['iou']['mean'])}</td>"
        f"<td>{_fmt(s['hd95']['mean'], 2)}</td><td>{_fmt(s['msd']['mean'], 2)}</td>"
        f"<td>{s['dice']['count']} / {report.num_cases}</td><td>{s['hd95']['count']} / {report.num_cases}</td></tr>"
        for name, s in report.summary.items()
    )
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for row in report.rows:
        by_case.setdefault(row["case"], []).append(row)

    def mean_dice(case: str) -> float:
        values = [r["dice"] for r in by_case[case] if math.isfinite(r["dice"])]
        return float(np.mean(values)) if values else -1.0

    case_rows = []
    for rank, case in enumerate(sorted(by_case, key=lambda c: (mean_dice(c), c)), 1):
        rows = by_case[case]
        dot = "&nbsp;&middot; "
        metrics = "".join(
            f"<div><b>{e(r['class'])}</b> Dice {_fmt(r['dice'])}{dot}IoU {_fmt(r['iou'])}{dot}HD95 "
            f"{_fmt(r['hd95'], 2)} mm{dot}MSD {_fmt(r['msd'], 2)} mm<br><small>{r['pred_voxels']} predicted / "
            f"{r['gt_voxels']} true voxels</small></div>"
            for r in rows
        )
        image = overlays.get(case)
        picture = f'<img alt="overlay of {e(case)}" src="{image}">' if image else ""
        case_rows.append(
            f"<tr><td>{rank}</td><td>{e(case)}<br><small>{e(Path(rows[0]['pred']).name)}</small></td>"
            f"<td>{metrics}</td><td>{picture}</td></tr>"
        )
    provenance = [("command", command or "(library call)"), ("bundle", bundle or "(not given)")]
    provenance += [("cases", str(report.num_cases))]
    provenance += [(f"{name} version", version) for name, version in versions().items()]
    provenance += [("written", datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))]
    unmatched = len(report.matching.unmatched_predictions) + len(report.matching.unmatched_ground_truths)
    if unmatched:
        provenance += [("not scored", f"{unmatched} file(s) without a partner (see summary.json)")]
    meta = "".join(f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in provenance)
    rules = ", ".join(f"{e(r.name)}: ground truth {e(str(r.gt))}, prediction {e(str(r.pred))}" for r in report.rules)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }}
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 28px; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; }}
th {{ background: #f0f3f7; text-align: left; }} .summary td {{ text-align: right; }}
.summary td:first-child {{ text-align: left; font-weight: bold; }} small {{ color: #666; }}
img {{ max-width: 100%; }} code {{ white-space: pre-wrap; word-break: break-all; }}
</style></head><body>
<h1>{e(title)}</h1>
<p>{report.num_cases} case(s) scored. Classes: {rules}. Distances in mm; HD95 and MSD are averaged over the cases where
both masks are non-empty.</p>
<h2>Summary</h2>
<table class="summary"><tr><th>class</th><th>mDSC</th><th>mIoU</th><th>HD95 (mm)</th><th>MSD (mm)</th>
<th>Dice over</th><th>HD95 over</th></tr>{summary_rows}</table>
<h2>Dice distribution</h2>
<img alt="Dice distribution" src="{dice_plot(report.rows, classes)}">
<h2>Cases, worst Dice first</h2>
<p><small>Prediction filled red, ground truth outlined green, on the slices with the most disagreement and the
largest masks.</small></p>
<table><tr><th>#</th><th>case</th><th>scores</th><th>overlay</th></tr>{"".join(case_rows)}</table>
<h2>Produced by</h2>
<table>{meta}</table>
</body></html>
"""


def case_masks(report: Any, case: str) -> tuple[np.ndarray, np.ndarray, Any]:
    """The (prediction, ground truth) masks of one case (the union over the report's classes) and their grid."""
    from medwss.data.io import read_mask_array
    from medwss.metrics.evaluate import gt_class_mask, read_ground_truths

    pair = next(p for p in report.matching.pairs if p.case == case)
    pred_labels, _ = read_mask_array(pair.pred)
    gt_labels, grid = read_ground_truths(pair)
    pred = np.zeros(pred_labels.shape, bool)
    gt = np.zeros(gt_labels[0].shape, bool)
    for rule in report.rules:
        pred |= np.asarray(rule.pred(pred_labels), bool)
        gt |= gt_class_mask(gt_labels, rule)
    return pred, gt, grid


def find_case_images(images: Path | None, cases: Sequence[str]) -> dict[str, Path]:
    """The scan of each case: ``images`` itself (a volume file or DICOM series folder) for one case, else
    ``images/<case>.*`` (volume files or series folders named by case id); a case without a scan is drawn on black.

    Raises:
        MedwssError: ``images`` missing, or one scan file for several cases.
    """
    from medwss.data.io import dicom_series_ids, strip_suffix, volume_suffix

    if images is None:
        return {}
    if not images.exists():
        raise MedwssError(images, "file not found")
    if images.is_file() or dicom_series_ids(images):
        if len(cases) != 1:
            raise MedwssError(images, "one --images scan for several cases: give a folder of scans named by case id")
        return {cases[0]: images}
    table = {strip_suffix(c): c for c in images.iterdir() if volume_suffix(c) or c.is_dir()}
    return {case: table[case] for case in cases if case in table}


def write_html_report(
    report: Any,
    out: str | Path,
    *,
    images: Path | None = None,
    command: str = "",
    bundle: str | None = None,
    progress: Any = None,
) -> Path:
    """Draw every case's overlay and write the page atomically; returns its path.

    Raises:
        MedwssError: a bad report path, or an unreadable scan given in ``images``.
    """
    from medwss.data.io import read_volume_array
    from medwss.viz.overlay import axis_codes

    out = check_report_path(out)
    cases = [p.case for p in report.matching.pairs]
    scans = find_case_images(images, cases)
    overlays = {}
    for case in cases:
        pred, gt, grid = case_masks(report, case)
        image, modality = None, ""
        if case in scans:
            image, _, modality = read_volume_array(scans[case])
            if image.shape != gt.shape:
                raise MedwssError(scans[case], f"scan shape {image.shape} differs from its masks' {gt.shape}")
        overlays[case] = case_overlay(pred, gt, image, modality, codes=axis_codes(grid.direction))
        if progress is not None:
            progress(1)
    text = render_html(report, overlays, command=command, bundle=bundle)
    with atomic_output(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
