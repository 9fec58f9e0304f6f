"""The bundle's patch scorer: how the game scores a patch (``scoring`` in common.yaml) and the learned position prior.

Shared by the detector stage (which learns and exports the prior), the self-play stage (which scores the training
slices) and the accuracy benchmark, so all of them score patches the same way as inference does.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from medwss.errors import MedwssError

PRIOR_FILE = "position_prior.pt"
"""``models/`` file of the position prior the detector stage learns from slice labels (``scoring#prior: true``)."""


def scoring_settings(parser) -> dict[str, Any]:
    """``scoring`` of common.yaml: ``method`` (mil/cam/contrast), ``gate`` and ``prior`` (bools), ``prior_shape``
    (map / gaussian, ``detector.scoring.PRIOR_SHAPES``), ``contrast`` (``detector.contrast.OrganContrast``'s
    settings, complete; only for ``method: contrast``); defaults = plain MIL."""
    from medwss.detector.contrast import OrganContrast
    from medwss.detector.scoring import PRIOR_SHAPES, SCORE_METHODS

    scoring = dict(parser.get("scoring") or {})
    keys = ("method", "gate", "prior", "prior_shape", "contrast")
    unknown = set(scoring) - set(keys)
    if unknown:
        raise MedwssError("scoring", f"unknown settings {sorted(unknown)} ({', '.join(keys)})")
    shape = str(scoring.get("prior_shape", "map"))
    if shape not in PRIOR_SHAPES:
        raise MedwssError("scoring#prior_shape", f"must be one of {PRIOR_SHAPES}, got {shape!r}")
    method = str(scoring.get("method", "mil"))
    if method not in SCORE_METHODS:
        raise MedwssError("scoring#method", f"must be one of {SCORE_METHODS}, got {method!r}")
    contrast = dict(scoring.get("contrast") or {})
    try:
        contrast = asdict(OrganContrast(**contrast))
    except (TypeError, ValueError) as err:
        raise MedwssError("scoring#contrast", str(err)) from None
    settings = {"method": method, "gate": bool(scoring.get("gate", False)), "prior": bool(scoring.get("prior", False)),
                "prior_shape": shape}  # fmt: skip
    return settings | ({"contrast": contrast} if method == "contrast" else {})


def bundle_scorer(parser, root: Path, detector, *, with_prior: bool = True):
    """The bundle's ``PatchScorer``; the position prior is read from ``models/`` (``with_prior=False``: not yet)."""
    from medwss.detector.scoring import PatchScorer

    s = scoring_settings(parser)
    prior = None
    if s["prior"] and with_prior:
        path = root / "models" / PRIOR_FILE
        if not path.is_file():
            raise MedwssError(path, "no position prior: run `medwss train BUNDLE --stage detector` first")
        prior = torch.load(path, map_location="cpu", weights_only=True)
    try:
        grid = int(parser["grid_size"])
        return PatchScorer(detector, grid, s["method"], s["gate"], prior, contrast=s.get("contrast"))
    except ValueError as err:
        raise MedwssError("scoring", str(err)) from None


def export_position_prior(parser, root: Path, detector, images, presence, regions) -> dict[str, Any] | None:
    """Learn the position prior from the training slices' labels (``scoring#prior: true``), save it to ``models/``.

    Returns a provenance note, or None when the bundle does not use a prior.
    """
    from medwss.detector.scoring import position_prior
    from medwss.runtime.checkpoint import save_checkpoint

    settings = scoring_settings(parser)
    if not settings["prior"]:
        return None
    scored = bundle_scorer(parser, root, detector, with_prior=False).score(images, regions)
    labels = presence[:, 0]
    try:
        prior = position_prior(scored.local, labels, scored.region, settings["prior_shape"])
    except ValueError as err:
        raise MedwssError("scoring#prior", str(err)) from None
    save_checkpoint(prior, root / "models" / PRIOR_FILE)
    return {"file": f"models/{PRIOR_FILE}", "present_slices": int((labels == 1).sum()),
            "absent_slices": int((labels == 0).sum()), "shape": settings["prior_shape"]}  # fmt: skip
