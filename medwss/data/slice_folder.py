"""Slice-folder data sets: 2D slices (PNG / JPEG / NPY, grey or multi-channel) with mask images, grouped into patients.

Many public sets ship a scan as a folder of 2D slices with one label-map image per slice (LiTS as JPEG/PNG renders
here). A spec of ``kind: slices`` says how to find them, in the style of the volume specs (``datalist.py``)::

    kind: slices
    name: lits_slices
    table: slices.csv                 # one row per slice ...
    columns: {patient: patient, order: slice_index, image: image, mask: mask}
    # pattern: {image: "images/{patient}_slice_{order}.jpg", mask: "masks/{patient}_slice_{order}_mask.png"}
    channels: [0]                     # image channels kept: 'all' (default), 'grey' (their mean) or a list
    intensity: [0, 255]               # raw values mapped to [0, 1] (clipped); default 0..255 for 8-bit images
    labels: [0, 1, 2]                 # the mask values the data set declares; any other value is an error
    classes: {tumour: "== 2"}         # ROI class -> voxel test on the mask
    prior: "> 0"                      # organ prior (the liver): a voxel test on the same mask
    orientation: LP                   # where the image's columns and rows point on the patient (default LP: the
                                      # radiological display, patient's left to the right, posterior down)

A patient's slices are stacked in ``order`` (an integer column or ``{order}`` field) into an (x, y, z) stack:
x is the image column, y the image row, z the position in the stack; the pixel grid has no spacing (1 pixel).
For training beside volumes (which the volume pipeline turns to RAS) the stack is flipped to RAS by ``orientation``.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medwss.data.rules import VoxelTest
from medwss.errors import MedwssError

SLICE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
SLICE_SPEC_KEYS = {
    "kind", "name", "modality", "table", "columns", "pattern", "channels", "intensity", "labels", "classes",
    "prior", "patients", "description", "licence", "license", "preset", "orientation",
}  # fmt: skip
COLUMN_ROLES = ("patient", "order", "image", "mask")


def is_slice_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SLICE_SUFFIXES


@dataclass(frozen=True)
class SliceRow:
    """One slice: its patient, its position key, its image and mask files, and where it was listed."""

    patient: str
    order: int
    image: Path
    mask: Path | None
    where: str


@dataclass(frozen=True)
class SlicePatient:
    """A patient's slices in stack order."""

    patient: str
    rows: tuple[SliceRow, ...]

    @property
    def orders(self) -> list[int]:
        return [r.order for r in self.rows]


@dataclass(frozen=True)
class SliceReading:
    """How a slice image becomes channels in [0, 1]: channel choice and raw intensity range."""

    channels: str | tuple[int, ...] = "all"
    intensity: tuple[float, float] | None = None

    def image(self, path: Path) -> np.ndarray:
        """The slice as (C, x, y) float32 in [0, 1].

        Raises:
            MedwssError: unreadable, not 2D, a channel the image lacks.
        """
        array = read_slice_array(path)
        if array.ndim == 2:
            array = array[..., None]
        if isinstance(self.channels, tuple):
            bad = [c for c in self.channels if not 0 <= c < array.shape[-1]]
            if bad:
                raise MedwssError(path, f"channel {bad[0]} asked for, but the image has {array.shape[-1]} channel(s)")
            array = array[..., list(self.channels)]
        elif self.channels == "grey":
            array = array.mean(axis=-1, keepdims=True)
        lo, hi = self.intensity or _default_range(array)
        out = np.clip((array.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0)
        return np.ascontiguousarray(np.transpose(out, (2, 1, 0)))  # (rows, cols, C) -> (C, x = col, y = row)


def _default_range(array: np.ndarray) -> tuple[float, float]:
    if array.dtype == np.uint8:
        return 0.0, 255.0
    if array.dtype == np.uint16:
        return 0.0, 65535.0
    lo, hi = (float(v) for v in np.percentile(array, (1.0, 99.0)))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def read_slice_array(path: str | Path) -> np.ndarray:
    """A 2D slice file as (rows, cols) or (rows, cols, C), raw values.

    Raises:
        MedwssError: missing, unreadable, not a 2D image.
    """
    p = Path(path)
    if not p.is_file():
        raise MedwssError(p, "file not found")
    suffix = p.suffix.lower()
    if suffix not in SLICE_SUFFIXES:
        raise MedwssError(p, f"not a slice image (expected one of {', '.join(SLICE_SUFFIXES)})")
    try:
        if suffix == ".npy":
            array = np.load(p, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(p) as img:
                array = np.asarray(img)
    except (OSError, ValueError) as err:
        raise MedwssError(p, f"unreadable or not an image: {str(err).splitlines()[0] if str(err) else err}") from None
    if array.ndim not in (2, 3) or 0 in array.shape:
        raise MedwssError(p, f"not a 2D image (shape {array.shape})")
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        raise MedwssError(p, f"{int((~np.isfinite(array)).sum())} NaN/Inf pixels")
    return array


def read_slice_mask(path: str | Path) -> np.ndarray:
    """A mask image as (x, y) integer labels.

    Raises:
        MedwssError: unreadable, several channels that differ, non-integer values.
    """
    array = read_slice_array(path)
    if array.ndim == 3:
        if not all(np.array_equal(array[..., 0], array[..., c]) for c in range(1, array.shape[-1])):
            raise MedwssError(path, f"mask has {array.shape[-1]} different channels; expected one label map")
        array = array[..., 0]
    if np.issubdtype(array.dtype, np.floating):
        if not np.array_equal(array, np.round(array)):
            raise MedwssError(path, "label map holds non-integer values")
    return np.ascontiguousarray(array.astype(np.int32).T)


@dataclass(frozen=True)
class SliceSetSpec:
    """A slice-folder data set (see the module docstring for the keys)."""

    name: str
    table: str | None = None
    columns: dict[str, str] = field(default_factory=lambda: {r: r for r in COLUMN_ROLES})
    pattern: dict[str, str] | None = None
    reading: SliceReading = SliceReading()
    labels: tuple[int, ...] | None = None
    classes: dict[str, VoxelTest] = field(default_factory=dict)
    prior: VoxelTest | None = None
    patients: tuple[str, ...] | None = None
    modality: str = "OT"
    preset: str = "slices"
    orientation: str = "LP"

    kind = "slices"

    @classmethod
    def from_config(cls, config: dict[str, Any], source: str = "dataset spec") -> SliceSetSpec:
        """Build from a spec mapping with ``kind: slices``.

        Raises:
            MedwssError: unknown keys, neither or both of table/pattern, malformed values.
        """
        unknown = set(config) - SLICE_SPEC_KEYS
        if unknown:
            raise MedwssError(source, f"unknown slice-folder spec keys: {', '.join(sorted(unknown))}")
        table, pattern = config.get("table"), config.get("pattern")
        if (table is None) == (pattern is None):
            raise MedwssError(source, "a slice-folder spec needs one of 'table' (a CSV) or 'pattern'")
        columns = {r: r for r in COLUMN_ROLES}
        if config.get("columns") is not None:
            if not isinstance(config["columns"], dict) or set(config["columns"]) - set(COLUMN_ROLES):
                raise MedwssError(source, f"'columns' maps roles ({', '.join(COLUMN_ROLES)}) to CSV column names")
            columns.update({str(k): str(v) for k, v in config["columns"].items()})
        if pattern is not None:
            if not isinstance(pattern, dict) or not isinstance(pattern.get("image"), str):
                raise MedwssError(source, "'pattern' needs 'image' (and 'mask'), with {patient} and {order}")
            for key, value in pattern.items():
                if key not in ("image", "mask") or not isinstance(value, str):
                    raise MedwssError(source, f"'pattern' takes 'image' and 'mask' strings, not {key!r}")
                if "{patient}" not in value or "{order}" not in value:
                    raise MedwssError(source, f"pattern {key!r} needs both {{patient}} and {{order}}")
        raw_classes = config.get("classes") or {}
        if not isinstance(raw_classes, dict) or not raw_classes:
            raise MedwssError(source, "'classes' must map class names to voxel tests on the mask, e.g. tumour: '== 2'")
        classes = {str(k): _test(source, str(k), v) for k, v in raw_classes.items()}
        labels = config.get("labels")
        if labels is not None:
            if not isinstance(labels, list) or not all(isinstance(v, int) for v in labels):
                raise MedwssError(source, f"'labels' must be a list of integer mask values, not {labels!r}")
            labels = tuple(sorted(set(labels) | {0}))
        patients = config.get("patients")
        if patients is not None and not isinstance(patients, list):
            raise MedwssError(source, "'patients' must be a list of patient ids")
        return cls(
            name=str(config.get("name", Path(source).stem)),
            table=None if table is None else str(table),
            columns=columns,
            pattern=None if pattern is None else {str(k): str(v) for k, v in pattern.items()},
            reading=SliceReading(_channels(source, config.get("channels", "all")), _range(source, config)),
            labels=labels,
            classes=classes,
            prior=None if config.get("prior") is None else _test(source, "prior", config["prior"]),
            patients=None if patients is None else tuple(str(p) for p in patients),
            modality=str(config.get("modality", "OT")).upper(),
            orientation=_orientation(source, config.get("orientation", "LP")),
            preset=str(config.get("preset", "slices")),
        )

    def discover(self, root: str | Path, problems: list[MedwssError] | None = None) -> list[SlicePatient]:
        """The patients under ``root``, sorted by id, each with its slices sorted by order.

        Raises:
            MedwssError: no folder, unreadable table, unknown column, bad order value, a declared patient or a
                table patient with no slices, no slices at all. Missing files are checked by ``check_slice_set``.
        """
        root = Path(root)
        if not root.is_dir():
            raise MedwssError(root, "data set folder not found")
        rows = self._table_rows(root) if self.table is not None else self._pattern_rows(root)
        by_patient: dict[str, list[SliceRow]] = {}
        empty: list[str] = []
        for row in rows:
            if row is None:
                continue
            if isinstance(row, str):  # a patient listed without an image
                empty.append(row)
                continue
            by_patient.setdefault(row.patient, []).append(row)
        wanted = list(self.patients) if self.patients is not None else sorted(set(by_patient) | set(empty))
        out = []
        for patient in wanted:
            slices = sorted(by_patient.get(patient, []), key=lambda r: r.order)
            if not slices:
                error = MedwssError(root / (self.table or "."), f"patient {patient!r} has no slices")
                if problems is None:
                    raise error
                problems.append(error)
                continue
            seen: dict[int, SliceRow] = {}
            for r in slices:
                if r.order in seen:
                    raise MedwssError(r.where, f"patient {patient!r} has two slices at order {r.order}")
                seen[r.order] = r
            out.append(SlicePatient(patient, tuple(slices)))
        if not out and problems is None:
            raise MedwssError(root, "no slices found")
        return out

    def _table_rows(self, root: Path) -> list[SliceRow | str | None]:
        path = root / str(self.table)
        if not path.is_file():
            raise MedwssError(path, "slice table not found")
        out: list[SliceRow | str | None] = []
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                fields = [f.strip() for f in reader.fieldnames or []]
                reader.fieldnames = fields
                needed = [self.columns[r] for r in ("patient", "order", "image")]
                needed += [self.columns["mask"]] if "mask" in self.columns and self.classes else []
                for role in COLUMN_ROLES:
                    name = self.columns.get(role)
                    if name is not None and name in needed and name not in fields:
                        raise MedwssError(path, f"no {role} column {name!r} (columns: {', '.join(fields)})")
                for line, row in enumerate(reader, start=2):
                    out.append(self._table_row(root, path, line, row))
        except (OSError, UnicodeDecodeError, csv.Error) as err:
            raise MedwssError(path, f"cannot read as CSV: {err}") from None
        return out

    def _table_row(self, root: Path, path: Path, line: int, row: dict) -> SliceRow | str | None:
        where = f"{path}: row {line}"
        patient = (row.get(self.columns["patient"]) or "").strip()
        if not patient:
            raise MedwssError(path, f"row {line}: empty patient")
        if self.patients is not None and patient not in self.patients:
            return None
        image = (row.get(self.columns["image"]) or "").strip()
        if not image:
            return patient
        order_text = (row.get(self.columns["order"]) or "").strip()
        try:
            order = int(order_text)
        except ValueError:
            raise MedwssError(path, f"row {line}: order {order_text!r} is not an integer") from None
        mask_text = (row.get(self.columns.get("mask", "")) or "").strip() if "mask" in self.columns else ""
        return SliceRow(patient, order, root / image, root / mask_text if mask_text else None, where)

    def _pattern_rows(self, root: Path) -> list[SliceRow | str | None]:
        assert self.pattern is not None
        image_pattern = self.pattern["image"]
        regex = re.compile(
            "^"
            + re.escape(image_pattern)
            .replace(re.escape("{patient}"), "(?P<patient>[^/]+?)")
            .replace(re.escape("{order}"), "(?P<order>-?[0-9]+)")
            + "$"
        )
        out: list[SliceRow | str | None] = []
        glob = image_pattern.replace("{patient}", "*").replace("{order}", "*")
        for path in sorted(root.glob(glob)):
            match = regex.match(path.relative_to(root).as_posix())
            if not match:
                continue
            patient, order = match.group("patient"), int(match.group("order"))
            if self.patients is not None and patient not in self.patients:
                continue
            mask = None
            if "mask" in self.pattern:
                mask = root / self.pattern["mask"].format(patient=patient, order=match.group("order"))
            out.append(SliceRow(patient, order, path, mask, str(path)))
        if not out:
            raise MedwssError(root, f"no image matches the pattern {image_pattern!r}")
        return out

    def read_patient(self, patient: SlicePatient, with_masks: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """The patient's image stack (C, x, y, z) in [0, 1] and label stack (x, y, z) or None.

        Raises:
            MedwssError: the first bad slice (missing or unreadable file, size mismatch, undeclared mask value,
                channel count differing between slices).
        """
        images, masks = [], []
        for row in patient.rows:
            image = self.reading.image(row.image)
            if images and image.shape != images[0].shape:
                raise MedwssError(
                    row.image, f"shape {_shape(image)} differs from the patient's first slice {_shape(images[0])}"
                )
            images.append(image)
            if with_masks:
                masks.append(self.read_mask(row, image.shape[1:]))
        return np.stack(images, axis=-1), (np.stack(masks, axis=-1) if with_masks else None)

    def read_mask(self, row: SliceRow, size: tuple[int, ...]) -> np.ndarray:
        """The slice's label map (x, y), checked against the image size and the declared labels."""
        if row.mask is None:
            raise MedwssError(row.where, "no mask for this slice")
        mask = read_slice_mask(row.mask)
        if tuple(mask.shape) != tuple(size):
            raise MedwssError(row.mask, f"mask size {_xy(mask.shape)} does not match its image {_xy(size)}")
        if self.labels is not None:
            extra = sorted(set(np.unique(mask).tolist()) - set(self.labels))
            if extra:
                raise MedwssError(
                    row.mask, f"mask values {extra} are not among the declared labels {list(self.labels)}"
                )
        return mask

    def class_masks(self, labels: np.ndarray) -> dict[str, np.ndarray]:
        return {name: test(labels) for name, test in self.classes.items()}


def _shape(image: np.ndarray) -> str:
    return f"{image.shape[0]} channel(s) of {_xy(image.shape[1:])}"


def _xy(shape: tuple[int, ...]) -> str:
    """A (x, y) size as the image's width x height."""
    return f"{shape[0]}x{shape[1]}"


def _test(source: str, name: str, value: Any) -> VoxelTest:
    if isinstance(value, dict) and set(value) <= {"test"}:
        value = value.get("test", "> 0")
    try:
        return VoxelTest.parse(str(value))
    except MedwssError as err:
        raise MedwssError(source, f"class {name}: {err.problem}") from None


def _orientation(source: str, value: Any) -> str:
    text = str(value).upper()
    if len(text) != 2 or text[0] not in "LR" or text[1] not in "AP":
        raise MedwssError(source, f"'orientation' names where columns then rows point: LP, LA, RP or RA, not {value!r}")
    return text


def _channels(source: str, value: Any) -> str | tuple[int, ...]:
    if value in ("all", "grey", "gray"):
        return "grey" if value == "gray" else value
    values = [value] if isinstance(value, int) else value
    if isinstance(values, list) and values and all(isinstance(v, int) and v >= 0 for v in values):
        return tuple(values)
    raise MedwssError(source, f"'channels' must be 'all', 'grey' or a list of channel indices, not {value!r}")


def _range(source: str, config: dict[str, Any]) -> tuple[float, float] | None:
    value = config.get("intensity")
    if value is None:
        return None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, int | float) for v in value)):
        raise MedwssError(source, f"'intensity' must be [low, high] raw values, not {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not lo < hi:
        raise MedwssError(source, f"'intensity' range {lo:g}..{hi:g} is empty")
    return lo, hi


def check_slice_set(root: Path, spec: SliceSetSpec, progress: Any = None, on_total: Any = None):
    """Read every slice and mask of a slice-folder set; one ``Problem`` per bad file, table row or patient."""
    from medwss.data.check import Problem, start_report

    report, patients = start_report(root, "slice set", lambda missing: spec.discover(root, problems=missing), on_total)
    if patients is None:
        return report
    present = {name: 0 for name in spec.classes}
    slices = 0
    for patient in patients:
        report.items += 1
        found = {name: False for name in spec.classes}
        first: tuple[int, ...] | None = None
        for row in patient.rows:
            slices += 1
            try:
                image = spec.reading.image(row.image)
            except MedwssError as err:
                report.problems.append(Problem(err.path, err.problem))
                continue
            if first is None:
                first = image.shape
            elif image.shape != first:
                report.problems.append(
                    Problem(str(row.image), f"shape {_shape(image)} differs from the patient's first slice")
                )
            try:
                labels = spec.read_mask(row, image.shape[1:])
            except MedwssError as err:
                report.problems.append(Problem(err.path, err.problem))
                continue
            for name, mask in spec.class_masks(labels).items():
                found[name] |= bool(mask.any())
        for name, hit in found.items():
            present[name] += int(hit)
        if progress:
            progress(1)
    classes = ", ".join(f"{n} in {c}/{len(patients)} patients" for n, c in present.items())
    report.summary = f"{len(patients)} patients, {slices} slices of {spec.name}; {classes}"
    return report


def slice_manifest(root: str | Path, spec: SliceSetSpec, progress: Any = None):
    """Presence labels from a slice set's masks: one ``LabelledImage`` per patient (its slices in stack order).

    Raises:
        MedwssError: the first bad slice, mask or table row.
    """
    from medwss.data.manifest import LabelledImage, Manifest

    images = []
    for patient in spec.discover(root):
        item = LabelledImage(Path(root), patient.patient, patient.patient, stack=SliceStack(Path(root), spec, patient))
        masks = {name: [] for name in spec.classes}
        for row in patient.rows:
            size = read_slice_array(row.image).shape[:2][::-1]
            for name, mask in spec.class_masks(spec.read_mask(row, size)).items():
                masks[name].append(float(mask.any()))
        for name, values in masks.items():
            item.presence[name] = np.asarray(values)
        images.append(item)
        if progress is not None:
            progress(1)
    return Manifest(list(spec.classes), images)


@dataclass(frozen=True)
class SliceStack:
    """Where a manifest item's slices come from (instead of a volume file)."""

    root: Path
    spec: SliceSetSpec
    patient: SlicePatient

    def processed(self, working_size: int, with_label: bool = False, crop_margin: int | None = None) -> dict[str, Any]:
        """The patient as the volume pipeline's output: image (C, W, W, Z) float in [0, 1], prior and label
        (1, W, W, Z) int16 (label: classes as 1..K, first class wins), slice_index (Z,) = stack positions.

        ``crop_margin``: as ``volume_transforms``, crop in-plane to the prior's box over all slices plus this many
        pixels before resizing; ``crop_box`` (x0, x1, y0, y1) on the RAS-turned slices then says where the working
        grid lies (``crop_box`` is the whole slice without a crop).

        Raises:
            MedwssError: a crop without a prior rule in the spec, or an empty prior.
        """
        import torch
        import torch.nn.functional as F

        from medwss.data.slices import stack_slices

        if with_label and not self.spec.classes:
            raise MedwssError(self.patient.rows[0].image, "no class masks for a 2D image named by a manifest")
        if crop_margin is not None and self.spec.prior is None:
            raise MedwssError(self.root, "this bundle crops to the organ prior: give the slice spec a 'prior' rule")
        needs_masks = with_label or self.spec.prior is not None
        image, labels = self.spec.read_patient(self.patient, with_masks=needs_masks)
        flips = [axis for axis, code in ((0, "L"), (1, "P")) if self.spec.orientation[axis] == code]
        if flips:  # to RAS, as the volume pipeline orients scans
            image = np.ascontiguousarray(np.flip(image, [a + 1 for a in flips]))
            labels = None if labels is None else np.ascontiguousarray(np.flip(labels, flips))
        box = (0, image.shape[1], 0, image.shape[2])
        if crop_margin is not None:
            xs, ys = np.nonzero(self.spec.prior(labels).any(axis=-1))
            if not xs.size:
                raise MedwssError(self.patient.rows[0].image, "the organ prior is empty: nothing to crop to")
            m = int(crop_margin)
            box = (max(int(xs.min()) - m, 0), min(int(xs.max()) + m + 1, image.shape[1]),
                   max(int(ys.min()) - m, 0), min(int(ys.max()) + m + 1, image.shape[2]))  # fmt: skip
            image = np.ascontiguousarray(image[:, box[0] : box[1], box[2] : box[3]])
            labels = np.ascontiguousarray(labels[box[0] : box[1], box[2] : box[3]])
        volume = torch.from_numpy(image).permute(3, 0, 1, 2)  # (Z, C, x, y)
        volume = F.interpolate(volume, size=(working_size, working_size), mode="area")
        out: dict[str, Any] = {
            "image": stack_slices(volume).float(),
            "slice_index": torch.arange(image.shape[-1]),
            "crop_box": box,
        }
        masks: dict[str, np.ndarray] = {}
        if self.spec.prior is not None:
            masks["prior"] = self.spec.prior(labels).astype(np.int16)
        if with_label:
            classes = np.zeros(labels.shape, dtype=np.int16)
            for value, mask in enumerate(self.spec.class_masks(labels).values(), start=1):
                classes[(classes == 0) & mask] = value
            masks["label"] = classes
        for key, mask in masks.items():
            m = torch.from_numpy(mask).permute(2, 0, 1)[:, None].float()  # (Z, 1, x, y)
            m = F.interpolate(m, size=(working_size, working_size), mode="nearest-exact")
            out[key] = stack_slices(m).to(torch.int16)
        return out


def one_slice_stack(image: Path, prior: Path | None = None) -> SliceStack:
    """A 2D image named by a manifest as a one-slice stack: all its channels, its dtype's range, and its prior
    file's label > 0 as the organ prior."""
    spec = SliceSetSpec(name="manifest", table="-", prior=None if prior is None else VoxelTest(">", (0.0,)))
    row = SliceRow(str(image), 0, Path(image), None if prior is None else Path(prior), str(image))
    return SliceStack(Path(image).parent, spec, SlicePatient(str(image), (row,)))
