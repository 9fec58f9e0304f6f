"""What bundle configs call by ``_target_``: weights, the scan list, and the postprocessing transforms."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.transforms import Compose, ConcatItemsd, MapTransform

from medwss.errors import MedwssError
from medwss.runtime.config import anchor_macros, bundle_dir_of, macro_files, parsed


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


def load_refiner(path: str | Path) -> torch.nn.Module:
    """The ``refine`` stage's UNet: architecture from the note beside the weights (``refiner.json``), in eval mode.

    Why a note: the UNet's channels and input channels are the stage's settings, not inference.yaml's, so a
    retrained refiner cannot meet a stale architecture.

    Raises:
        MedwssError: the refine stage has not run (no weights or no note).
    """
    import json

    from medwss.refinement.training import RefinementSettings, build_refiner

    note_path = Path(path).with_suffix(".json")
    if not note_path.is_file():
        raise MedwssError(note_path, "no refiner: run `medwss train BUNDLE --stage refine` first")
    network = json.loads(note_path.read_text())["network"]
    settings = RefinementSettings(channels=tuple(network["channels"]), num_res_units=int(network["num_res_units"]))
    return load_weights(build_refiner(int(network["in_channels"]), settings), path)


def load_inference(
    bundle: str | Path, method: str, methods: Sequence[str], overrides: dict[str, Any] | None = None
) -> tuple[Path, Any, Any]:
    """A bundle's ``configs/inference.yaml`` set up for ``method``: (bundle folder, parser, agent or None).

    The agent (``network_def`` + ``models/model.pt``) is loaded only for ``rlsp``: the baselines need the detector
    alone. One place for every segmenter (volumes, photos), so they read bundles alike.

    Raises:
        MedwssError: unknown method, not a bundle, no inference config, untrained bundle.
    """
    from monai.bundle import ConfigParser

    if method not in methods:
        raise MedwssError("--method", f"unknown method {method!r} (use {', '.join(methods)})")
    root = bundle_dir_of(bundle)
    config = root / "configs" / "inference.yaml"
    if not config.is_file():
        raise MedwssError(config, "bundle has no inference config")
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.set(anchor_macros(parser.get(), root))
    for part in macro_files(parser.get()):  # models/inference_parts.json: written with the agent's weights
        if not part.is_file():
            raise MedwssError(part, "no trained weights: train the bundle first (medwss train BUNDLE)")
    parser["bundle_root"] = str(root)
    parser["method"] = method
    for key, value in (overrides or {}).items():
        parser[key] = value
    network = None
    if method == "rlsp":
        network = load_weights(parsed(parser, "network_def"), root / "models" / "model.pt")
    return root, parser, network


def scan_datalist(folder: str | Path, prior_folder: str | Path | None = None) -> list[dict[str, str]]:
    """``[{image: path, prior?: path}]`` for every scan in ``folder`` (volume files and DICOM series folders).

    Raises:
        MedwssError: no scans, or a scan without its organ prior (matched by case id) when priors are asked for.
    """
    from medwss.data.discovery import find_scans, match_priors

    scans = find_scans([Path(folder)])
    priors = match_priors(scans, Path(prior_folder)) if prior_folder else [None] * len(scans)
    return [{"image": str(s), **({"prior": str(p)} if p else {})} for s, p in zip(scans, priors, strict=True)]


def preprocessing_with_prior(preset: str, working_size: int = 128, crop_margin: int | None = None) -> Compose:
    """The volume pipeline for scan + organ prior, the prior appended as the image's last channel.

    MONAI's evaluator hands the inferer only the image, so the prior travels inside it (``SelfPlayInferer``
    with ``region='prior'`` reads it back from the last channel). ``crop_margin``: crop to the prior's box first,
    as in training (``data#crop_margin``).
    """
    from medwss.data.transforms import volume_transforms

    return Compose(
        [
            volume_transforms(preset, working_size, keys=("image", "prior"), crop_margin=crop_margin),
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


class ClipToPriord(MapTransform):
    """Zero ``pred`` outside the organ prior, on the scan's own grid (after ``InvertToOriginald``).

    Why a step of the bundle's ``postprocessing``: the inferer's clip on the working grid alone leaks across the
    prior's border once the mask is resized back (measured: 18,002 voxels outside the liver on IRCADb 01), and as a
    transform of the bundle every route (``medwss segment``, ``python -m monai.bundle run``, MONAI Label) bounds the
    mask the same way. The prior is read again from its file on the scan's grid (``data.io.read_mask_array``), not
    inverted from the working grid, where nearest resizing would move its border. A sample without ``prior_key``
    (a bundle without organ priors, a run without ``--roi-mask``) passes unchanged.

    Args:
        keys: the masks to clip (on the scan's grid).
        prior_key: the organ prior: its path, or the MetaTensor the preprocessing loaded from it.
        image_key: the scan, whose grid the prior must match.

    Raises:
        MedwssError: an unreadable prior, or one off the scan's grid.
    """

    def __init__(self, keys: str = "pred", prior_key: str = "prior", image_key: str = "image") -> None:
        super().__init__(keys)
        self.prior_key, self.image_key = prior_key, image_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from medwss.data.io import read_mask_array
        from medwss.data.transforms import source_of

        d = dict(data)
        if d.get(self.prior_key) is None:
            return d
        prior = torch.from_numpy(read_mask_array(source_of(d[self.prior_key]), source_of(d[self.image_key]))[0] > 0)
        for key in self.key_iterator(d):
            d[key] = d[key] * prior  # (1 | K, X, Y, Z) x (X, Y, Z): the mask keeps its dtype and meta
        return d


def _spatial_part(preprocessing: Compose) -> Compose:
    """The volume pipeline inside ``preprocessing`` (a ``preprocessing_with_prior`` Compose wraps it)."""
    first = preprocessing.transforms[0] if preprocessing.transforms else None
    return first if isinstance(first, Compose) else preprocessing
