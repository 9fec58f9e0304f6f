"""The game's ROI threshold, calibrated on the detector's own scores of slices the weak labels call ROI-free.

Why: RLSP's termination rule asks whether the opponent's final patch is one "the detector calls ROI". A MIL
detector trained on slice labels only is not calibrated per patch: on the shared scans (benchmarks/results) its
ROI patches score 0.01-0.4 while a few background patches of positive slices score > 0.9, so a fixed 0.5 makes
the agent stop at once on one slab and run into background on another. Slices whose label says "no ROI" hold
nothing but background, so the q-quantile of their patch scores is a threshold with a known background rate
(1 - q), measured from image-level labels alone (no mask is read).
"""

from __future__ import annotations

import torch

AUTO = "auto"
"""Config value of ``selfplay#rules#roi_threshold`` that asks for the calibrated threshold."""


def background_score_quantile(
    scores: torch.Tensor,
    presence: torch.Tensor,
    quantile: float,
    region: torch.Tensor | None = None,
) -> float:
    """The ``quantile`` of patch scores over ROI-absent slices (inside the region): the calibrated ROI threshold.

    Args:
        scores: (N, G, G) detector patch scores of the training slices.
        presence: (N,) slice labels (1 present, 0 absent, NaN unlabelled); only absent slices are read.
        quantile: in (0, 1); 1 - quantile is the share of background patches that still count as ROI.
        region: optional (N, G, G) bool legal patches; patches outside it are never played, so never counted.

    Raises:
        ValueError: bad quantile, or no ROI-absent slice / patch to calibrate on.
    """
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"roi_quantile must be in (0, 1), got {quantile}")
    absent = presence.reshape(-1) == 0
    if not bool(absent.any()):
        raise ValueError("no ROI-absent training slice to calibrate roi_threshold on: give a number instead of 'auto'")
    values = scores[absent]
    if region is not None:
        values = values[region[absent].bool()]
    values = values.reshape(-1).float()
    if values.numel() == 0:
        raise ValueError("the ROI-absent training slices have no patch inside the region to calibrate roi_threshold")
    # GameRules needs a threshold in (0, 1]; a detector that scores every background patch 0 gets the smallest one.
    return float(min(max(torch.quantile(values, quantile).item(), 1e-6), 1.0))
