"""``medwss eval`` for PNG label maps (VOC / COCO style): one confusion matrix over all images, then mIoU.

Predictions and ground truths are PNG files or folders of them, paired by file stem (a prediction named
``<stem>_<method>.png``, the default of ``medwss segment``, pairs with ``<stem>.png`` when that is unambiguous).
Scoring follows the VOC devkit (``medwss.metrics.semantic``): background is a class, 255 is not scored, classes
absent from both prediction and ground truth in every image are left out of the means.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import MedwssError
from medwss.metrics.semantic import confusion_matrix, dice_from_confusion, miou_from_confusion
from medwss.runtime.atomic import atomic_output

IGNORE = 255
CLASSES_CSV = "classes.csv"
CASES_CSV = "cases.csv"
SUMMARY_JSON = "summary.json"


def is_label_png_input(pred: str | Path, gt: str | Path) -> bool:
    """Whether ``medwss eval`` was given PNG label maps: both PNG files, or a folder of PNGs and no volume."""

    def pngs(p: Path) -> bool:
        if p.is_file():
            return p.suffix.lower() == ".png"
        if p.is_dir():
            names = [c.name.lower() for c in p.iterdir() if c.is_file() and not c.name.startswith(".")]
            return any(n.endswith(".png") for n in names) and not any(".nii" in n or n.endswith(".mha") for n in names)
        return False

    return pngs(Path(pred)) and pngs(Path(gt))


def pair_label_maps(pred: str | Path, gt: str | Path) -> tuple[list[tuple[str, Path, Path]], list[Path], list[Path]]:
    """(case, prediction, ground truth) pairs by stem; then unmatched predictions and ground truths.

    Raises:
        MedwssError: a missing path, or no pair at all.
    """
    pred, gt = Path(pred), Path(gt)
    for p in (pred, gt):
        if not p.exists():
            raise MedwssError(p, "file not found")
    if pred.is_file() and gt.is_file():
        return [(gt.stem, pred, gt)], [], []
    preds = {p.stem: p for p in ([pred] if pred.is_file() else sorted(pred.glob("*.png")))}
    gts = {g.stem: g for g in ([gt] if gt.is_file() else sorted(gt.glob("*.png")))}
    pairs, used = [], set()
    for stem, g in gts.items():
        match = preds.get(stem)
        if match is None:  # <stem>_<method>.png
            candidates = [p for s, p in preds.items() if s.startswith(f"{stem}_") and s not in gts]
            match = candidates[0] if len(candidates) == 1 else None
        if match is not None:
            pairs.append((stem, match, g))
            used.add(match)
    if not pairs:
        raise MedwssError(pred, f"no prediction pairs with a ground truth in {gt} by file name")
    unmatched_gt = [g for s, g in gts.items() if s not in {c for c, _, _ in pairs}]
    return pairs, [p for p in preds.values() if p not in used], unmatched_gt


@dataclass
class SemanticReport:
    """Per-image rows, per-class IoU and Dice from the summed confusion matrix, and their means."""

    rows: list[dict[str, Any]]
    iou: list[float]
    dice: list[float]
    miou: float
    mdice: float
    class_names: list[str]
    unmatched_predictions: list[Path] = field(default_factory=list)
    unmatched_ground_truths: list[Path] = field(default_factory=list)
    summary_json: Path | None = None
    classes_csv: Path | None = None
    cases_csv: Path | None = None

    def to_json(self) -> dict[str, Any]:
        """The summary as written to ``summary.json`` (NaN, i.e. absent classes, as null)."""

        def clean(v: float) -> float | None:
            return v if math.isfinite(v) else None

        return {
            "convention": "VOC: one confusion matrix over all images; background counted; 255 ignored; classes "
            "absent from prediction and ground truth left out",
            "images": len(self.rows),
            "mIoU": clean(self.miou),
            "mDice": clean(self.mdice),
            "classes_scored": int(sum(math.isfinite(v) for v in self.iou)),
            "per_class": {
                name: {"iou": clean(i), "dice": clean(d)}
                for name, i, d in zip(self.class_names, self.iou, self.dice, strict=True)
            },
        }


def evaluate_semantic(
    pred: str | Path,
    gt: str | Path,
    *,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    ignore_index: int = IGNORE,
    progress: Callable[[int], None] | None = None,
) -> SemanticReport:
    """Score PNG label maps; ``num_classes`` defaults to the largest label seen (255 aside) plus one.

    Raises:
        MedwssError: unreadable PNGs, a prediction whose size differs from its ground truth's, no pair.
    """
    from medwss.data.natural.voc import read_label_png

    pairs, unmatched_pred, unmatched_gt = pair_label_maps(pred, gt)
    maps = []
    for case, p, g in pairs:
        pm, gm = read_label_png(p), read_label_png(g)
        if pm.shape != gm.shape:
            raise MedwssError(p, f"size {pm.shape[1]}x{pm.shape[0]} differs from the ground truth's "
                                 f"{gm.shape[1]}x{gm.shape[0]} ({g})")  # fmt: skip
        if (pm == ignore_index).any():
            raise MedwssError(p, f"prediction holds the ignore label {ignore_index}")
        maps.append((case, p, g, pm, gm))
        if progress is not None:
            progress(1)
    seen = max(int(max(pm.max(), gm[gm != ignore_index].max(initial=0))) for _, _, _, pm, gm in maps) + 1
    k = num_classes if num_classes is not None else seen
    if seen > k:
        raise MedwssError("--num-classes", f"labels up to {seen - 1} found, more than {k} classes")
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    total = np.zeros((k, k), dtype=np.int64)
    rows = []
    for case, p, g, pm, gm in maps:
        cm = confusion_matrix(pm, gm, k, ignore_index)
        total += cm
        _, image_miou = miou_from_confusion(cm)
        scored = cm.sum()
        rows.append({"case": case, "miou": image_miou, "pixel_accuracy": float(np.trace(cm) / scored) if scored else
                     math.nan, "pred": str(p), "gt": str(g)})  # fmt: skip
    iou, miou = miou_from_confusion(total)
    dice, mdice = dice_from_confusion(total)
    return SemanticReport(rows, iou.tolist(), dice.tolist(), miou, mdice, names[:k], unmatched_pred, unmatched_gt)


def write_semantic_report(report: SemanticReport, out_dir: str | Path) -> SemanticReport:
    """Write ``summary.json``, ``classes.csv`` and ``cases.csv`` into ``out_dir`` (each atomically)."""
    out = Path(out_dir)
    classes = io.StringIO()
    writer = csv.writer(classes, lineterminator="\n")
    writer.writerow(["label", "class", "iou", "dice"])
    for label, (name, i, d) in enumerate(zip(report.class_names, report.iou, report.dice, strict=True)):
        writer.writerow([label, name, i, d])
    cases = io.StringIO()
    columns = ["case", "miou", "pixel_accuracy", "pred", "gt"]
    case_writer = csv.DictWriter(cases, fieldnames=columns, lineterminator="\n")
    case_writer.writeheader()
    case_writer.writerows(report.rows)
    texts = {SUMMARY_JSON: json.dumps(report.to_json(), indent=1), CLASSES_CSV: classes.getvalue(),
             CASES_CSV: cases.getvalue()}  # fmt: skip
    try:
        for name, text in texts.items():
            with atomic_output(out / name) as tmp:
                tmp.write_text(text)
    except OSError as err:
        raise MedwssError(out, f"cannot write: {err.strerror or err}") from None
    report.summary_json, report.classes_csv, report.cases_csv = out / SUMMARY_JSON, out / CLASSES_CSV, out / CASES_CSV
    return report
