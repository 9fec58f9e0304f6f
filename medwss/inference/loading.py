"""Small builders that bundle configs call by ``_target_``: weights, the scan list, and the postprocessing."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose, ConcatItemsd, MapTransform

from medwss.errors import MedwssError


def load_weights(network: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """``network`` with the state dict at ``path``, in eval mode.

    Raises:
        MedwssError: no weights there (the bundle has not been trained).
    """
    p = Path(path)
    if not p.is_file():
        raise MedwssError(p, "no trained weights: train the bundle first (medwss train BUNDLE)")
    network.load_state_dict(torch.load(p, map_location="cpu", weights_only=True))
    return network.eval()


def scan_datalist(folder: str | Path, prior_folder: str | Path | None = None) -> list[dict[str, str]]:
    """``[{image: path, prior?: path}]`` for every scan in ``folder`` (volume files and DICOM series folders).

    Raises:
        MedwssError: no scans, or a scan without its organ prior (matched by case id) when priors are asked for.
    """
    from medwss.inference.segment import find_scans, match_priors

    scans = find_scans([Path(folder)])
    priors = match_priors(scans, Path(prior_folder)) if prior_folder else [None] * len(scans)
    return [{"image": str(s), **({"prior": str(p)} if p else {})} for s, p in zip(scans, priors, strict=True)]


def preprocessing_with_prior(preset: str, working_size: int = 128) -> Compose:
    """The volume pipeline for scan + organ prior, the prior appended as the image's last channel.

    MONAI's evaluator hands the inferer only the image, so the prior travels inside it (``SelfPlayInferer``
    with ``region='prior'`` reads it back from the last channel).
    """
    from medwss.data.transforms import volume_transforms

    return Compose(
        [
            volume_transforms(preset, working_size, keys=("image", "prior")),
            ConcatItemsd(keys=("image", "prior"), name="image", dim=0),
        ]
    )


class WriteMaskd(MapTransform):
    """Write ``pred`` as ``<output_dir>/<case>.nii.gz`` on the scan's own grid (atomic; never over an input)."""

    def __init__(self, keys: str = "pred", output_dir: str | Path = "./medwss_seg", image_key: str = "image"):
        super().__init__(keys)
        self.output_dir, self.image_key = Path(output_dir), image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medwss.data.io import strip_suffix, write_mask

        d = dict(data)
        source = Path(str(d[self.image_key].meta["filename_or_obj"]))
        for key in self.key_iterator(d):
            mask = torch.as_tensor(d[key])[:1] > 0
            d[f"{key}_file"] = str(
                write_mask(mask[0].numpy(), source, self.output_dir / f"{strip_suffix(source)}.nii.gz")
            )
        return d


class InvertToOriginald(MapTransform):
    """Map ``pred`` from the working grid back onto the scan's original grid (``medwss.data.slices``'s inverse,
    the one ``medwss segment`` uses, so every route gives the same voxels)."""

    def __init__(self, keys: str, preprocessing: Compose, image_key: str = "image") -> None:
        super().__init__(keys)
        self.preprocessing, self.image_key = preprocessing, image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medwss.data.slices import invert_to_original

        d = dict(data)
        image = d[self.image_key]
        for key in self.key_iterator(d):
            d[key] = invert_to_original(torch.as_tensor(d[key])[:1], image, _spatial_part(self.preprocessing))
        return d


def _spatial_part(preprocessing: Compose) -> Compose:
    """The volume pipeline inside ``preprocessing`` (a ``preprocessing_with_prior`` Compose wraps it)."""
    first = preprocessing.transforms[0] if preprocessing.transforms else None
    return first if isinstance(first, Compose) else preprocessing


def postprocessing(preprocessing: Compose, output_dir: str | Path, write: bool = True) -> Compose:
    """Invert the preprocessing on ``pred`` (nearest neighbour: it is a mask), then write it."""
    steps: list[Any] = [InvertToOriginald("pred", preprocessing)]
    if write:
        steps.append(WriteMaskd("pred", output_dir))
    return Compose(steps)
