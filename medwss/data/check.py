"""Data set integrity check (as nnU-Net's ``verify_dataset_integrity``): read everything, report every problem.

Unlike the loaders, which stop at the first bad file, the check keeps going and returns one ``Problem`` per bad file
or row, so a user fixes their data in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import MedwssError


@dataclass(frozen=True)
class Problem:
    """One thing wrong: the file (or row) and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class CheckReport:
    """What the check read and what it found."""

    target: str
    kind: str
    items: int = 0
    problems: list[Problem] | None = None
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


Progress = Callable[[int], None]


def check_path(
    path: str | Path,
    spec_path: str | Path | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> CheckReport:
    """Check a data set folder (MSD or with a spec), a manifest (.csv/.json), a DICOM folder or one volume.

    Args:
        path: what to check.
        spec_path: a dataset spec for folders without ``dataset.json`` (and to check manifest class names).
        progress: called with 1 after each item (image or case) is read.
        on_total: called once with the number of items, when known.

    Raises:
        MedwssError: only when ``path`` itself cannot be read at all (missing, unknown kind); every problem inside
            it is reported, not raised.
    """
    from medwss.data.datalist import DatasetSpec
    from medwss.data.io import is_volume_path

    p = Path(path)
    if not p.exists():
        raise MedwssError(p, "file not found")
    spec = DatasetSpec.load(spec_path) if spec_path else None
    if p.is_file() and p.suffix.lower() in (".csv", ".json") and p.name != "dataset.json":
        return _check_manifest(p, spec, progress, on_total)
    if p.is_file() and p.name == "dataset.json":
        p = p.parent
    if p.is_dir() and getattr(spec, "kind", "volumes") == "slices":
        from medwss.data.slice_folder import check_slice_set

        return check_slice_set(p, spec, progress, on_total)
    if p.is_dir() and (spec is not None or (p / "dataset.json").is_file()):
        return _check_dataset(p, spec, progress, on_total)
    if is_volume_path(p):
        report = CheckReport(str(p), "volume", 1, _read_image(p)[0])
        report.summary = "1 volume read"
        return report
    if p.is_dir():
        raise MedwssError(p, "not a data set (no dataset.json; give --spec), a DICOM series or a volume")
    raise MedwssError(p, "not a manifest (.csv/.json), a data set folder or a volume")


def _read_image(path: Path, expect_ct: bool = False) -> tuple[list[Problem], Any]:
    """Read one image once: its problems and, when it could be read, its grid (plain arrays, no MONAI)."""
    from medwss.data.io import ct_range_problem, read_volume_array

    try:
        array, geometry, _ = read_volume_array(path)
    except MedwssError as err:
        return [Problem(err.path, err.problem)], None
    if expect_ct:
        problem = ct_range_problem(float(array.min()), float(array.max()))
        if problem:
            return [Problem(str(path), problem)], geometry
    return [], geometry


def start_report(root: Path, kind: str, discover, on_total=None) -> tuple[CheckReport, Any]:
    """A new report of ``root`` and what ``discover(problems)`` found (None when it failed outright: the report then
    says why); files it could not find are problems of the report, not a stop."""
    report = CheckReport(str(root), kind, problems=[])
    missing: list[MedwssError] = []
    try:
        found = discover(missing)
    except MedwssError as err:
        report.problems.append(Problem(err.path, err.problem))
        return report, None
    report.problems.extend(Problem(err.path, err.problem) for err in missing)
    if on_total:
        on_total(len(found[-1] if isinstance(found, tuple) else found))
    return report, found


def _check_dataset(root: Path, spec, progress: Progress | None, on_total) -> CheckReport:
    from medwss.data.datalist import discover_cases

    report, found = start_report(root, "data set", lambda missing: discover_cases(root, spec, problems=missing),
                                 on_total)  # fmt: skip
    if found is None:
        return report
    spec, cases = found
    declared = _declared_values(root)
    expect_ct = _expects_ct(spec)
    present = {name: 0 for name in spec.classes}
    for record in cases:
        report.items += 1
        image_problems, geometry = _read_image(record.image, expect_ct=expect_ct)
        report.problems.extend(image_problems)
        if not image_problems:
            # Several classes may read one file (MSD: PZ and TZ from one label map): read and report it once.
            labels = _read_labels(record, geometry, declared, report.problems)
            for name, rule in spec.classes.items():
                mask = np.zeros(geometry.size, dtype=bool)
                for path in record.class_files.get(name, ()):
                    if labels.get(path) is not None:
                        mask |= rule.test(labels[path])
                for path in record.exclude_files.get(name, ()):
                    if labels.get(path) is not None:
                        mask &= ~(labels[path] > 0)
                present[name] += int(mask.any())
            if record.prior is not None and labels.get(record.prior) is not None and not labels[record.prior].any():
                report.problems.append(Problem(str(record.prior), "organ prior mask is empty"))
        if progress:
            progress(1)
    classes = ", ".join(f"{n} in {c}/{len(cases)} cases" for n, c in present.items())
    report.summary = f"{len(cases)} cases of {spec.name} ({spec.modality}); {classes}"
    return report


def _expects_ct(spec) -> bool:
    """Hounsfield units are required for CT data and for any CT intensity preset (it windows fixed HU values)."""
    return spec is not None and (spec.modality == "CT" or spec.preset.lower().startswith("ct"))


def _read_labels(record, geometry, declared: set[int] | None, problems: list[Problem]) -> dict[Path, np.ndarray | None]:
    """Every label, exclusion and prior file of a case, read once; None for a file that has a problem."""
    from medwss.data.io import read_mask_array

    paths = [*(p for files in record.class_files.values() for p in files)]
    paths += [p for files in record.exclude_files.values() for p in files]
    paths += [record.prior] if record.prior is not None else []
    labels: dict[Path, np.ndarray | None] = {}
    for path in dict.fromkeys(paths):
        try:
            labels[path] = read_mask_array(path, geometry)[0]
        except MedwssError as err:
            problems.append(Problem(err.path, err.problem))
            labels[path] = None
            continue
        if declared is not None and path != record.prior:
            extra = sorted(set(np.unique(labels[path]).tolist()) - declared)
            if extra:
                problems.append(Problem(str(path), f"label values {extra} are not declared in dataset.json"))
    return labels


def _declared_values(root: Path) -> set[int] | None:
    meta_path = root / "dataset.json"
    if not meta_path.is_file():
        return None
    try:
        labels = json.loads(meta_path.read_text()).get("labels") or {}
    except (ValueError, AttributeError):
        return None
    values = set()
    for k, v in labels.items():
        value = k if str(k).lstrip("-").isdigit() else v
        if str(value).lstrip("-").isdigit():
            values.add(int(value))
    return values or None


def _check_manifest(path: Path, spec, progress: Progress | None, on_total) -> CheckReport:
    from medwss.data.io import read_mask_array
    from medwss.data.manifest import read_manifest

    report = CheckReport(str(path), "manifest", problems=[])
    try:
        manifest = read_manifest(path)
    except MedwssError as err:
        report.problems.append(Problem(err.path, err.problem))
        return report
    if spec is not None:
        for name in manifest.classes:
            if name not in spec.classes:
                report.problems.append(
                    Problem(str(path), f"class {name!r} is not declared ({', '.join(spec.classes)})")
                )
    if on_total:
        on_total(len(manifest.images))
    for item in manifest.images:
        report.items += 1
        image_problems, geometry = _read_image(item.image, expect_ct=_expects_ct(spec))
        report.problems.extend(image_problems)
        if not image_problems:
            depth = geometry.size[-1]
            for name, values in item.presence.items():
                rows = np.flatnonzero(~np.isnan(values))
                beyond = rows[rows >= depth]
                if beyond.size:
                    report.problems.append(
                        Problem(
                            str(path),
                            f"{item.image.name}: class {name!r} names slices "
                            f"{beyond.tolist()[:5]} but the image has {depth} slices",
                        )
                    )
            if item.prior is not None:
                try:
                    read_mask_array(item.prior, geometry)
                except MedwssError as err:
                    report.problems.append(Problem(err.path, err.problem))
        if progress:
            progress(1)
    counts = ", ".join(f"{n}: {p} present / {a} absent slices" for n, (p, a) in manifest.counts().items())
    report.summary = f"{len(manifest.images)} images, {len(manifest.patients())} patients; {counts}"
    return report
