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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medwss.data.io import strip_suffix, volume_suffix
from medwss.data.rules import LabelRule, VoxelTest
from medwss.errors import MedwssError

SPEC_KEYS = {"name", "modality", "preset", "image", "classes", "prior", "patient", "description", "licence", "license"}


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
    def from_config(cls, config: dict[str, Any], source: str = "dataset spec") -> DatasetSpec:
        """Build from a mapping (the YAML/JSON spec file's content).

        Raises:
            MedwssError: unknown keys, no classes, malformed rules.
        """
        if not isinstance(config, dict):
            raise MedwssError(source, "a dataset spec must be a mapping")
        unknown = set(config) - SPEC_KEYS
        if unknown:
            raise MedwssError(source, f"unknown dataset spec keys: {', '.join(sorted(unknown))}")
        classes = {str(k): LabelRule.from_config(str(k), v) for k, v in (config.get("classes") or {}).items()}
        if config.get("image") and not classes:
            raise MedwssError(source, "a dataset spec needs at least one class under 'classes'")
        if config.get("image") and "{case}" not in str(config["image"]):
            raise MedwssError(source, "the 'image' pattern needs '{case}'")
        return cls(
            name=str(config.get("name", Path(source).stem)),
            modality=str(config.get("modality", "MR")).upper(),
            preset=str(config.get("preset", "ct_abdomen" if str(config.get("modality", "")).upper() == "CT" else "mr")),
            image=config.get("image"),
            classes=classes,
            prior=config.get("prior"),
            patient=config.get("patient"),
        )

    @classmethod
    def load(cls, path: str | Path) -> DatasetSpec:
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


def _read_mapping(path: Path) -> Any:
    text = path.read_text()
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except (ValueError, ImportError) as err:  # json.JSONDecodeError and yaml.YAMLError derive from ValueError here
        raise MedwssError(path, f"cannot parse: {str(err).splitlines()[0]}") from None
    except Exception as err:  # yaml.YAMLError is not a ValueError
        raise MedwssError(path, f"cannot parse: {str(err).splitlines()[0]}") from None


def discover_cases(root: str | Path, spec: DatasetSpec | None = None) -> tuple[DatasetSpec, list[CaseRecord]]:
    """All cases under ``root``: the MSD layout when ``root/dataset.json`` exists and the spec has no image
    pattern, else the spec's patterns.

    Returns:
        the spec in force (for MSD, built from ``dataset.json`` unless given) and the cases sorted by id.

    Raises:
        MedwssError: no such folder, no spec for a non-MSD folder, no cases, missing class files.
    """
    root = Path(root)
    if not root.is_dir():
        raise MedwssError(root, "data set folder not found")
    if (spec is None or spec.image is None) and (root / "dataset.json").is_file():
        return _discover_msd(root, spec)
    if spec is None or spec.image is None:
        raise MedwssError(root, "no dataset.json here: give a dataset spec (--spec) that names the image pattern")
    return spec, _discover_pattern(root, spec)


def _discover_pattern(root: Path, spec: DatasetSpec) -> list[CaseRecord]:
    assert spec.image is not None
    regex = re.compile(
        "^" + re.escape(spec.image).replace(re.escape("{case}"), "(?P<case>[^/]+)").replace(r"\*", "[^/]*") + "$"
    )
    cases: list[CaseRecord] = []
    for path in sorted(root.glob(spec.image.replace("{case}", "*"))):
        match = regex.match(path.relative_to(root).as_posix())
        if not match:
            continue
        case = match.group("case")
        if volume_suffix(case):
            case = strip_suffix(case)
        cases.append(_record(root, spec, case, path))
    if not cases:
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


def _discover_msd(root: Path, spec: DatasetSpec | None) -> tuple[DatasetSpec, list[CaseRecord]]:
    meta_path = root / "dataset.json"
    meta = _read_mapping(meta_path)
    if not isinstance(meta, dict):
        raise MedwssError(meta_path, "dataset.json must hold a mapping")
    labels = meta.get("labels") or {}
    # MSD writes {"0": "background", "1": "PZ"}; nnU-Net v2 writes {"background": 0, "PZ": 1}.
    values = {}
    for k, v in labels.items():
        name, value = (v, k) if str(k).lstrip("-").isdigit() else (k, v)
        if isinstance(value, int | str) and str(value).lstrip("-").isdigit() and int(value) != 0:
            values[str(name)] = int(value)
    modality_words = " ".join(str(v) for v in (meta.get("modality") or meta.get("channel_names") or {}).values())
    modality = "CT" if "CT" in modality_words.upper() else "MR"
    if spec is None:
        classes = {
            n: LabelRule(("labelsTr/{case}" + _ending(meta),), VoxelTest("==", (float(v),))) for n, v in values.items()
        }
        if not classes:
            raise MedwssError(meta_path, "dataset.json declares no foreground label")
        spec = DatasetSpec(
            name=str(meta.get("name", root.name)),
            modality=modality,
            preset="ct_abdomen" if modality == "CT" else "mr",
            classes=classes,
        )
    cases = []
    for image in _msd_images(root, meta):
        case = strip_suffix(image)
        if "file_ending" in meta and re.search(r"_\d{4}$", case):
            case = case[:-5]  # nnU-Net v2 channel suffix
        cases.append(_record(root, spec, case, image))
    if not cases:
        raise MedwssError(root / "imagesTr", "no training images")
    return spec, cases


def _ending(meta: dict[str, Any]) -> str:
    return str(meta.get("file_ending", ".nii.gz"))


def _msd_images(root: Path, meta: dict[str, Any]) -> list[Path]:
    training = meta.get("training")
    if isinstance(training, list) and training and isinstance(training[0], dict):
        images = [root / str(item["image"]) for item in training if "image" in item]
    else:
        images = sorted((root / "imagesTr").glob("*" + _ending(meta)))
        images = [p for p in images if not re.search(r"_(?!0000)\d{4}" + re.escape(_ending(meta)) + "$", p.name)]
    return [p.resolve() if p.exists() else p for p in images]
