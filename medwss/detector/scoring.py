"""Patch presence probabilities from a trained ``PresenceDetector``: the scores the RLSP game compares.

One forward pass per slice gives every cell's logit; a patch's probability is the detector's own MIL pooling
over the cells (pixels) it covers, so a patch is scored as the detector scores a slice, only over a smaller bag
(RLSP Sec. 3.1: the detector "scores any patch"). Patches are never cropped, resized or blanked, which is what
made whole-slice classifiers fail as patch scorers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from medwss.detector.contrast import OrganContrast, contrast_patch_scores
from medwss.detector.network import PresenceDetector, pool_cells
from medwss.runtime.progress import SliceProgress, batches


def patch_logits_from_cells(
    cells: torch.Tensor,
    image_size: tuple[int, int],
    grid: int,
    region: torch.Tensor | None,
    pooling: str,
    lse_r: float,
) -> torch.Tensor:
    """Cell logits (B, K, h, w) -> patch logits (B, K, G, G); pixels outside ``region`` do not vote.

    Why pixels: cells are 8 x 8 px, patches H/G px; pooling nearest-upsampled logits weights each cell by the
    area it shares with the patch, and equals cell pooling when patches are whole cells.
    """
    height, width = image_size
    if height % grid or width % grid:
        raise ValueError(f"image size {height}x{width} is not divisible by grid {grid}")
    ph, pw = height // grid, width // grid
    pixels = F.interpolate(cells, size=(height, width), mode="nearest")
    b, k = pixels.shape[:2]
    blocks = pixels.reshape(b, k, grid, ph, grid, pw).permute(0, 1, 2, 4, 3, 5)
    mask = None
    if region is not None:
        mask = region.reshape(b, 1, grid, ph, grid, pw).permute(0, 1, 2, 4, 3, 5)
    return pool_cells(blocks, mask, pooling, lse_r)


@torch.no_grad()
def score_patches(
    model: PresenceDetector,
    slices: torch.Tensor,
    grid: int,
    region: torch.Tensor | None = None,
    class_index: int = 0,
    batch_size: int = 64,
    progress: SliceProgress | None = None,
) -> torch.Tensor:
    """Presence probability of each patch of a G x G grid: (B, C, H, W) -> (B, G, G) float32.

    Args:
        model: the detector; put in eval mode here (batch-norm statistics must not depend on the batch).
        slices: images, preprocessed as for training.
        grid: G; H and W must be divisible by G.
        region: optional (B, H, W) bool prior (organ mask, body mask). Only its pixels vote, and a patch with
            no region pixel gets probability 0: the prior says the ROI cannot be there.
        class_index: which of the K presence classes to score.
        batch_size: slices per forward pass (memory bound only; results do not depend on it).
        progress: told after each batch (``"scoring patches on slices"``).
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for part in batches(slices.shape[0], batch_size, progress, "scoring patches on slices"):
        x = slices[part].to(device=device, dtype=torch.float32)
        reg = None if region is None else region[part].to(device=device, dtype=torch.bool)
        cells = model(x)[:, class_index : class_index + 1]
        logits = patch_logits_from_cells(cells, x.shape[-2:], grid, reg, model.pooling, model.lse_r)[:, 0]
        probs = torch.sigmoid(logits)
        if reg is not None:
            h, w = x.shape[-2:]
            inside = reg.reshape(-1, grid, h // grid, grid, w // grid).any(dim=(2, 4))
            probs = probs * inside
        out.append(probs.float())
    return torch.cat(out)


# ------------------------------------------------------------------------------------------------ localising scores
SCORE_METHODS = ("mil", "cam", "contrast")
"""How a patch is scored: ``mil`` = the detector's own pooling over the patch's cells (``score_patches``); ``cam`` =
Grad-CAM++ of the slice logit averaged over the patch, scaled to [0, 1] per slice; ``contrast`` = how much darker
(or brighter) the patch is than the organ prior on its slice (``detector.contrast``; needs the region)."""


def cam_patch_scores(
    model: PresenceDetector,
    slices: torch.Tensor,
    grid: int,
    region: torch.Tensor | None = None,
    class_index: int = 0,
    batch_size: int = 32,
    progress: SliceProgress | None = None,
) -> torch.Tensor:
    """Grad-CAM++ of the slice presence logit, averaged over each patch: (B, C, H, W) -> (B, G, G) in [0, 1].

    Why: measured on 26 prostate patients (``benchmarks/results/cohort.md``), the CAM of a position-aware detector
    localises the gland (patch AUC ~0.84 on held-out patients) where cell-pooled scores of the same network are
    less stable. Each slice's map is scaled to max 1, so the map says *where*, never *whether*: that is the gate's
    job (``PatchScorer``). Patches outside ``region`` score 0.
    """
    from medwss.detector.cam import cam_maps

    height, width = slices.shape[-2:]
    if height % grid or width % grid:
        raise ValueError(f"image size {height}x{width} is not divisible by grid {grid}")
    maps = cam_maps(model, slices, region=region, class_index=class_index, batch_size=batch_size, progress=progress)
    if region is not None:
        maps = maps * region.to(maps.device, torch.bool)
    patches = maps.reshape(-1, grid, height // grid, grid, width // grid).mean(dim=(2, 4))
    top = patches.flatten(1).amax(1).clamp(min=torch.finfo(patches.dtype).tiny)
    return (patches / top[:, None, None]).float()


PRIOR_SHAPES = ("map", "gaussian")
"""How the learned position prior is kept. "map": the contrast map itself. "gaussian": the 2D Gaussian with the map's
weighted mean and covariance. Why: on 16 x 16 patches the contrast map is ragged (one seed's detector lights a few
cells more than its neighbours), and ranking patches by local evidence x the ragged map found the prostate worse
than the distance to the centre of the field of view; the fitted Gaussian keeps where the ROI tends to be and how
far it spreads, and drops the raggedness (benchmarks/results/stop_study_map.md: at the reference's patch count,
local x Gaussian 0.747 3D Dice over 9 folds, the game score local x map x gate 0.687, the distance to the centre
0.742)."""


def gaussian_fit(prior: torch.Tensor) -> torch.Tensor:
    """The 2D Gaussian with the weighted mean and covariance of a non-negative (G, G) map, scaled to max 1.

    A map lit in one cell or along one line (small grids, tiny training sets) has no spread of its own; then each
    cell's weight is taken as spread evenly over the cell, which adds a cell's variance (1/12 per axis). Only then:
    the shipped bundles' priors were fitted without it.

    Raises:
        ValueError: a map with no weight.
    """
    g_rows, g_cols = prior.shape
    weight = prior.double().clamp(min=0)
    total = float(weight.sum())
    if total <= 0:
        raise ValueError("a Gaussian prior needs a map with some weight")
    weight = weight / total
    rows, cols = torch.meshgrid(torch.arange(g_rows, dtype=torch.float64), torch.arange(g_cols, dtype=torch.float64),
                                indexing="ij")  # fmt: skip
    points = torch.stack([rows.flatten(), cols.flatten()], dim=1)
    w = weight.flatten()[:, None]
    mean = (w * points).sum(0)
    centred = points - mean
    cov = (w * centred).T @ centred
    if float(torch.linalg.det(cov)) <= 1e-9:
        cov = cov + torch.eye(2, dtype=torch.float64) / 12.0
    mahalanobis = (centred @ torch.linalg.inv(cov) * centred).sum(1)
    fitted = torch.exp(-0.5 * mahalanobis).view(g_rows, g_cols)
    return (fitted / fitted.max()).float()


def position_prior(
    local_scores: torch.Tensor, presence: torch.Tensor, region: torch.Tensor | None = None, shape: str = "map"
) -> torch.Tensor:
    """Where on the grid the ROI tends to be, from slice labels only: (N, G, G) scores, (N,) labels -> (G, G).

    The mean patch score over ROI-present slices minus the mean over ROI-absent ones, clipped at 0 and scaled to
    max 1: positions that light up only when the ROI is in the slice. Why: scans are framed around the anatomy, so
    position is strong evidence (a fixed central box beat every content score before it); learning the box from
    the detector's own maps keeps it a weak-label method and adapts it to each data set's framing.

    Args:
        local_scores: per-slice scores before any slice gate (``PatchScorer.local_scores``).
        presence: 1 present, 0 absent, NaN unlabelled (ignored).
        region: optional (N, G, G) bool legal patches; patches outside count as 0.
        shape: "map" (the contrast map) or "gaussian" (its fitted 2D Gaussian, `PRIOR_SHAPES`).

    Raises:
        ValueError: no ROI-present or no ROI-absent slice (nothing to contrast), an unknown shape.
    """
    if shape not in PRIOR_SHAPES:
        raise ValueError(f"prior shape must be one of {PRIOR_SHAPES}, got {shape!r}")
    labels = presence.reshape(-1)
    if labels.shape[0] != local_scores.shape[0]:
        raise ValueError(f"expected {local_scores.shape[0]} slice labels, got {labels.shape[0]}")
    scores = local_scores.float() if region is None else local_scores.float() * region.bool()
    present, absent = labels == 1, labels == 0
    if not bool(present.any()) or not bool(absent.any()):
        raise ValueError("a position prior needs ROI-present and ROI-absent training slices")
    prior = (scores[present].mean(0) - scores[absent].mean(0)).clamp(min=0)
    top = float(prior.max())
    if top <= 0:
        raise ValueError("the ROI-present slices score nowhere higher than the ROI-absent ones: no position prior")
    prior = prior / top
    return gaussian_fit(prior) if shape == "gaussian" else prior


class PatchScorer:
    """The game's patch scores, one definition for training, calibration, inference and replay.

    score = local score (``method``) x position prior (optional) x slice gate (optional), in [0, 1]:

    - local: where in the slice the evidence lies (``mil``, ``cam`` or ``contrast``, see ``SCORE_METHODS``);
    - position prior: ``position_prior`` of the training slices (a (G, G) tensor, or a path to one);
    - gate: the detector's slice-level presence probability, so a slice the detector calls ROI-free scores low
      everywhere and the agent learns to take nothing there.

    ``mil`` without prior and gate is ``score_patches``, the scoring of bundles trained before this existed.
    """

    def __init__(
        self,
        detector: PresenceDetector,
        grid_size: int,
        method: str = "mil",
        gate: bool = False,
        prior: torch.Tensor | str | None = None,
        class_index: int = 0,
        contrast: OrganContrast | Mapping[str, Any] | None = None,
    ) -> None:
        """``contrast``: the ``OrganContrast`` settings (or their dict, as a bundle config gives them) of the
        ``contrast`` method; ignored by the others."""
        if method not in SCORE_METHODS:
            raise ValueError(f"scoring method must be one of {SCORE_METHODS}, got {method!r}")
        if isinstance(prior, (str, bytes)) or hasattr(prior, "__fspath__"):
            prior = torch.load(prior, map_location="cpu", weights_only=True)
        if prior is not None and tuple(prior.shape) != (grid_size, grid_size):
            raise ValueError(f"position prior must be ({grid_size}, {grid_size}), got {tuple(prior.shape)}")
        self.detector = detector.eval()
        self.grid_size, self.method, self.gate, self.class_index = grid_size, method, gate, class_index
        self.prior = None if prior is None else prior.float()
        self.contrast = contrast if isinstance(contrast, OrganContrast) else OrganContrast(**dict(contrast or {}))

    def local_scores(
        self, slices: torch.Tensor, region: torch.Tensor | None = None, progress: SliceProgress | None = None
    ) -> torch.Tensor:
        """(B, G, G) scores before prior and gate; 0 outside ``region`` (B, H, W) bool."""
        if self.method == "contrast":
            return contrast_patch_scores(slices, self.grid_size, region, self.contrast)
        score = cam_patch_scores if self.method == "cam" else score_patches
        return score(self.detector, slices, self.grid_size, region, class_index=self.class_index, progress=progress)

    def slice_probabilities(
        self, slices: torch.Tensor, region: torch.Tensor | None = None, progress: SliceProgress | None = None
    ) -> torch.Tensor:
        """(B,) the detector's presence probability of each slice (pooled over ``region`` as in training)."""
        from medwss.detector.cam import slice_probabilities

        return slice_probabilities(
            self.detector, slices, region=region, class_index=self.class_index, progress=progress
        )

    def combine(self, local: torch.Tensor, gate: torch.Tensor | None) -> torch.Tensor:
        """local x prior x gate (each optional), as the game reads them."""
        scores = local
        if self.prior is not None:
            scores = scores * self.prior.to(scores.device)
        if self.gate:
            if gate is None:
                raise ValueError("a gated scorer needs the slice probabilities")
            scores = scores * gate.to(scores.device).view(-1, 1, 1)
        return scores.clamp(0.0, 1.0).float()

    def __call__(self, slices: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, H, W) slices [, (B, H, W) bool region] -> (B, G, G) game scores in [0, 1]."""
        return self.score(slices, region).scores

    def score(
        self, slices: torch.Tensor, region: torch.Tensor | None = None, progress: SliceProgress | None = None
    ) -> ScoredSlices:
        """Game scores with the parts they are made of and the legal patches (what the game and agents need);
        ``progress`` is told after each batch of slices of each pass."""
        from medwss.metrics.patches import patch_labels

        gate = self.slice_probabilities(slices, region, progress) if self.gate else None
        local = self.local_scores(slices, region, progress)
        legal = None if region is None else torch.as_tensor(patch_labels(region, self.grid_size)).bool()
        return ScoredSlices(self.combine(local, gate), local, gate, legal)


@dataclass
class ScoredSlices:
    """What ``PatchScorer.score`` measured on a batch of slices."""

    scores: torch.Tensor
    """(B, G, G) game scores in [0, 1]."""
    local: torch.Tensor
    """(B, G, G) local scores before prior and gate (the position prior is learned from these)."""
    gate: torch.Tensor | None
    """(B,) slice presence probabilities, when the scorer gates."""
    region: torch.Tensor | None
    """(B, G, G) bool legal patches, None = all."""
