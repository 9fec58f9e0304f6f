"""``medwss eval``: score predicted masks against ground truth, per case and per class, and summarise.

Predictions and ground truths are files or folders; folders pair up by case id (the file name without its volume
suffix, ``medwss.data.io.strip_suffix``), or, for data sets laid out one folder per case (Prostate158
``<case>/t2_anatomy_reader1.nii.gz``), by a ground-truth pattern with ``{case}``. A label rule (``VoxelTest``:
``> 0``, ``== 2``, ``in 1,2``) turns each label map into a class mask, so a zonal map scores as a whole gland or
as one zone. The numbers come from ``medwss.metrics.segmentation.case_metrics`` (MONAI), distances in mm from the
grid's spacing; the per-class summary (mean Dice = mDSC, mean IoU = mIoU, HD95 and MSD skipping NaN with counts)
from ``summarise``.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import logging
import math
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.io import read_mask_array, strip_suffix, volume_suffix
from medwss.data.rules import VoxelTest
from medwss.errors import MedwssError
from medwss.metrics.segmentation import METRICS, case_metrics, summarise

logger = logging.getLogger(__name__)

DEFAULT_RULE = "> 0"
DEFAULT_CLASS = "roi"
CASES_CSV = "cases.csv"
SUMMARY_JSON = "summary.json"
COLUMNS = ("case", "class", *METRICS, "pred_voxels", "gt_voxels", "pred", "gt")
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class ClassRule:
    """One scored class: the voxel tests that make its mask from the ground-truth and the predicted label maps."""

    name: str
    gt: VoxelTest
    pred: VoxelTest


def class_rules(
    classes: Sequence[str] | Mapping[str, str] | None = None, gt_rule: str | None = None, pred_rule: str | None = None
) -> list[ClassRule]:
    """The classes to score.

    Without ``classes``: one class ``roi``, ground truth by ``gt_rule`` and prediction by ``pred_rule`` (both
    ``> 0`` by default). With ``classes`` (``"NAME=RULE"`` strings or a name -> rule mapping): each rule applies to
    both label maps, unless ``pred_rule`` is given, which then makes every class's prediction mask (a binary
    prediction scored against one zone of a zonal map).

    Raises:
        MedwssError: unparsable ``NAME=RULE`` or voxel test, a repeated name, or ``gt_rule`` next to ``classes``.
    """
    if not classes:
        gt, pred = VoxelTest.parse(gt_rule or DEFAULT_RULE), VoxelTest.parse(pred_rule or DEFAULT_RULE)
        return [ClassRule(DEFAULT_CLASS, gt, pred)]
    if gt_rule is not None:
        raise MedwssError("--gt-rule", "give either --gt-rule or --class NAME=RULE, not both")
    pairs = list(classes.items()) if isinstance(classes, Mapping) else [_split_class(text) for text in classes]
    rules: list[ClassRule] = []
    for name, rule in pairs:
        if any(r.name == name for r in rules):
            raise MedwssError(f"class {name}", "named twice")
        try:
            gt = VoxelTest.parse(rule)
            pred = VoxelTest.parse(pred_rule) if pred_rule is not None else gt
        except MedwssError as err:  # name the class, so the user knows which option to fix
            raise MedwssError(f"class {name}", err.problem) from None
        rules.append(ClassRule(name, gt, pred))
    return rules


def _split_class(text: str) -> tuple[str, str]:
    name, sep, rule = str(text).partition("=")
    name = name.strip()
    if not sep or not _NAME.match(name) or not rule.strip():
        raise MedwssError("--class", f"expected NAME=RULE such as 'pz=== 2' or 'gland=> 0', not {text!r}")
    return name, rule


# ---------------------------------------------------------------------------------------------------------------
# Pairing predictions with ground truths
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CasePair:
    case: str
    pred: Path
    gt: Path
    more_gt: tuple[Path, ...] = ()
    """Further ground-truth files of the case (a ``--gt-pattern`` with wildcards): scored as the union."""

    @property
    def gts(self) -> tuple[Path, ...]:
        return (self.gt, *self.more_gt)


@dataclass
class Matching:
    """Which prediction goes with which ground truth, and what found no partner (reported, not scored)."""

    pairs: list[CasePair]
    unmatched_predictions: list[Path] = field(default_factory=list)
    unmatched_ground_truths: list[Path] = field(default_factory=list)


def match_cases(pred: str | Path, gt: str | Path, gt_pattern: str | None = None) -> Matching:
    """Pair predictions with ground truths by case id.

    A prediction file pairs with a ground-truth file as it is, or with its case in a ground-truth folder (other
    ground truths are then not reported: one case was asked for). A prediction folder pairs with a ground-truth
    folder; both ways, what has no partner is listed in the result.

    Raises:
        MedwssError: a missing path, a folder file for a folder of predictions, two files for one case, a bad
            ``gt_pattern``, or no pair at all.
    """
    pred, gt = Path(pred), Path(gt)
    for path in (pred, gt):
        if not path.exists():
            raise MedwssError(path, "file or folder not found")
    if gt_pattern is not None and not gt.is_dir():
        raise MedwssError(gt, "--gt-pattern needs a ground-truth folder")
    if gt.is_file():
        if pred.is_dir():
            raise MedwssError(gt, "a folder of predictions needs a folder of ground truths")
        return Matching([CasePair(strip_suffix(pred), pred, gt)])
    truths = _pattern_table(gt, gt_pattern) if gt_pattern is not None else _folder_table(gt)
    preds = _folder_table(pred) if pred.is_dir() else {strip_suffix(pred): pred}
    matching = Matching(
        [CasePair(case, preds[case], *_first_and_rest(truths[case])) for case in sorted(preds) if case in truths],
        [preds[case] for case in sorted(preds) if case not in truths],
        [_first_and_rest(truths[case])[0] for case in sorted(truths) if case not in preds] if pred.is_dir() else [],
    )
    if not matching.pairs:
        where = f"{gt / gt_pattern}" if gt_pattern is not None else str(gt)
        raise MedwssError(pred, f"no prediction has a ground truth with the same case id in {where}")
    return matching


def _first_and_rest(found: Path | list[Path]) -> tuple[Path, tuple[Path, ...]]:
    if isinstance(found, list):
        return found[0], tuple(found[1:])
    return found, ()


def _folder_table(folder: Path) -> dict[str, Path]:
    """Case id -> volume file directly in ``folder`` (hidden and partial files are skipped)."""
    table: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or not volume_suffix(path):
            continue
        case = strip_suffix(path)
        if case in table:
            raise MedwssError(folder, f"two files for case {case!r}: {table[case].name}, {path.name}")
        table[case] = path
    if not table:
        raise MedwssError(folder, "holds no volume files (.nii.gz, .nii, .mha, .mhd, .nrrd, .nhdr)")
    return table


def _pattern_table(root: Path, pattern: str) -> dict[str, list[Path]]:
    """Case id -> files for a pattern like ``{case}/gland_reader1.nii.gz``; wildcards (``*``, ``?``) after
    ``{case}`` match several files of a case (``{case}/tumour*.nii.gz``), which are scored as their union."""
    if pattern.count("{case}") != 1 or Path(pattern).is_absolute() or not volume_suffix(pattern):
        raise MedwssError("--gt-pattern", f"{pattern!r} must be a relative volume path with one {{case}}")
    head, tail = pattern.split("{case}")
    if glob.has_magic(head):
        raise MedwssError("--gt-pattern", f"{pattern!r}: wildcards only after {{case}}")
    tail_regex = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in tail)
    found = re.compile(re.escape(head) + r"(?P<case>[^/]+?)" + tail_regex + "$")
    table: dict[str, list[Path]] = {}
    for path in sorted(root.glob(glob.escape(head) + "*" + tail)):
        match = found.match(path.relative_to(root).as_posix())
        if match and path.is_file():
            table.setdefault(match["case"], []).append(path)
    if not table:
        raise MedwssError(root, f"no file matches {pattern!r}")
    return table


def read_ground_truths(pair: CasePair) -> tuple[list[np.ndarray], Any]:
    """The label maps of a case's ground-truth files and their grid.

    Raises:
        MedwssError: an unreadable file, or ground truths of one case on different grids.
    """
    first, grid = read_mask_array(pair.gt)
    labels = [first]
    for path in pair.more_gt:
        other, other_grid = read_mask_array(path)
        problem = grid.mismatch(other_grid)
        if problem:
            raise MedwssError(path, f"not on the grid of {pair.gt} (same case): {problem}")
        labels.append(other)
    return labels, grid


def gt_class_mask(labels: Sequence[np.ndarray], rule: ClassRule) -> np.ndarray:
    """A class's ground-truth mask: the rule applied to every label map of the case, united."""
    mask = np.asarray(rule.gt(labels[0]), bool)
    for other in labels[1:]:
        mask = mask | np.asarray(rule.gt(other), bool)
    return mask


# ---------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------


def evaluate_pair(pair: CasePair, rules: Sequence[ClassRule]) -> list[dict[str, Any]]:
    """One row per class: Dice, IoU, HD95 and MSD (mm), and both masks' voxel counts.

    Raises:
        MedwssError: an unreadable label map, or a prediction on another grid than its ground truth.
    """
    gt_labels, gt_grid = read_ground_truths(pair)
    pred_labels, pred_grid = read_mask_array(pair.pred)
    problem = gt_grid.mismatch(pred_grid)
    if problem:
        raise MedwssError(pair.pred, f"prediction is not on the grid of its ground truth {pair.gt}: {problem}")
    # Both arrays are (x, y, z) and Geometry.spacing is (x, y, z): the spacing is already in array order.
    rows = []
    for rule in rules:
        pred_mask, gt_mask = rule.pred(pred_labels), gt_class_mask(gt_labels, rule)
        row: dict[str, Any] = {"case": pair.case, "class": rule.name}
        row.update(case_metrics(pred_mask, gt_mask, spacing=gt_grid.spacing))
        row.update(pred_voxels=int(np.count_nonzero(pred_mask)), gt_voxels=int(np.count_nonzero(gt_mask)))
        row.update(pred=str(pair.pred), gt=";".join(str(p) for p in pair.gts))
        rows.append(row)
        logger.info("%s %s: dice %.4f hd95 %.3f mm", pair.case, rule.name, row["dice"], row["hd95"])
    return rows


@dataclass
class EvalReport:
    """Rows (one per case and class), per-class summaries, and what was matched; the paths once written."""

    rows: list[dict[str, Any]]
    summary: dict[str, dict[str, dict[str, float | int]]]
    rules: list[ClassRule]
    matching: Matching
    cases_csv: Path | None = None
    summary_json: Path | None = None
    units: str = "mm"
    """Unit of HD95 and MSD: 'mm', or 'px' for slice sets without spacing (pixels; one slice step = 1)."""
    report_html: Path | None = None

    @property
    def num_cases(self) -> int:
        return len(self.matching.pairs)

    def to_json(self) -> dict[str, Any]:
        """The summary as plain JSON: NaN becomes null, paths strings."""
        data = {
            "cases": self.num_cases,
            "classes": {r.name: {"gt_rule": str(r.gt), "pred_rule": str(r.pred)} for r in self.rules},
            "units": {"hd95": self.units, "msd": self.units},
            "mDSC": {name: stats["dice"]["mean"] for name, stats in self.summary.items()},
            "mIoU": {name: stats["iou"]["mean"] for name, stats in self.summary.items()},
            "metrics": self.summary,
            "unmatched_predictions": [str(p) for p in self.matching.unmatched_predictions],
            "unmatched_ground_truths": [str(p) for p in self.matching.unmatched_ground_truths],
        }
        return _no_nan(data)


def evaluate_cases(
    matching: Matching, rules: Sequence[ClassRule], progress: Callable[[int], None] | None = None
) -> EvalReport:
    """Score every pair (all or nothing: the first bad file stops it) and summarise each class over cases."""
    rows: list[dict[str, Any]] = []
    for pair in matching.pairs:
        rows.extend(evaluate_pair(pair, rules))
        if progress is not None:
            progress(1)
    summary = {rule.name: summarise({k: r[k] for k in METRICS} for r in rows if r["class"] == rule.name)
               for rule in rules}
    return EvalReport(rows, summary, list(rules), matching)


def write_report(report: EvalReport, out_dir: str | Path) -> EvalReport:
    """Write ``cases.csv`` and ``summary.json`` into ``out_dir``, each through a temporary file and a rename.

    Raises:
        MedwssError: the folder cannot be made or written (no file is then left half written).
    """
    out = Path(out_dir)
    targets = {out / CASES_CSV: _csv_text(report.rows), out / SUMMARY_JSON: json.dumps(report.to_json(), indent=1)}
    temps: list[Path] = []
    try:
        out.mkdir(parents=True, exist_ok=True)
        for path, text in targets.items():
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
            temps.append(tmp)
            tmp.write_text(text, newline="" if path.suffix == ".csv" else None)
        for tmp, path in zip(temps, targets, strict=True):
            os.replace(tmp, path)
    except OSError as err:
        raise MedwssError(out, f"cannot write: {err.strerror or err}") from None
    finally:
        for tmp in temps:
            if tmp.exists():
                tmp.unlink()
    report.cases_csv, report.summary_json = out / CASES_CSV, out / SUMMARY_JSON
    return report


def _csv_text(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)  # floats as repr: full precision, NaN as 'nan'
    return buffer.getvalue()


def _no_nan(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------------------------
# Slice-folder sets: one predicted mask image per slice, scored per patient over the stacked slices
# ---------------------------------------------------------------------------------------------------------------


def slice_prediction_path(pred_dir: Path, root: Path, image: Path) -> Path:
    """Where a slice's predicted mask lies: the image's path under the data set root, as a .png under ``pred_dir``
    (what ``medwss segment`` writes for a slice set)."""
    return pred_dir / Path(image).relative_to(root).with_suffix(".png")


def evaluate_slice_set(
    pred_dir: str | Path, root: str | Path, spec: Any, progress: Callable[[int], None] | None = None
) -> EvalReport:
    """Score a slice set per patient: each patient's predicted and true slices are stacked (in the spec's order)
    and scored as one (x, y, z) mask. Ground truth: the spec's class rules on the mask images; prediction: label
    ``> 0`` for a one-class spec, label ``== k`` for the k-th class otherwise. There is no spacing: HD95 and MSD
    are in pixels (one slice step counts 1) and the report says so (``units: px``).

    A patient with no predicted slice at all is reported as unmatched, not scored.

    Raises:
        MedwssError: a bad slice set, a prediction missing for some of a patient's slices, a prediction whose size
            differs from its image.
    """
    from medwss.data.slice_folder import read_slice_mask

    pred_dir, root = Path(pred_dir), Path(root)
    if not pred_dir.is_dir():
        raise MedwssError(pred_dir, "prediction folder not found")
    names = list(spec.classes)
    rules = [
        ClassRule(name, test, VoxelTest.parse("> 0") if len(names) == 1 else VoxelTest("==", (float(k),)))
        for k, (name, test) in enumerate(spec.classes.items(), start=1)
    ]
    rows: list[dict[str, Any]] = []
    matching = Matching([])
    for patient in spec.discover(root):
        preds = [slice_prediction_path(pred_dir, root, row.image) for row in patient.rows]
        found = [p.is_file() for p in preds]
        if not any(found):
            matching.unmatched_ground_truths.append(root / patient.patient)
            continue
        if not all(found):
            missing = preds[found.index(False)]
            raise MedwssError(missing, f"no prediction for this slice of patient {patient.patient!r}")
        gt_slices, pred_slices = [], []
        for row, pred in zip(patient.rows, preds, strict=True):
            labels = read_slice_mask(row.mask) if row.mask is not None else None
            if labels is None:
                raise MedwssError(row.where, "no mask for this slice")
            predicted = read_slice_mask(pred)
            if predicted.shape != labels.shape:
                raise MedwssError(
                    pred, f"prediction size {predicted.shape[0]}x{predicted.shape[1]} differs from its mask's "
                    f"{labels.shape[0]}x{labels.shape[1]}"
                )
            gt_slices.append(labels)
            pred_slices.append(predicted)
        gt_stack, pred_stack = np.stack(gt_slices, -1), np.stack(pred_slices, -1)
        matching.pairs.append(CasePair(patient.patient, pred_dir, root))
        for rule in rules:
            pred_mask, gt_mask = rule.pred(pred_stack), rule.gt(gt_stack)
            row_out: dict[str, Any] = {"case": patient.patient, "class": rule.name}
            row_out.update(case_metrics(pred_mask, gt_mask, spacing=None))
            row_out.update(pred_voxels=int(np.count_nonzero(pred_mask)), gt_voxels=int(np.count_nonzero(gt_mask)))
            row_out.update(pred=str(pred_dir), gt=str(root))
            rows.append(row_out)
        if progress is not None:
            progress(1)
    if not matching.pairs:
        raise MedwssError(pred_dir, f"no predicted slice for any patient of {root}")
    summary = {rule.name: summarise({k: r[k] for k in METRICS} for r in rows if r["class"] == rule.name)
               for rule in rules}
    return EvalReport(rows, summary, rules, matching, units="px")
