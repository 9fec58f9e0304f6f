"""Label rules: how a class's mask is built from the label files a data set ships.

Public data sets draw their structures in many ways: one label map with zone values (Prostate158, MSD: whole gland =
label > 0), or one binary file per structure (3D-IRCADb: liver tumour = union of ``livertumor*``, the cyst left out).
A ``LabelRule`` names the files (glob patterns relative to the data set root, ``{case}`` filled in) and the voxel
test, so both are reached by configuration, never by code that knows a data set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.errors import MedwssError

_TEST = re.compile(r"^\s*(>=|<=|==|!=|>|<|in)\s*(.+?)\s*$")


@dataclass(frozen=True)
class VoxelTest:
    """A test on label values: ``> 0`` (any label), ``== 2`` (one value), ``in 1,2`` (a set)."""

    op: str
    values: tuple[float, ...]

    @classmethod
    def parse(cls, text: str) -> VoxelTest:
        """Parse ``'> 0'``, ``'== 2'``, ``'in 1,2'``.

        Raises:
            MedwssError: text that is none of these.
        """
        match = _TEST.match(str(text))
        if not match:
            raise MedwssError("label rule", f"cannot parse voxel test {text!r} (use e.g. '> 0', '== 2', 'in 1,2')")
        op, rest = match.groups()
        try:
            values = tuple(float(v) for v in rest.strip("[]() ").split(",") if v.strip())
        except ValueError:
            raise MedwssError("label rule", f"voxel test {text!r} needs numbers after {op!r}") from None
        if not values or (op != "in" and len(values) != 1):
            raise MedwssError("label rule", f"voxel test {text!r} needs {'values' if op == 'in' else 'one value'}")
        return cls(op, values)

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        v = self.values[0]
        if self.op == "in":
            return np.isin(labels, self.values)
        return {
            ">": labels > v,
            ">=": labels >= v,
            "<": labels < v,
            "<=": labels <= v,
            "==": labels == v,
            "!=": labels != v,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op} {','.join(f'{v:g}' for v in self.values)}"


@dataclass(frozen=True)
class LabelRule:
    """One class: the union over ``files`` of ``test(label)``, minus the union over ``exclude``.

    Args:
        files: glob patterns relative to the data set root; ``{case}`` is the case id.
        test: voxel test applied to every matched file.
        exclude: patterns whose voxels (test ``> 0``) are removed, e.g. a cyst drawn inside a tumour file.
        missing: ``"empty"`` when a case with no matching file simply has no such structure (3D-IRCADb ships no
            tumour file for a tumour-free patient); ``"error"`` when every case must have one.
    """

    files: tuple[str, ...]
    test: VoxelTest = field(default_factory=lambda: VoxelTest(">", (0.0,)))
    exclude: tuple[str, ...] = ()
    missing: str = "error"

    @classmethod
    def from_config(cls, name: str, config: Any) -> LabelRule:
        """Build from a config mapping ``{files, test, exclude, missing}`` or a bare pattern string.

        Raises:
            MedwssError: unknown keys or values.
        """
        if isinstance(config, str):
            config = {"files": [config]}
        if not isinstance(config, dict) or "files" not in config:
            raise MedwssError(f"class {name}", "a label rule needs 'files' (glob patterns with {case})")
        unknown = set(config) - {"files", "test", "exclude", "missing"}
        if unknown:
            raise MedwssError(f"class {name}", f"unknown label rule keys: {', '.join(sorted(unknown))}")
        files = _patterns(name, "files", config["files"])
        if not files:
            raise MedwssError(f"class {name}", "'files' names no pattern")
        exclude = _patterns(name, "exclude", config.get("exclude") or ())
        missing = config.get("missing", "error")
        if missing not in ("error", "empty"):
            raise MedwssError(f"class {name}", f"'missing' must be 'error' or 'empty', not {missing!r}")
        try:
            test = VoxelTest.parse(config.get("test", "> 0"))
        except MedwssError as err:  # name the class, so the user knows which rule of the spec to fix
            raise MedwssError(f"class {name}", err.problem) from None
        return cls(files, test, exclude, missing)

    def resolve(self, root: Path, case: str, patterns: tuple[str, ...] | None = None) -> list[Path]:
        """Files matching the rule's patterns for ``case``, sorted."""
        found: set[Path] = set()
        for pattern in patterns if patterns is not None else self.files:
            found.update(p for p in root.glob(pattern.replace("{case}", case)) if p.is_file())
        return sorted(found)

    def to_config(self) -> dict[str, Any]:
        return {
            "files": list(self.files),
            "test": str(self.test),
            "exclude": list(self.exclude),
            "missing": self.missing,
        }


def _patterns(name: str, key: str, value: Any) -> tuple[str, ...]:
    """A pattern or list of patterns as a tuple of relative glob patterns.

    Raises:
        MedwssError: not strings, empty, or absolute (``Path.glob`` only takes patterns relative to the root).
    """
    patterns = (value,) if isinstance(value, str) else value
    if not isinstance(patterns, list | tuple) or not all(isinstance(v, str) and v.strip() for v in patterns):
        raise MedwssError(f"class {name}", f"{key!r} must be a glob pattern or a list of them, not {value!r}")
    for pattern in patterns:
        if Path(pattern).is_absolute():
            raise MedwssError(f"class {name}", f"{key!r} pattern {pattern!r} must be relative to the data set root")
    return tuple(patterns)


def apply_rule(rule: LabelRule, label_files: list[Path], exclude_files: list[Path], reference: Any) -> np.ndarray:
    """The class mask (x, y, z) bool on ``reference``'s grid.

    Raises:
        MedwssError: a file that is unreadable or lies on another grid than the image.
    """
    from medwss.data.io import Geometry, read_mask_array

    geometry = reference if isinstance(reference, Geometry) else Geometry.from_meta(reference.meta["geometry"])
    mask = np.zeros(geometry.size, dtype=bool)
    for path in label_files:
        mask |= rule.test(read_mask_array(path, geometry)[0])
    for path in exclude_files:
        mask &= ~(read_mask_array(path, geometry)[0] > 0)
    return mask
