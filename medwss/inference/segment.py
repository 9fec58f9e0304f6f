"""``medwss segment``: scans in, NIfTI masks (and DICOM SEG for DICOM series) out, on exactly each scan's grid.

One ``Segmenter`` per bundle and method parses the bundle's ``inference.yaml`` once (the same objects MONAI's
evaluator and MONAI Label use: preprocessing, ``SelfPlayInferer``, the agent), then segments scan after scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose

from medwss.errors import MedwssError
from medwss.runtime.progress import SliceProgress

logger = logging.getLogger(__name__)


LABEL_WORDS = frozenset(
    {"label", "labels", "seg", "segmentation", "mask", "masks", "gt", "truth", "anatomy", "reader1", "reader2",
     "roi", "annotation", "annotations", "rlsp", "cam", "single-agent", "prior", "liver", "tumor", "tumour", "gland"}
)  # fmt: skip
LABEL_FOLDERS = frozenset({"labelstr", "labelsts", "labels", "masks", "segmentations", "eval"})


def looks_like_label(path: Path) -> bool:
    """A file named like a label map or a medwss output (``t2_anatomy_reader1``, ``case_seg``, ``x_rlsp``)."""
    import re

    from medwss.data.io import strip_suffix

    words = {w for w in re.split(r"[_.\-]+", strip_suffix(path).lower()) if w}
    return bool(words & LABEL_WORDS) or path.parent.name.lower() in LABEL_FOLDERS


def find_scans(
    paths: Sequence[Path], pattern: str | None = None, spec: Path | None = None
) -> list[Path]:
    """``find_scan_items`` without the relative folders."""
    return [scan for scan, _ in find_scan_items(paths, pattern, spec)]


def find_scan_items(
    paths: Sequence[Path], pattern: str | None = None, spec: Path | None = None
) -> list[tuple[Path, Path]]:
    """Expand files, folders and DICOM series folders into scans, each with its folder relative to the folder given
    (so ``out/<patient>/t2.nii.gz`` keeps two patients' ``t2`` apart).

    What counts as a scan in a folder: the files matching ``pattern`` (a glob relative to the folder, e.g.
    ``'*/t2.nii.gz'``), else those of a dataset spec's image pattern, else those of an MSD ``dataset.json``
    (imagesTr, imagesTs), else every volume file and DICOM series folder at any depth whose name does not look like
    a label map or a medwss output (``looks_like_label``).

    Raises:
        MedwssError: a missing path, or a folder with no scan.
    """
    from medwss.data.io import dicom_series_ids, volume_suffix

    if spec is not None and pattern is None:
        from medwss.data.datalist import DatasetSpec

        image = DatasetSpec.load(spec).image
        if image is None:
            raise MedwssError(spec, "this spec names no image pattern ('image: {case}/...')")
        pattern = image.replace("{case}", "*")
    items: list[tuple[Path, Path]] = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise MedwssError(p, "file not found")
        if p.is_file() or dicom_series_ids(p):
            items.append((p, Path()))
            continue
        if pattern is not None:
            found = sorted(c for c in p.glob(pattern) if (c.is_file() and volume_suffix(c)) or c.is_dir())
        elif (p / "dataset.json").is_file():
            found = sorted(c for sub in ("imagesTr", "imagesTs") for c in (p / sub).glob("*") if volume_suffix(c))
        else:
            found = _walk_scans(p)
        if not found:
            raise MedwssError(p, "no scans in this folder (NIfTI, MetaImage, NRRD or DICOM series)")
        items += [(c, c.parent.relative_to(p)) for c in found]
    return items


def _walk_scans(folder: Path, depth: int = 4) -> list[Path]:
    """Volume files and DICOM series folders under ``folder`` (a few levels deep), label maps left out."""
    from medwss.data.io import dicom_series_ids, volume_suffix

    found: list[Path] = []
    try:
        children = sorted(folder.iterdir())
    except OSError as err:
        raise MedwssError(folder, f"cannot list this folder ({err.strerror})") from None
    for c in children:
        if c.name.startswith("."):
            continue
        if c.is_file() and volume_suffix(c) and not looks_like_label(c):
            found.append(c)
        elif c.is_dir() and c.name.lower() not in LABEL_FOLDERS:
            if dicom_series_ids(c):
                found.append(c)
            elif depth > 0 and not c.is_symlink():
                found += _walk_scans(c, depth - 1)
    return found


def match_priors(scans: Sequence[Path], roi: Path | None) -> list[Path | None]:
    """The organ-prior mask of each scan: ``roi`` itself for one scan, else ``roi/<case id>.*`` by name.

    Raises:
        MedwssError: a scan without its prior.
    """
    from medwss.data.io import strip_suffix, volume_suffix

    if roi is None:
        return [None] * len(scans)
    if not roi.exists():
        raise MedwssError(roi, "file not found")
    if roi.is_file():
        if len(scans) != 1:
            raise MedwssError(roi, "one --roi-mask file for several scans: give a folder of masks named like them")
        return [roi]
    by_case = {strip_suffix(c): c for c in roi.iterdir() if c.is_file() and volume_suffix(c)}
    out = []
    for scan in scans:
        if strip_suffix(scan) not in by_case:
            raise MedwssError(scan, f"no organ prior named {strip_suffix(scan)}.* in {roi}")
        out.append(by_case[strip_suffix(scan)])
    return out


def output_paths(
    scans: Sequence[Path], out: Path | None, method: str, folders: Sequence[Path] | None = None,
    fmt: str = "nifti",
) -> list[Path]:
    """Where each mask goes: ``out`` itself for one scan named *.nii(.gz), else ``out/<folder>/<case>.nii.gz``; by
    default ``./<folder>/<case>_<method>.nii.gz`` (the current folder: input folders may be read-only, and inputs
    stay untouched). ``folders`` are the scans' folders relative to the folder they were found in.

    With ``fmt`` ``dicom-seg`` the NIfTI path names where the SEG goes (``seg_path``); one scan may then also take
    ``-o <file>.dcm``.

    Raises:
        MedwssError: two scans with the same output, or an output equal to an input.
    """
    from medwss.data.io import NIFTI_SUFFIXES, strip_suffix, volume_suffix
    from medwss.runtime.outputs import check_output

    folders = list(folders) if folders is not None else [Path()] * len(scans)
    if out is not None and (out.exists() or out.is_symlink()) and not out.is_dir():
        if out.exists() and not out.is_file():
            raise MedwssError(out, "is not a regular file (a device, pipe or socket); choose another output")
        if len(scans) > 1:
            raise MedwssError(out, "for several scans, -o must be a folder")
        if volume_suffix(out) not in NIFTI_SUFFIXES and not (fmt == "dicom-seg" and out.name.lower().endswith(".dcm")):
            raise MedwssError(out, "masks are written as NIfTI: use a .nii.gz or .nii file name")
    if out is not None and len(scans) == 1 and fmt == "dicom-seg" and out.name.lower().endswith(".dcm"):
        paths = [out]
    elif out is not None and len(scans) == 1 and volume_suffix(out) in NIFTI_SUFFIXES:
        paths = [out]
    elif out is not None:
        paths = [out / f / f"{strip_suffix(s)}.nii.gz" for s, f in zip(scans, folders, strict=True)]
    else:
        paths = [f / f"{strip_suffix(s)}_{method}.nii.gz" for s, f in zip(scans, folders, strict=True)]
    resolved = [check_output(p, scans) for p in paths]
    if len(set(resolved)) != len(paths):
        raise MedwssError(out or Path("."), "two scans share a case id; their masks would overwrite each other")
    inputs = {Path(s).resolve() for s in scans}
    for p in paths:
        if p.resolve() in inputs or (fmt != "nifti" and seg_path(p).resolve() in inputs):
            raise MedwssError(p, "refusing to overwrite an input scan")
    return paths


def seg_path(target: Path) -> Path:
    """The DICOM SEG beside a NIfTI mask path: ``x.nii.gz`` -> ``x.seg.dcm`` (a ``.dcm`` path is kept)."""
    from medwss.data.dicom_seg import SEG_SUFFIX

    if target.name.lower().endswith(".dcm"):
        return target
    return target.with_name(target.name.split(".nii")[0] + SEG_SUFFIX)


def check_format(scans: Sequence[Path], fmt: str) -> None:
    """Refuse, before any work, an output format the inputs or the installed packages cannot give.

    Raises:
        MedwssError: an unknown format; DICOM SEG for a scan that is not a DICOM series folder, or without highdicom.
    """
    from medwss.data.dicom_seg import FORMATS, require_highdicom

    if fmt not in FORMATS:
        raise MedwssError("--format", f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
    if fmt == "nifti":
        return
    for scan in scans:
        if not Path(scan).is_dir():
            raise MedwssError(scan, f"--format {fmt}: DICOM SEG needs a DICOM series folder as input, not a file")
    require_highdicom(f"--format {fmt}")
    from medwss.data.dicom_seg import read_source_series

    for scan in scans:  # headers only: a series a SEG cannot reference stops the run before any mask is written
        read_source_series(Path(scan))


def bundle_modality(bundle: Path) -> str:
    """The modality of a bundle's input image (``metadata.json``), e.g. ``CT``; empty when it does not say."""
    import json

    meta = bundle / "configs" / "metadata.json"
    if not meta.is_file():
        return ""
    inputs = json.loads(meta.read_text()).get("network_data_format", {}).get("inputs", {})
    return str(inputs.get("image", {}).get("modality", ""))


class Segmenter:
    """A bundle's inference objects, built once.

    Args:
        bundle: bundle folder (``configs/inference.yaml``, ``models/``).
        method: ``rlsp``, ``single-agent`` or ``cam``.
        overrides: config ids to set (MONAI ``#`` syntax).

    Raises:
        MedwssError: not a bundle, untrained bundle, bad method.
    """

    def __init__(
        self,
        bundle: str | Path,
        method: str = "rlsp",
        overrides: dict[str, Any] | None = None,
        *,
        allow_modality_mismatch: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        from medwss.data.transforms import CheckScand
        from medwss.inference.inferer import METHODS
        from medwss.inference.loading import WriteMaskd, load_inference
        from medwss.runtime.config import parsed
        from medwss.runtime.device import resolve_device

        self.root, parser, self.network = load_inference(bundle, method, METHODS, overrides)
        self.method = method
        self.region = str(parser["region"])
        self.working_size = int(parser["working_size"])
        # Crop to the organ prior's box before resizing, as in training (``data#crop_margin``); slice sets read it.
        crop = parsed(parser, "crop_margin")
        self.crop_margin = None if crop is None else int(crop)
        self.preprocessing = parsed(parser, "preprocessing")
        # The bundle's own postprocessing (back onto the scan's grid, clipped to the organ prior) without its writer:
        # ``segment`` writes NIfTI, DICOM SEG and overlays itself. One chain for every route (``ClipToPriord``).
        post = parsed(parser, "postprocessing")
        self.postprocessing = Compose([t for t in post.flatten().transforms if not isinstance(t, WriteMaskd)])
        self.inferer = parsed(parser, "inferer")
        for transform in getattr(self.preprocessing, "transforms", ()):
            if isinstance(transform, CheckScand):
                transform.allow_mismatch = allow_modality_mismatch
        self.modality = bundle_modality(self.root)
        # --device, else the bundle's ``device`` (MONAI's bundle property), else the CPU. Detector, scorer, agent and
        # game all run there; volumes are read and masks written on the CPU.
        self.device = resolve_device(device if device is not None else _config_device(parser))
        self.inferer.detector.to(self.device)
        if self.network is not None:
            self.network.to(self.device)
        if getattr(self.inferer, "refiner", None) is not None:  # the optional refine stage's UNet
            self.inferer.refiner.to(self.device)

    def segment(
        self,
        scan: Path,
        out: Path,
        prior: Path | None = None,
        overlay: Path | None = None,
        fmt: str = "nifti",
        progress: SliceProgress | None = None,
    ) -> list[Path]:
        """Segment one scan and write its mask (NIfTI at ``out``, a DICOM SEG at ``seg_path(out)``, or both by
        ``fmt``) and an overlay PNG, each atomically; returns the files written. ``progress`` is told after each
        batch of the scan's slices (``SelfPlayInferer``); it changes nothing in the mask.

        Raises:
            MedwssError: unreadable scan or prior, a prior off the scan's grid, a prior the bundle needs missing.
        """
        mask = self.predict(scan, prior, progress)
        written = []
        if fmt in ("nifti", "both"):
            from medwss.data.io import write_mask

            written.append(write_mask(mask, scan, out))
        if fmt in ("dicom-seg", "both"):
            from medwss.data.dicom_seg import segment_info, write_dicom_seg

            written.append(write_dicom_seg(mask, scan, seg_path(out), segment_info(self.root, self.method)))
        if overlay is not None:
            from medwss.data.io import read_mask_array, read_volume_array
            from medwss.viz.overlay import axis_codes, draw_overlay, method_free_slices

            image, geometry, modality = read_volume_array(scan)
            region = read_mask_array(prior, scan)[0] > 0 if prior is not None else None
            title = f"{scan.name}: {self.method} ({int(mask.sum())} voxels)"
            draw_overlay(
                image, mask, overlay, title=title, modality=modality or self.modality,
                codes=axis_codes(geometry.direction), slices=method_free_slices(image.shape[-1], region),
            )  # fmt: skip
        return written

    def predict(self, scan: Path, prior: Path | None = None, progress: SliceProgress | None = None):
        """The (x, y, z) boolean mask of one scan, on exactly its grid (bounded by the prior, if any); ``progress``
        as in ``segment``.

        Raises:
            MedwssError: unreadable scan or prior, a prior off the scan's grid, a prior the bundle needs missing.
        """
        from medwss.data.transforms import process_volume, unwrap_errors

        if self.region == "prior" and prior is None:
            raise MedwssError(scan, "this bundle needs an organ prior mask: give --roi-mask")
        # The sample MONAI's evaluator sees (``loading.scan_datalist``); a bundle whose preprocessing has no prior
        # passes it through untouched to the postprocessing's ``ClipToPriord``.
        data = {"image": str(scan), **({"prior": str(prior)} if prior is not None else {})}
        processed = process_volume(data, self.preprocessing)
        inputs = torch.as_tensor(processed["image"]).unsqueeze(0)
        pred = self.inferer(inputs, self.network, progress=progress)[0]
        with unwrap_errors():
            restored = self.postprocessing({**processed, "pred": pred})["pred"]
        return torch.as_tensor(restored)[0].numpy() > 0


def _config_device(parser) -> str:
    """The bundle config's ``device`` (a ``torch.device`` expression or a name), ``cpu`` when it has none."""
    from medwss.runtime.config import parsed

    return str(parsed(parser, "device", "cpu"))
