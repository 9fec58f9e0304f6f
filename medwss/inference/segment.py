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
    from medwss.runtime.config import bundle_metadata

    inputs = bundle_metadata(bundle).get("network_data_format", {}).get("inputs", {})
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
        from medwss.inference.photo_segment import WritePhotoLabelsd
        from medwss.runtime.config import is_multiclass_bundle, is_photo_bundle, parsed
        from medwss.runtime.device import resolve_device

        self.root, parser, self.network = load_inference(bundle, method, METHODS, overrides)
        self.method = method
        # Photos are one-slice volumes of the same pipeline; only reading and writing differ (``segment``).
        self.photos, self.multiclass = is_photo_bundle(self.root), is_multiclass_bundle(self.root)
        self.names: list[str] = []
        if self.multiclass:
            from medwss.data.natural.classes import class_names

            self.names = list(class_names(str(parser["class_set"])))
        self.region = str(parsed(parser, "region", "none"))
        self.working_size = int(parser["working_size"])
        # Crop to the organ prior's box before resizing, as in training (``data#crop_margin``); slice sets read it.
        crop = parsed(parser, "crop_margin")
        self.crop_margin = None if crop is None else int(crop)
        self.preprocessing = parsed(parser, "preprocessing")
        # The bundle's own postprocessing (back onto the scan's grid or the photo's size, clipped to the organ prior)
        # without its writer: ``segment`` writes NIfTI, DICOM SEG, PNG and overlays itself. One chain for every route
        # (``ClipToPriord``).
        post = parsed(parser, "postprocessing")
        writers = (WriteMaskd, WritePhotoLabelsd)
        self.postprocessing = Compose([t for t in post.flatten().transforms if not isinstance(t, writers)])
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

        A photo bundle writes the label map as a VOC-palette PNG at ``out`` (and its overlay) instead.

        Raises:
            MedwssError: unreadable scan or prior, a prior off the scan's grid, a prior the bundle needs missing.
        """
        mask = self.predict(scan, prior, progress)
        if self.photos:
            return self._write_photo(scan, mask, out, overlay)
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

    def _write_photo(self, photo: Path, labels, out: Path, overlay: Path | None) -> list[Path]:
        """A photo's label map as a VOC-palette PNG at ``out`` (and an overlay with a legend), each atomically."""
        import numpy as np

        from medwss.data.natural.dataset import read_photo
        from medwss.data.natural.voc import write_label_png
        from medwss.inference.photo_segment import draw_photo_overlay

        written = [write_label_png(labels, out)]
        if overlay is not None:
            found = [self.names[k - 1] for k in np.unique(labels) if 0 < k <= len(self.names)]
            shown = ", ".join(found[:5]) + (f" +{len(found) - 5} more" if len(found) > 5 else "")
            title = f"{photo.name}: {self.method} ({shown or 'nothing found'})"
            draw_photo_overlay(read_photo(photo), labels, overlay, self.names, title)
        return written

    def predict(self, scan: Path, prior: Path | None = None, progress: SliceProgress | None = None):
        """The (x, y, z) boolean mask of one scan, on exactly its grid (bounded by the prior, if any); for a
        multi-class bundle the uint8 label map (a photo's (H, W) at its own size); ``progress`` as in ``segment``.

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
        labels = torch.as_tensor(restored)[0].numpy()
        return labels.astype("uint8") if self.multiclass else labels > 0


def _config_device(parser) -> str:
    """The bundle config's ``device`` (a ``torch.device`` expression or a name), ``cpu`` when it has none."""
    from medwss.runtime.config import parsed

    return str(parsed(parser, "device", "cpu"))
