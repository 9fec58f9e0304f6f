"""``medwss segment``: scans in, NIfTI masks out, on exactly each scan's grid.

One ``Segmenter`` per bundle and method parses the bundle's ``inference.yaml`` once (the same objects MONAI's
evaluator and MONAI Label use: preprocessing, ``SelfPlayInferer``, the agent), then segments scan after scan.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from medwss.errors import MedwssError

logger = logging.getLogger(__name__)


def find_scans(paths: Sequence[Path]) -> list[Path]:
    """Expand files, folders of volume files and DICOM series folders into a sorted list of scans.

    Raises:
        MedwssError: a missing path, or a folder with no scan.
    """
    from medwss.data.io import dicom_series_ids, volume_suffix

    scans: list[Path] = []
    for path in paths:
        p = Path(path)
        if not p.exists():
            raise MedwssError(p, "file not found")
        if p.is_file():
            scans.append(p)
        elif dicom_series_ids(p):
            scans.append(p)
        else:
            found = sorted(
                c
                for c in p.iterdir()
                if not c.name.startswith(".")
                and ((c.is_file() and volume_suffix(c)) or (c.is_dir() and dicom_series_ids(c)))
            )
            if not found:
                raise MedwssError(p, "no scans in this folder (NIfTI, MetaImage, NRRD or DICOM series)")
            scans += found
    return scans


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


def output_paths(scans: Sequence[Path], out: Path | None, method: str) -> list[Path]:
    """Where each mask goes: ``out`` itself for one scan named *.nii(.gz), else ``out/<case>.nii.gz``; by default
    ``./<case>_<method>.nii.gz`` (the current folder: input folders may be read-only, and inputs stay untouched).

    Raises:
        MedwssError: two scans with the same case id, or an output equal to an input.
    """
    from medwss.data.io import NIFTI_SUFFIXES, strip_suffix, volume_suffix

    if out is not None and len(scans) == 1 and volume_suffix(out) in NIFTI_SUFFIXES:
        paths = [out]
    elif out is not None:
        if out.exists() and not out.is_dir():
            raise MedwssError(out, "for several scans, -o must be a folder")
        paths = [out / f"{strip_suffix(s)}.nii.gz" for s in scans]
    else:
        paths = [Path(f"{strip_suffix(s)}_{method}.nii.gz") for s in scans]
    if len({p.resolve() for p in paths}) != len(paths):
        raise MedwssError(out or Path("."), "two scans share a case id; their masks would overwrite each other")
    inputs = {Path(s).resolve() for s in scans}
    for p in paths:
        if p.resolve() in inputs:
            raise MedwssError(p, "refusing to overwrite an input scan")
    return paths


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
        device: str | torch.device | None = None,
    ) -> None:
        from medwss.bundle.config import load_inference, parsed
        from medwss.inference.inferer import METHODS
        from medwss.runtime.device import resolve_device

        self.root, parser, self.network = load_inference(bundle, method, METHODS, overrides)
        self.method = method
        self.region = str(parser["region"])
        self.preprocessing = parsed(parser, "preprocessing")
        self.inferer = parsed(parser, "inferer")
        # --device, else the bundle's ``device`` (MONAI's bundle property), else the CPU. Detector, scorer, agent and
        # game all run there; volumes are read and masks written on the CPU.
        self.device = resolve_device(device if device is not None else _config_device(parser))
        self.inferer.detector.to(self.device)
        if self.network is not None:
            self.network.to(self.device)

    def segment(self, scan: Path, out: Path, prior: Path | None = None, overlay: Path | None = None) -> Path:
        """Segment one scan and write its mask (and an overlay PNG) atomically.

        Raises:
            MedwssError: unreadable scan or prior, a prior off the scan's grid, a prior the bundle needs missing.
        """
        from medwss.data.io import write_mask
        from medwss.data.transforms import unwrap_errors
        from medwss.inference.loading import InvertToOriginald

        if self.region == "prior" and prior is None:
            raise MedwssError(scan, "this bundle needs an organ prior mask: give --roi-mask")
        data = {"image": str(scan), **({"prior": str(prior)} if prior is not None and self.region == "prior" else {})}
        with unwrap_errors():
            processed = self.preprocessing(data)
        inputs = torch.as_tensor(processed["image"]).unsqueeze(0)
        pred = self.inferer(inputs, self.network)[0]
        restored = InvertToOriginald("pred", self.preprocessing)({"pred": pred, "image": processed["image"]})["pred"]
        mask = torch.as_tensor(restored)[0].numpy() > 0
        # The prior bounds the mask on the scan's own grid too: the working-grid clip alone leaks across its border
        # when the mask is resized back (measured: 18,002 voxels outside the liver on IRCADb 01).
        if prior is not None:
            from medwss.data.io import read_mask_array

            mask &= read_mask_array(prior, scan)[0] > 0
        written = write_mask(mask, scan, out)
        if overlay is not None:
            from medwss.data.io import read_volume_array
            from medwss.viz.overlay import draw_overlay

            image = read_volume_array(scan)[0]
            draw_overlay(image, mask, overlay, title=f"{scan.name}: {self.method} ({int(mask.sum())} voxels)")
        return written


def _config_device(parser) -> str:
    """The bundle config's ``device`` (a ``torch.device`` expression or a name), ``cpu`` when it has none."""
    from medwss.bundle.config import parsed

    return str(parsed(parser, "device", "cpu"))
