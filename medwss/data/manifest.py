"""Weak-label manifests: slice-level presence labels, the real input of a weakly-supervised user.

A manifest says, per image, per slice, per class, whether the ROI is present (1), absent (0) or unknown (unlabelled).
Two file forms hold the same thing:

* **CSV**, one row per slice and class: ``image,slice,class,present`` plus optional ``case``, ``patient``,
  ``prior``; an empty ``present`` (or no row) is an unlabelled slice. Slice indices are z in the image array as
  loaded (x, y, z), the axis a radiologist scrolls.
* **JSON datalist** (MONAI style): ``{"classes": [...], "training": [{"image", "case", "patient", "prior",
  "presence": {class: [0, 1, null, ...]}}]}``, one list entry per slice.

Relative paths are relative to the manifest's own folder, so a manifest can sit beside the data or anywhere else.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.io import strip_suffix
from medwss.errors import MedwssError
from medwss.runtime.atomic import atomic_output

CSV_COLUMNS = ("image", "slice", "class", "present")
CSV_OPTIONAL = ("case", "patient", "prior")


@dataclass
class LabelledImage:
    """One image and its slice-level presence labels: ``presence[class][z]`` in {0, 1, nan (unlabelled)}."""

    image: Path
    case: str
    patient: str
    presence: dict[str, np.ndarray] = field(default_factory=dict)
    prior: Path | None = None
    stack: Any = None
    """A slice-folder patient (``medwss.data.slice_folder.SliceStack``) instead of a volume file at ``image``."""

    @property
    def num_slices(self) -> int:
        return max((len(v) for v in self.presence.values()), default=0)


@dataclass
class Manifest:
    """Presence labels for a set of images, with the class names in a fixed order."""

    classes: list[str]
    images: list[LabelledImage]

    def patients(self) -> list[str]:
        return sorted({item.patient for item in self.images})

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per class: (slices present, slices absent)."""
        out = {}
        for name in self.classes:
            values = np.concatenate([item.presence.get(name, np.empty(0)) for item in self.images] or [np.empty(0)])
            out[name] = (int(np.sum(values == 1)), int(np.sum(values == 0)))
        return out


def read_manifest(path: str | Path) -> Manifest:
    """Read a CSV or JSON manifest.

    Raises:
        MedwssError: missing file, unknown format, missing columns, bad values (each naming the row).
    """
    p = Path(path)
    if not p.is_file():
        raise MedwssError(p, "manifest not found")
    if p.suffix.lower() == ".csv":
        return _read_csv(p)
    if p.suffix.lower() == ".json":
        return _read_json(p)
    raise MedwssError(p, "a manifest is a .csv or .json file")


def _resolve(base: Path, value: str) -> Path:
    """A manifest path: absolute as given, relative from the manifest's real folder (as ``write_manifest`` made it)."""
    candidate = Path(value)
    return candidate if candidate.is_absolute() else Path(os.path.normpath(base.resolve() / candidate))


def _read_csv(p: Path) -> Manifest:
    rows: dict[str, dict] = {}
    classes: list[str] = []
    try:
        # utf-8-sig: a spreadsheet's CSV export often starts with a byte-order mark that would hide the 'image' column.
        with p.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            missing = [c for c in CSV_COLUMNS if c not in reader.fieldnames]
            if missing:
                raise MedwssError(p, f"missing columns: {', '.join(missing)} (need {', '.join(CSV_COLUMNS)})")
            for line, row in enumerate(reader, start=2):
                image, z, name, present = _csv_row(p, line, row)
                if name not in classes:
                    classes.append(name)
                entry = rows.setdefault(os.path.normpath(image), {"labels": {}, "row": row})
                labels = entry["labels"].setdefault(name, {})
                if z in labels and not _same(labels[z], present):
                    raise MedwssError(p, f"row {line}: slice {z} of class {name!r} of {image} given twice, differently")
                labels[z] = present
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise MedwssError(p, f"cannot read as CSV: {err}") from None
    images = []
    for image, entry in rows.items():
        row = entry["row"]
        case = (row.get("case") or "").strip() or strip_suffix(image)
        prior = (row.get("prior") or "").strip()
        item = LabelledImage(
            _resolve(p.parent, image),
            case,
            (row.get("patient") or "").strip() or case,
            prior=_resolve(p.parent, prior) if prior else None,
        )
        depth = 1 + max(z for labels in entry["labels"].values() for z in labels)
        for name, labels in entry["labels"].items():
            values = np.full(depth, np.nan)
            values[list(labels)] = list(labels.values())
            item.presence[name] = values
        images.append(item)
    return Manifest(classes, images)


def _csv_row(p: Path, line: int, row: dict) -> tuple[str, int, str, float]:
    """(image, slice, class, present) of one CSV row; an empty ``present`` is an unlabelled slice (nan).

    Raises:
        MedwssError: a short row, an empty image or class, a slice that is not an integer >= 0, a present not 0/1.
    """
    short = [c for c in CSV_COLUMNS if row.get(c) is None]
    if short:
        raise MedwssError(p, f"row {line}: no value for {', '.join(short)}")
    image, name, present_text = row["image"].strip(), row["class"].strip(), row["present"].strip()
    if not image or not name:
        raise MedwssError(p, f"row {line}: empty {'image' if not image else 'class'}")
    try:
        z = int(row["slice"])
    except ValueError:
        raise MedwssError(p, f"row {line}: slice {row['slice']!r} is not an integer") from None
    if z < 0:
        raise MedwssError(p, f"row {line}: slice {z} is negative")
    if present_text not in ("0", "1", ""):
        raise MedwssError(p, f"row {line}: present must be 0, 1 or empty (unlabelled), not {present_text!r}")
    return image, z, name, float(present_text) if present_text else np.nan


def _same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


def _read_json(p: Path) -> Manifest:
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError) as err:
        raise MedwssError(p, f"not valid JSON: {err}") from None
    items = data.get("training") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MedwssError(p, "a JSON manifest needs a 'training' list")
    classes = data.get("classes") or []
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise MedwssError(p, "'classes' must be a list of class names")
    classes = list(classes)
    images = []
    for i, entry in enumerate(items):
        if not isinstance(entry, dict) or "image" not in entry or not isinstance(entry.get("presence"), dict):
            raise MedwssError(p, f"training[{i}]: needs 'image' and a 'presence' mapping")
        image = str(entry["image"])
        case = str(entry.get("case") or strip_suffix(image))
        item = LabelledImage(
            _resolve(p.parent, image),
            case,
            str(entry.get("patient") or case),
            prior=_resolve(p.parent, str(entry["prior"])) if entry.get("prior") else None,
        )
        for name, values in entry["presence"].items():
            item.presence[str(name)] = _presence_array(p, i, name, values)
            if str(name) not in classes:
                classes.append(str(name))
        images.append(item)
    return Manifest(classes, images)


def _presence_array(p: Path, i: int, name: str, values: object) -> np.ndarray:
    """One class's per-slice list (0, 1 or null) as a float array with nan for null.

    Raises:
        MedwssError: not a flat list of 0, 1 and null.
    """
    problem = MedwssError(p, f"training[{i}] class {name!r}: presence must be a list of 0, 1 or null")
    if not isinstance(values, list) or not all(v is None or isinstance(v, int | float) for v in values):
        raise problem
    array = np.array([np.nan if v is None else float(v) for v in values], dtype=float)
    if not np.all(np.isnan(array) | (array == 0) | (array == 1)):
        raise problem
    return array


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write as CSV or JSON (by suffix), paths relative to the manifest's folder, through a temporary file.

    Unlabelled slices (nan) are written too (an empty ``present`` in CSV, null in JSON), so a round trip keeps them.

    Raises:
        MedwssError: unknown suffix, or the file cannot be written (the target is then left as it was).
    """
    out = Path(path)
    if out.suffix.lower() not in (".csv", ".json"):
        raise MedwssError(out, "a manifest is a .csv or .json file")
    try:
        manifest = _flat(manifest)
        with atomic_output(out) as tmp, tmp.open("w", newline="") as handle:
            base = out.parent.resolve()
            if out.suffix.lower() == ".csv":
                _write_csv(manifest, handle, base)
            else:
                json.dump(_json_data(manifest, base), handle, indent=1)
    except OSError as err:
        raise MedwssError(out, f"cannot write: {err.strerror or err}") from None
    return out


def _flat(manifest: Manifest) -> Manifest:
    """Slice-folder patients as one item per slice file (a 2D image is a one-slice scan; its case is
    ``<patient>_<order>``), so a written manifest names only real files; the organ prior is the mask file when the
    spec's prior is ``> 0`` (the only rule a manifest's prior column can express)."""
    if all(item.stack is None for item in manifest.images):
        return manifest
    images = []
    for item in manifest.images:
        if item.stack is None:
            images.append(item)
            continue
        prior_is_mask = str(item.stack.spec.prior) == "> 0"
        for z, row in enumerate(item.stack.patient.rows):
            flat = LabelledImage(
                row.image, f"{item.patient}_{row.order}", item.patient, prior=row.mask if prior_is_mask else None
            )
            flat.presence = {name: values[z : z + 1] for name, values in item.presence.items()}
            images.append(flat)
    return Manifest(manifest.classes, images)


def _relative(p: Path, base: Path) -> str:
    return os.path.relpath(Path(p).resolve(), base)


def _write_csv(manifest: Manifest, handle, base: Path) -> None:
    writer = csv.writer(handle)
    writer.writerow(CSV_COLUMNS + CSV_OPTIONAL)
    for item in manifest.images:
        image, prior = _relative(item.image, base), _relative(item.prior, base) if item.prior else ""
        for z in range(item.num_slices):
            for name in manifest.classes:
                value = item.presence.get(name, np.empty(0))
                if z < len(value):
                    present = "" if np.isnan(value[z]) else int(value[z])
                    writer.writerow([image, z, name, present, item.case, item.patient, prior])


def _json_data(manifest: Manifest, base: Path) -> dict:
    return {
        "classes": manifest.classes,
        "training": [
            {
                "image": _relative(item.image, base),
                "case": item.case,
                "patient": item.patient,
                **({"prior": _relative(item.prior, base)} if item.prior else {}),
                "presence": {
                    n: [None if np.isnan(v) else int(v) for v in item.presence[n]]
                    for n in manifest.classes
                    if n in item.presence
                },
            }
            for item in manifest.images
        ],
    }


def manifest_from_masks(root, spec=None, progress=None) -> Manifest:
    """Derive slice-level presence labels from a data set's masks and label rules.

    This is how public data sets with masks become weak-label training data: only the per-slice yes/no survives.

    Args:
        root: the data set folder.
        spec: a ``DatasetSpec`` (None for an MSD folder with ``dataset.json``).
        progress: optional callable(advance_by) for a progress bar.

    Raises:
        MedwssError: anything ``discover_cases`` or the mask loaders report.
    """
    from medwss.data.datalist import discover_cases
    from medwss.data.io import Geometry, read_sitk
    from medwss.data.rules import apply_rule
    from medwss.data.slice_folder import SliceSetSpec, slice_manifest

    if isinstance(spec, SliceSetSpec):
        return slice_manifest(root, spec, progress)
    spec, cases = discover_cases(root, spec)
    images = []
    for record in cases:
        geometry = Geometry.of(read_sitk(record.image))
        item = LabelledImage(record.image, record.case, record.patient, prior=record.prior)
        for name, rule in spec.classes.items():
            mask = apply_rule(rule, list(record.class_files[name]), list(record.exclude_files[name]), geometry)
            item.presence[name] = mask.reshape(-1, mask.shape[-1]).any(axis=0).astype(float)
        images.append(item)
        if progress is not None:
            progress(1)
    return Manifest(list(spec.classes), images)
