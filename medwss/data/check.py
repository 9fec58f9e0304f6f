"""Data set integrity check (as nnU-Net's ``verify_dataset_integrity``): read everything, report every problem.

Unlike the loaders, which stop at the first bad file, the check keeps going and returns one ``Problem`` per bad file
or row, so a user fixes their data in one pass.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
    if p.is_dir() and (spec is not None or (p / "dataset.json").is_file()):
        return _check_dataset(p, spec, progress, on_total)
    if is_volume_path(p):
        report = CheckReport(str(p), "volume", 1, list(_volume_problems(p)))
        report.summary = "1 volume read"
        return report
    if p.is_dir():
        raise MedwssError(p, "not a data set (no dataset.json; give --spec), a DICOM series or a volume")
    raise MedwssError(p, "not a manifest (.csv/.json), a data set folder or a volume")


def _volume_problems(path: Path, expect_ct: bool = False) -> Iterator[Problem]:
    from medwss.data.io import load_volume

    try:
        volume = load_volume(path)
    except MedwssError as err:
        yield Problem(err.path, err.problem)
        return
    if expect_ct:
        lo, hi = float(volume.min()), float(volume.max())
        problem = ct_range_problem(lo, hi)
        if problem:
            yield Problem(str(path), problem)


def ct_range_problem(lo: float, hi: float) -> str | None:
    """Why values ``lo..hi`` are not CT Hounsfield units, or None.

    Air is about -1000 HU and soft tissue 0..100 HU, so a CT scan spans at least several hundred HU and reaches
    well below zero; an image in [0, 1] or [0, 255] is a normalised or screenshot export, not HU.
    """
    if hi - lo < 200 or lo > -200:
        return f"values {lo:g}..{hi:g} do not look like CT Hounsfield units (expected air near -1000)"
    if lo < -4000 or hi > 40000:
        return f"values {lo:g}..{hi:g} are outside any CT Hounsfield range"
    return None


def _check_dataset(root: Path, spec, progress: Progress | None, on_total) -> CheckReport:
    from medwss.data.datalist import discover_cases
    from medwss.data.io import Geometry, load_mask, read_sitk

    report = CheckReport(str(root), "data set", problems=[])
    try:
        spec, cases = discover_cases(root, spec)
    except MedwssError as err:
        report.problems.append(Problem(err.path, err.problem))
        return report
    if on_total:
        on_total(len(cases))
    declared = _declared_values(root)
    present = {name: 0 for name in spec.classes}
    for record in cases:
        report.items += 1
        image_problems = list(_volume_problems(record.image, expect_ct=spec.modality == "CT"))
        report.problems.extend(image_problems)
        if image_problems:
            if progress:
                progress(1)
            continue
        geometry = Geometry.of(read_sitk(record.image))
        for name, files in record.class_files.items():
            found = False
            for label_path in (*files, *record.exclude_files.get(name, ())):
                try:
                    labels = np.asarray(load_mask(label_path, geometry))
                except MedwssError as err:
                    report.problems.append(Problem(err.path, err.problem))
                    continue
                if declared is not None:
                    extra = sorted(set(np.unique(labels).tolist()) - declared)
                    if extra:
                        report.problems.append(
                            Problem(str(label_path), f"label values {extra} are not declared in dataset.json")
                        )
                found = found or (label_path in files and bool(spec.classes[name].test(labels).any()))
            present[name] += int(found)
        if record.prior is not None:
            try:
                prior = np.asarray(load_mask(record.prior, geometry))
                if not prior.any():
                    report.problems.append(Problem(str(record.prior), "organ prior mask is empty"))
            except MedwssError as err:
                report.problems.append(Problem(err.path, err.problem))
        if progress:
            progress(1)
    classes = ", ".join(f"{n} in {c}/{len(cases)} cases" for n, c in present.items())
    report.summary = f"{len(cases)} cases of {spec.name} ({spec.modality}); {classes}"
    return report


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
    from medwss.data.io import Geometry, load_mask, read_sitk
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
        image_problems = list(_volume_problems(item.image, expect_ct=spec is not None and spec.modality == "CT"))
        report.problems.extend(image_problems)
        if not image_problems:
            image = read_sitk(item.image)
            depth = image.GetSize()[-1]
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
                    load_mask(item.prior, Geometry.of(image))
                except MedwssError as err:
                    report.problems.append(Problem(err.path, err.problem))
        if progress:
            progress(1)
    counts = ", ".join(f"{n}: {p} present / {a} absent slices" for n, (p, a) in manifest.counts().items())
    report.summary = f"{len(manifest.images)} images, {len(manifest.patients())} patients; {counts}"
    return report
