"""Weak-label manifests: slice-level presence labels, the real input of a weakly-supervised user.

A manifest says, per image, per slice, per class, whether the ROI is present (1), absent (0) or unknown (unlabelled).
Two file forms hold the same thing:

* **CSV**, one row per slice and class: ``image,slice,class,present`` plus optional ``case``, ``patient``,
  ``prior``. Slice indices are z in the image array as loaded (x, y, z), the axis a radiologist scrolls.
* **JSON datalist** (MONAI style): ``{"classes": [...], "training": [{"image", "case", "patient", "prior",
  "presence": {class: [0, 1, null, ...]}}]}``, one list entry per slice.

Relative paths are relative to the manifest's own folder, so a manifest can sit beside the data or anywhere else.
"""

from __future__ import annotations

import csv
import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medwss.data.io import strip_suffix
from medwss.errors import MedwssError

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
    candidate = Path(value)
    return candidate if candidate.is_absolute() else (base / candidate)


def _read_csv(p: Path) -> Manifest:
    with p.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise MedwssError(p, f"missing columns: {', '.join(missing)} (need {', '.join(CSV_COLUMNS)})")
        rows: dict[str, dict] = {}
        classes: list[str] = []
        for line, row in enumerate(reader, start=2):
            try:
                z = int(row["slice"])
                present = int(row["present"])
            except (TypeError, ValueError):
                raise MedwssError(p, f"row {line}: slice and present must be integers") from None
            if present not in (0, 1) or z < 0:
                raise MedwssError(p, f"row {line}: present must be 0 or 1 and slice >= 0")
            name = row["class"].strip()
            if not name:
                raise MedwssError(p, f"row {line}: empty class")
            if name not in classes:
                classes.append(name)
            image = row["image"].strip()
            entry = rows.setdefault(image, {"labels": {}, "row": row})
            entry["labels"].setdefault(name, {})[z] = present
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


def _read_json(p: Path) -> Manifest:
    try:
        data = json.loads(p.read_text())
    except ValueError as err:
        raise MedwssError(p, f"not valid JSON: {err}") from None
    items = data.get("training") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise MedwssError(p, "a JSON manifest needs a 'training' list")
    classes = list(data.get("classes") or [])
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
            array = np.array([np.nan if v is None else v for v in values], dtype=float)
            if not np.all(np.isnan(array) | (array == 0) | (array == 1)):
                raise MedwssError(p, f"training[{i}] class {name!r}: presence values must be 0, 1 or null")
            if name not in classes:
                classes.append(str(name))
            item.presence[str(name)] = array
        images.append(item)
    return Manifest(classes, images)


def write_manifest(manifest: Manifest, path: str | Path) -> Path:
    """Write as CSV or JSON (by suffix), paths relative to the manifest's folder, through a temporary file.

    Raises:
        MedwssError: unknown suffix.
    """
    out = Path(path)
    if out.suffix.lower() not in (".csv", ".json"):
        raise MedwssError(out, "a manifest is a .csv or .json file")
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()

    def rel(p: Path) -> str:
        return os.path.relpath(Path(p).resolve(), base)

    tmp = out.with_name(f".{out.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with tmp.open("w", newline="") as handle:
            if out.suffix.lower() == ".csv":
                writer = csv.writer(handle)
                writer.writerow(CSV_COLUMNS + CSV_OPTIONAL)
                for item in manifest.images:
                    for z in range(item.num_slices):
                        for name in manifest.classes:
                            value = item.presence.get(name, np.empty(0))
                            if z < len(value) and not np.isnan(value[z]):
                                prior = rel(item.prior) if item.prior else ""
                                writer.writerow(
                                    [rel(item.image), z, name, int(value[z]), item.case, item.patient, prior]
                                )
            else:
                data = {
                    "classes": manifest.classes,
                    "training": [
                        {
                            "image": rel(item.image),
                            "case": item.case,
                            "patient": item.patient,
                            **({"prior": rel(item.prior)} if item.prior else {}),
                            "presence": {
                                n: [None if np.isnan(v) else int(v) for v in item.presence[n]]
                                for n in manifest.classes
                                if n in item.presence
                            },
                        }
                        for item in manifest.images
                    ],
                }
                json.dump(data, handle, indent=1)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


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
