"""From a bundle's ``data`` config to slice tensors: weak labels for training, masks only for evaluation.

A bundle names its training data as *sources* (a data set root plus its dataset spec, inline or a file) or as a
weak-label *manifest*. With sources, the slice-level presence labels are derived from the masks (``labels
from-masks``): training only ever sees those yes/no labels. Masks are turned into pixel tensors only when an
evaluation asks for them (``with_masks=True``), from derived class masks cached as NIfTI under the run folder
(never in the repository: some data licences forbid distributing derivatives).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medwss.data.keys import Keys
from medwss.data.manifest import LabelledImage, Manifest
from medwss.errors import MedwssError

logger = logging.getLogger(__name__)


@dataclass
class SliceTensors:
    """Every labelled slice of a set of cases, processed to the working size.

    ``images`` (N, C, H, W) float32; ``presence`` (N, K) float32 (NaN = unlabelled); ``prior`` (N, H, W) bool or
    None (the organ prior); ``masks`` (N, K, H, W) bool, only for evaluation; ``patients``/``cases`` (N,) lists;
    ``slice_index`` (N,) file z.
    """

    images: torch.Tensor
    presence: torch.Tensor
    prior: torch.Tensor | None
    masks: torch.Tensor | None
    patients: list[str]
    cases: list[str]
    slice_index: torch.Tensor
    classes: list[str]

    def select(self, keep: Sequence[bool] | torch.Tensor) -> SliceTensors:
        """The slices where ``keep`` is True (e.g. one side of a patient split)."""
        mask = torch.as_tensor(keep, dtype=torch.bool)
        idx = torch.nonzero(mask).flatten().tolist()
        return SliceTensors(
            self.images[mask],
            self.presence[mask],
            None if self.prior is None else self.prior[mask],
            None if self.masks is None else self.masks[mask],
            [self.patients[i] for i in idx],
            [self.cases[i] for i in idx],
            self.slice_index[mask],
            self.classes,
        )

    def of_patients(self, patients: Sequence[str]) -> SliceTensors:
        wanted = set(patients)
        return self.select([p in wanted for p in self.patients])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per class: (slices present, slices absent), for the provenance notes."""
        return {
            name: (int((self.presence[:, k] == 1).sum()), int((self.presence[:, k] == 0).sum()))
            for k, name in enumerate(self.classes)
        }


@dataclass(frozen=True)
class Source:
    """One data set: its root folder and its spec (a ``DatasetSpec``)."""

    root: Path
    spec: Any


def sources_from_config(data: Mapping[str, Any], config_name: str = "data#sources") -> list[Source]:
    """Build ``Source``s from ``data#sources``: ``[{root: PATH, spec: PATH | mapping}, ...]``.

    Raises:
        MedwssError: missing roots or specs.
    """
    from medwss.data.datalist import DatasetSpec

    entries = data.get("sources") or []
    if not entries:
        raise MedwssError(config_name, "no data sources: set data#sources (root + spec) or data#manifest")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "root" not in entry:
            raise MedwssError(f"{config_name}[{i}]", "each source needs 'root' (and 'spec' unless MSD layout)")
        spec = entry.get("spec")
        if isinstance(spec, str | Path):
            spec = DatasetSpec.load(spec)
        elif isinstance(spec, Mapping):
            spec = DatasetSpec.from_config(dict(spec), f"{config_name}[{i}]#spec")
        out.append(Source(Path(entry["root"]), spec))
    return out


def weak_labels(data: Mapping[str, Any]) -> tuple[Manifest, list[Source]]:
    """The training labels: ``data#manifest`` if set, else presence derived from each source's masks.

    Returns the manifest (classes in order, one ``LabelledImage`` per scan) and the sources (empty for a manifest).

    Raises:
        MedwssError: unreadable data, sources with different classes.
    """
    from medwss.data.manifest import manifest_from_masks, read_manifest

    if data.get("manifest"):
        return read_manifest(data["manifest"]), []
    sources = sources_from_config(data)
    classes: list[str] | None = None
    images: list[LabelledImage] = []
    for source in sources:
        manifest = manifest_from_masks(source.root, source.spec)
        if classes is not None and manifest.classes != classes:
            raise MedwssError(source.root, f"classes {manifest.classes} differ from the first source's {classes}")
        classes = manifest.classes
        images += manifest.images
    return Manifest(classes or [], images), sources


def _mask_cache_path(cache_dir: Path, image: Path, name: str) -> Path:
    digest = hashlib.sha1(f"{Path(image).resolve()}::{name}".encode()).hexdigest()[:16]
    return cache_dir / f"{digest}_{name}.nii.gz"


def class_mask_files(sources: Sequence[Source], cache_dir: Path) -> dict[str, Path]:
    """Write each case's class mask (classes as values 1..K, first class wins overlaps) under ``cache_dir``.

    Returns {image path (resolved, as str): mask path}. Only evaluation reads these.
    """
    from medwss.data.datalist import discover_cases
    from medwss.data.io import Geometry, read_sitk, write_mask
    from medwss.data.rules import apply_rule

    out: dict[str, Path] = {}
    for source in sources:
        if getattr(source.spec, "kind", "volumes") == "slices":
            continue  # slice-folder masks are read with the slices (``SliceStack.processed``)
        spec, cases = discover_cases(source.root, source.spec)
        for record in cases:
            target = _mask_cache_path(cache_dir, record.image, "classes")
            if not target.is_file():
                geometry = Geometry.of(read_sitk(record.image))
                labels = np.zeros(geometry.size, dtype=np.uint8)
                for value, (name, rule) in enumerate(spec.classes.items(), start=1):
                    mask = apply_rule(rule, list(record.class_files[name]), list(record.exclude_files[name]), geometry)
                    labels[(labels == 0) & mask] = value
                write_mask(labels, record.image, target)
            out[str(Path(record.image).resolve())] = target
    return out


def _slice_stack(item: LabelledImage) -> Any:
    """The item's slice-folder stack; a 2D image file (from a written slice manifest) as a one-slice stack."""
    from medwss.data.slice_folder import is_slice_file, one_slice_stack

    if item.stack is not None:
        return item.stack
    return one_slice_stack(item.image, item.prior) if is_slice_file(item.image) else None


def build_slices(
    manifest: Manifest,
    preset: str,
    working_size: int = 128,
    context: int = 0,
    *,
    mask_files: Mapping[str, Path] | None = None,
    patients: Sequence[str] | None = None,
    num_workers: int = 0,
    crop_margin: int | None = None,
) -> SliceTensors:
    """Process the manifest's scans and return every labelled slice as tensors.

    Args:
        manifest: weak labels (and the organ prior paths).
        preset: intensity preset name.
        working_size: in-plane size.
        context: neighbouring slices per side as extra channels.
        mask_files: {image: class mask file} from ``class_mask_files``, for evaluation only.
        patients: only these patients (None: all).
        crop_margin: crop in-plane to the organ prior's box plus this many pixels before resizing (``data#crop_margin``;
            ``medwss.data.transforms.CropToPriord``); None keeps the whole field of view.

    Raises:
        MedwssError: anything the volume pipeline reports.
    """
    from medwss.data.slices import SliceDataset
    from medwss.data.transforms import volume_transforms

    items = [i for i in manifest.images if patients is None or i.patient in set(patients)]
    if not items:
        raise MedwssError("data", "no scans to build slices from")
    records, processed, table = [], [], {}
    for item in items:
        record: dict[str, Any] = {
            Keys.IMAGE.value: str(item.image),
            Keys.CASE.value: item.case,
            Keys.PATIENT.value: item.patient,
        }
        stack = _slice_stack(item)
        if stack is not None:  # a slice-folder patient or a 2D image: read here, no volume pipeline
            record.update(stack.processed(working_size, with_label=mask_files is not None, crop_margin=crop_margin))
            processed.append(record)
        else:
            if item.prior is not None:
                record[Keys.PRIOR.value] = str(item.prior)
            if mask_files is not None:
                record[Keys.LABEL.value] = str(mask_files[str(Path(item.image).resolve())])
            records.append(record)
        labelled = np.zeros(item.num_slices, dtype=bool)
        for values in item.presence.values():
            labelled |= ~np.isnan(values[: item.num_slices])
        for z in np.flatnonzero(labelled):
            table[(item.case, int(z))] = [
                float(item.presence[c][z]) if z < len(item.presence[c]) else np.nan for c in manifest.classes
            ]
    datasets = []
    if records:
        transforms = volume_transforms(preset, working_size, crop_margin=crop_margin)
        datasets.append(SliceDataset(records, transforms, table, context=context, num_workers=num_workers))
    if processed:
        datasets.append(SliceDataset(processed, None, table, context=context))
    samples = [dataset[i] for dataset in datasets for i in range(len(dataset))]
    channels = {int(s[Keys.IMAGE.value].shape[0]) for s in samples}
    if len(channels) > 1:
        raise MedwssError(
            "data", f"slices have different channel counts {sorted(channels)}: set 'channels' in the specs"
        )
    has_prior = all(Keys.PRIOR.value in s for s in samples)
    masks = None
    if mask_files is not None:
        labels = torch.stack([torch.as_tensor(s[Keys.LABEL.value])[0] for s in samples])
        masks = torch.stack([labels == k for k in range(1, len(manifest.classes) + 1)], dim=1)
    return SliceTensors(
        images=torch.stack([torch.as_tensor(s[Keys.IMAGE.value]).float() for s in samples]),
        presence=torch.stack([torch.as_tensor(s[Keys.PRESENCE.value]).float() for s in samples]),
        prior=torch.stack([torch.as_tensor(s[Keys.PRIOR.value])[0].bool() for s in samples]) if has_prior else None,
        masks=masks,
        patients=[str(s[Keys.PATIENT.value]) for s in samples],
        cases=[str(s[Keys.CASE.value]) for s in samples],
        slice_index=torch.as_tensor([int(s[Keys.SLICE_INDEX.value]) for s in samples]),
        classes=list(manifest.classes),
    )


def photo_slices(data: Mapping[str, Any], with_masks: bool = False) -> SliceTensors:
    """A photo bundle's ``data#datalist`` as the one training-set type: each photo a one-slice case of its own
    patient (its image id), ``presence`` its multi-hot image labels, ``masks`` (N, K, S, S) its label map resized to
    the working size (evaluation only, when ``with_masks``), no organ prior.

    Raises:
        MedwssError: an unreadable photo or mask, labels outside the class set, no photo.
    """
    from medwss.data.natural.classes import class_names
    from medwss.data.natural.dataset import load_photo_set, resize_labels

    class_set = str(data.get("class_set", "coco"))
    names = list(class_names(class_set))
    size = int(data.get("working_size", 128))
    photos = load_photo_set(data["datalist"], len(names), size, with_masks, class_set)
    masks = None
    if with_masks:
        small = torch.stack([torch.from_numpy(resize_labels(m, (size, size)).astype("int64")) for m in photos.masks])
        masks = torch.stack([small == k for k in range(1, len(names) + 1)], dim=1)
    return SliceTensors(
        images=photos.images,
        presence=photos.presence.float(),
        prior=None,
        masks=masks,
        patients=list(photos.ids),
        cases=list(photos.ids),
        slice_index=torch.zeros(len(photos.ids), dtype=torch.long),
        classes=names,
    )
