"""Data sets: which cases exist, where their image, class masks and organ prior lie.

Two layouts are read:

* **MSD / nnU-Net** (``imagesTr/``, ``labelsTr/``, ``dataset.json``): the layout most public data sets and nnU-Net
  users already have. Classes default to the label values ``dataset.json`` declares (one class per non-background
  value); a spec may replace them with rules (e.g. whole gland = label > 0).
* **Pattern spec** (a YAML or JSON file): for data sets shipped another way (3D-IRCADb's one file per structure,
  Prostate158's folder per patient). Paths are patterns relative to the data set root with ``{case}`` standing
  for the case id; cases are found by globbing the image pattern.

A spec names the ROI classes (``LabelRule``s), an optional organ prior (a mask that limits where the ROI may be;
never the ROI label), the modality and the intensity preset. See ``configs/datasets/`` for examples.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medwss.data.io import strip_suffix, volume_suffix
from medwss.data.rules import LabelRule, VoxelTest
from medwss.errors import MedwssError

SPEC_KEYS = {
    "kind", "name", "modality", "preset", "image", "classes", "prior", "patient", "description", "licence", "license",
}  # fmt: skip


@dataclass(frozen=True)
class CaseRecord:
    """One scan of a data set, with the files that make its class masks and organ prior."""

    case: str
    patient: str
    image: Path
    class_files: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    exclude_files: dict[str, tuple[Path, ...]] = field(default_factory=dict)
    prior: Path | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """How to find the cases of a data set under a root folder.

    Args:
        name: short name used in reports.
        modality: ``"CT"`` or ``"MR"`` (or another DICOM modality word); picks checks and defaults.
        preset: intensity preset name (see ``medwss.data.transforms``).
        image: image pattern with ``{case}`` (pattern layout), or None for the MSD layout.
        classes: ROI class name -> rule.
        prior: organ-prior pattern with ``{case}``, or None.
        patient: regular expression whose first group turns a case id into a patient id (several scans of one
            patient must stay on one side of a split); None: one patient per case.
    """

    name: str
    modality: str = "MR"
    preset: str = "mr"
    image: str | None = None
    classes: dict[str, LabelRule] = field(default_factory=dict)
    prior: str | None = None
    patient: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "dataset spec") -> Any:
        """Build from a mapping (the YAML/JSON spec file's content); ``kind: slices`` gives a slice-folder spec
        (``medwss.data.slice_folder.SliceSetSpec``), ``kind: volumes`` (the default) this class.

        Raises:
            MedwssError: unknown keys or kind, no classes, malformed rules.
        """
        if not isinstance(config, dict):
            raise MedwssError(source, "a dataset spec must be a mapping")
        kind = config.get("kind", "volumes")
        if kind == "slices":
            from medwss.data.slice_folder import SliceSetSpec

            return SliceSetSpec.from_config(config, source)
        if kind != "volumes":
            raise MedwssError(source, f"unknown dataset spec kind {kind!r} (use 'volumes' or 'slices')")
        unknown = set(config) - SPEC_KEYS
        if unknown:
            raise MedwssError(source, f"unknown dataset spec keys: {', '.join(sorted(unknown))}")
        for key in ("image", "prior"):
            if config.get(key) is not None and not isinstance(config[key], str):
                raise MedwssError(source, f"{key!r} must be one path pattern with {{case}}, not {config[key]!r}")
        raw_classes = config.get("classes") or {}
        if not isinstance(raw_classes, dict):
            raise MedwssError(source, "'classes' must map class names to label rules")
        classes = {str(k): LabelRule.from_config(str(k), v) for k, v in raw_classes.items()}
        if config.get("image") and not classes:
            raise MedwssError(source, "a dataset spec needs at least one class under 'classes'")
        if config.get("image") and "{case}" not in str(config["image"]):
            raise MedwssError(source, "the 'image' pattern needs '{case}'")
        patient = config.get("patient")
        if patient is not None:
            _check_patient_regex(str(patient), source)
        return cls(
            name=str(config.get("name", Path(source).stem)),
            modality=str(config.get("modality", "MR")).upper(),
            preset=str(config.get("preset", "ct_abdomen" if str(config.get("modality", "")).upper() == "CT" else "mr")),
            image=config.get("image"),
            classes=classes,
            prior=config.get("prior"),
            patient=None if patient is None else str(patient),
        )

    @classmethod
    def load(cls, path: str | Path) -> Any:
        """Read a spec file (.yaml, .yml or .json).

        Raises:
            MedwssError: missing, unparsable, or invalid.
        """
        p = Path(path)
        if not p.is_file():
            raise MedwssError(p, "dataset spec not found")
        return cls.from_config(_read_mapping(p), str(p))

    def patient_of(self, case: str) -> str:
        if not self.patient:
            return case
        match = re.search(self.patient, case)
        return match.group(1) if match and match.groups() else case


def _check_patient_regex(pattern: str, source: str) -> None:
    """A patient regex must compile and capture the patient id in a group, else every case is its own patient."""
    try:
        groups = re.compile(pattern).groups
    except re.error as err:
        raise MedwssError(source, f"'patient' is not a regular expression: {err}") from None
    if groups < 1:
        raise MedwssError(source, f"'patient' regex {pattern!r} needs a group that captures the patient id")


def _read_mapping(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as err:
        raise MedwssError(path, f"cannot read: {err.strerror or err}") from None
    except (ValueError, yaml.YAMLError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        first = (str(err).splitlines() or [type(err).__name__])[0]
        raise MedwssError(path, f"cannot parse: {first}") from None


def discover_cases(
    root: str | Path, spec: DatasetSpec | None = None, problems: list[MedwssError] | None = None
) -> tuple[DatasetSpec, list[CaseRecord]]:
    """All cases under ``root``: the MSD layout when ``root/dataset.json`` exists and the spec has no image
    pattern, else the spec's patterns.

    Args:
        root: the data set folder.
        spec: how to find the cases; None for an MSD folder (classes from ``dataset.json``). A spec without
            classes on an MSD folder (e.g. only to set the modality) keeps the classes ``dataset.json`` declares.
        problems: when given, a case whose class files or prior are missing is left out and its error appended
            here instead of raised, so a data set check reports every such case, not only the first.

    Returns:
        the spec in force (for MSD, built from ``dataset.json`` unless given) and the cases sorted by id.

    Raises:
        MedwssError: no such folder, no spec for a non-MSD folder, no cases, missing class files.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedwssError(root, "data set folder not found")
    if getattr(spec, "kind", "volumes") == "slices":
        raise MedwssError(root, "a slice-folder spec has patients of 2D slices, not volume cases")
    if (spec is None or spec.image is None) and (root / "dataset.json").is_file():
        return _discover_msd(root, spec, problems)
    if spec is None or spec.image is None:
        raise MedwssError(root, "no dataset.json here: give a dataset spec (--spec) that names the image pattern")
    return spec, _discover_pattern(root, spec, problems)


def _add_record(cases: list[CaseRecord], problems: list[MedwssError] | None, *args: Any) -> None:
    """Append the case's record, or (when collecting problems) its error."""
    try:
        cases.append(_record(*args))
    except MedwssError as err:
        if problems is None:
            raise
        problems.append(err)


def _discover_pattern(root: Path, spec: DatasetSpec, problems: list[MedwssError] | None) -> list[CaseRecord]:
    assert spec.image is not None
    regex = re.compile(
        "^" + re.escape(spec.image).replace(re.escape("{case}"), "(?P<case>[^/]+)").replace(r"\*", "[^/]*") + "$"
    )
    cases: list[CaseRecord] = []
    matched = 0
    for path in sorted(root.glob(spec.image.replace("{case}", "*"))):
        match = regex.match(path.relative_to(root).as_posix())
        if not match:
            continue
        matched += 1
        case = match.group("case")
        if volume_suffix(case):
            case = strip_suffix(case)
        _add_record(cases, problems, root, spec, case, path)
    if not matched:
        raise MedwssError(root, f"no image matches the pattern {spec.image!r}")
    return cases


def _record(root: Path, spec: DatasetSpec, case: str, image: Path) -> CaseRecord:
    class_files, exclude_files = {}, {}
    for name, rule in spec.classes.items():
        files = rule.resolve(root, case)
        if not files and rule.missing == "error":
            raise MedwssError(root / rule.files[0].replace("{case}", case), f"no label file for class {name!r}")
        class_files[name] = tuple(files)
        exclude_files[name] = tuple(rule.resolve(root, case, rule.exclude))
    prior = None
    if spec.prior:
        prior = root / spec.prior.replace("{case}", case)
        if not prior.is_file():
            raise MedwssError(prior, "organ prior mask not found")
    return CaseRecord(case, spec.patient_of(case), image, class_files, exclude_files, prior)


def _discover_msd(
    root: Path, spec: DatasetSpec | None, problems: list[MedwssError] | None
) -> tuple[DatasetSpec, list[CaseRecord]]:
    meta_path = root / "dataset.json"
    meta = _read_mapping(meta_path)
    if not isinstance(meta, dict):
        raise MedwssError(meta_path, "dataset.json must hold a mapping")
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        raise MedwssError(meta_path, "'labels' must map label values to names (or names to values)")
    # MSD writes {"0": "background", "1": "PZ"}; nnU-Net v2 writes {"background": 0, "PZ": 1}.
    values = {}
    for k, v in labels.items():
        name, value = (v, k) if str(k).lstrip("-").isdigit() else (k, v)
        if isinstance(value, int | str) and str(value).lstrip("-").isdigit() and int(value) != 0:
            values[str(name)] = int(value)
    modality_words = " ".join(str(v) for v in (meta.get("modality") or meta.get("channel_names") or {}).values())
    modality = "CT" if "CT" in modality_words.upper() else "MR"
    if spec is None or not spec.classes:
        classes = {
            n: LabelRule(("labelsTr/{case}" + _ending(meta),), VoxelTest("==", (float(v),))) for n, v in values.items()
        }
        if not classes:
            raise MedwssError(meta_path, "dataset.json declares no foreground label")
        if spec is None:
            spec = DatasetSpec(
                name=str(meta.get("name", root.name)),
                modality=modality,
                preset="ct_abdomen" if modality == "CT" else "mr",
                classes=classes,
            )
        else:
            spec = replace(spec, classes=classes)
    images = _msd_images(root, meta)
    if not images:
        raise MedwssError(root / "imagesTr", "no training images")
    cases: list[CaseRecord] = []
    for image in images:
        case = strip_suffix(image)
        if "file_ending" in meta and re.search(r"_\d{4}$", case):
            case = case[:-5]  # nnU-Net v2 channel suffix
        _add_record(cases, problems, root, spec, case, image)
    return spec, sorted(cases, key=lambda record: record.case)


def _ending(meta: dict[str, Any]) -> str:
    return str(meta.get("file_ending", ".nii.gz"))


def _msd_images(root: Path, meta: dict[str, Any]) -> list[Path]:
    training = meta.get("training")
    if isinstance(training, list) and training and isinstance(training[0], dict):
        images = [root / str(item["image"]) for item in training if "image" in item]
    else:
        images = sorted((root / "imagesTr").glob("*" + _ending(meta)))
        if "file_ending" in meta:  # nnU-Net v2: one file per channel, case_0000 is the first; MSD has no such suffix
            images = [p for p in images if not re.search(r"_(?!0000)\d{4}" + re.escape(_ending(meta)) + "$", p.name)]
    return [p.resolve() if p.exists() else p for p in images]
