"""Grad-CAM++ masks from the presence detector: the usual weakly-supervised baseline RLSP is compared against.

The detector is explained as the slice classifier it is trained as: ``PresenceLogits`` wraps it so it returns the
pooled presence logits (B, K), and MONAI's ``GradCAMpp`` (Chattopadhyay et al. 2018) weighs the activations of
the trunk's last block (``target_layer``) by the positive gradients of one class's logit. A mask keeps the pixels
whose map is at least ``cam_threshold`` on the slices the detector calls positive (probability at least
``slice_threshold``), or on the slices a user says hold the ROI, inside an optional organ/body region. Both
thresholds are chosen on validation data by mean 3D Dice (``choose_cam_thresholds``), never on the test set.

MONAI's hooks score a class as ``logits[:, k].squeeze()``, which with a batch of slices has shape (B,) and
broadcasts against the (B, C, h, w) gradients along the wrong axis (the GradCAMpp quirk in ``ENV.md``);
``_BatchHooks`` returns a (B, 1, 1, 1) score instead, so whole batches are explained in one backward pass.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.visualize import GradCAMpp, ModelWithHooks
from torch import nn

from medwss.detector.network import DetectorEnsemble, PresenceDetector
from medwss.runtime.progress import SliceProgress, batches

logger = logging.getLogger(__name__)

CAM_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Default candidate map thresholds for ``choose_cam_thresholds``."""
SLICE_THRESHOLDS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Default candidate slice-probability thresholds (0: every slice)."""


class PresenceLogits(nn.Module):
    """The detector as a slice classifier: (B, C, H, W) [, region (B, H, W)] -> pooled presence logits (B, K)."""

    def __init__(self, detector: PresenceDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        return self.detector.presence_logits(x, region)


class _BatchHooks(ModelWithHooks):
    """MONAI's ``ModelWithHooks`` with a (B, 1, 1, 1) class score, so Grad-CAM++ works on batches (module doc)."""

    def class_score(self, logits: torch.Tensor, class_idx: int) -> torch.Tensor:
        return logits[:, class_idx].reshape(-1, 1, 1, 1)


def target_layer(model: PresenceDetector) -> str:
    """Name, inside ``PresenceLogits``, of the trunk's last block: the finest layer that has seen the most context."""
    return f"detector.features.{len(model.features) - 1}"


def normalise_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map (B, 1, H, W) to [0, 1] by its own min and max; a flat map (no evidence) becomes 0."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    span = (high - low).clamp(min=torch.finfo(maps.dtype).tiny)
    scaled = (flat - low[:, None]) / span[:, None]
    return torch.where((high > low)[:, None], scaled, torch.zeros_like(scaled)).reshape(maps.shape)


def cam_maps(
    model: PresenceDetector,
    images: torch.Tensor,
    *,
    region: torch.Tensor | None = None,
    class_index: int = 0,
    batch_size: int = 32,
    progress: SliceProgress | None = None,
) -> torch.Tensor:
    """Grad-CAM++ map of each slice for one class: (B, C, H, W) -> (B, H, W) float32 in [0, 1], max 1 per slice.

    Args:
        model: the trained detector (left unchanged: hooks go on a copy).
        images: preprocessed slices.
        region: optional (B, H, W) bool prior the presence logit is pooled over, as in training.
        class_index: which presence class to explain.
        batch_size: slices per backward pass (memory only).
        progress: told after each batch (``"Grad-CAM++ on slices"``); an ensemble counts its members' passes as one.
    """
    if isinstance(model, DetectorEnsemble):  # the members' maps, averaged, then scaled to [0, 1] again
        maps = [
            cam_maps(m, images, region=region, class_index=class_index, batch_size=batch_size,
                     progress=_member_progress(progress, k, len(model.members)))
            for k, m in enumerate(model.members)
        ]  # fmt: skip
        return normalise_maps(torch.stack(maps).mean(0).unsqueeze(1))[:, 0]
    wrapped = PresenceLogits(copy.deepcopy(model)).eval()
    device = next(wrapped.parameters()).device
    hooks = _BatchHooks(wrapped, target_layer(model), register_forward=True, register_backward=True)
    cam = GradCAMpp(hooks, target_layer(model), postprocessing=normalise_maps)
    out = []
    with torch.enable_grad():
        for part in batches(images.shape[0], batch_size, progress, "Grad-CAM++ on slices"):
            x = images[part].to(device=device, dtype=torch.float32)
            kwargs = {}
            if region is not None:
                kwargs["region"] = region[part].to(device=device, dtype=torch.bool)
            out.append(cam(x, class_idx=class_index, **kwargs)[:, 0].detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(0, *images.shape[-2:])


def _member_progress(progress: SliceProgress | None, member: int, members: int) -> SliceProgress | None:
    """Member ``member`` of ``members`` doing ``done`` of ``total`` slices, told as the ensemble's share of the
    slices: the count rises once from 0 to ``total`` over all members instead of restarting for each."""
    if progress is None:
        return None
    return lambda stage, done, total: progress(stage, (member * total + done) // members, total)


@torch.no_grad()
def slice_probabilities(
    model: PresenceDetector,
    images: torch.Tensor,
    *,
    region: torch.Tensor | None = None,
    class_index: int = 0,
    batch_size: int = 64,
    progress: SliceProgress | None = None,
) -> torch.Tensor:
    """The detector's slice-level presence probability (B,) for one class, pooled over ``region`` as in training;
    ``progress`` is told after each batch (``"scoring slices"``)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for part in batches(images.shape[0], batch_size, progress, "scoring slices"):
        x = images[part].to(device=device, dtype=torch.float32)
        reg = None if region is None else region[part].to(device=device, dtype=torch.bool)
        out.append(torch.sigmoid(model.presence_logits(x, reg)[:, class_index]).float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


def threshold_maps(
    maps: torch.Tensor,
    slice_scores: torch.Tensor,
    *,
    cam_threshold: float,
    slice_threshold: float,
    region: torch.Tensor | None = None,
) -> torch.Tensor:
    """Masks (B, H, W) bool: map >= ``cam_threshold`` on slices whose score >= ``slice_threshold``, inside region.

    ``slice_scores`` are detector probabilities, or 0/1 slice labels with ``slice_threshold`` 0.5 ("told which
    slices hold the ROI").
    """
    if slice_scores.shape != maps.shape[:1]:
        raise ValueError(f"expected {maps.shape[0]} slice scores, got shape {tuple(slice_scores.shape)}")
    masks = (maps >= cam_threshold) & (slice_scores >= slice_threshold)[:, None, None]
    return masks if region is None else masks & region.bool()


def cam_masks(
    model: PresenceDetector,
    slices: torch.Tensor,
    *,
    cam_threshold: float,
    slice_threshold: float,
    region: torch.Tensor | None = None,
    slice_labels: torch.Tensor | None = None,
    class_index: int = 0,
    batch_size: int = 32,
    progress: SliceProgress | None = None,
) -> torch.Tensor:
    """Grad-CAM++ segmentation (B, H, W) bool of slices (B, C, H, W) (gating and thresholds in the module doc).

    Args:
        model: the trained detector.
        slices: preprocessed slices.
        cam_threshold: map threshold in [0, 1].
        slice_threshold: slice-probability threshold; with ``slice_labels``, the label threshold (use 0.5).
        region: optional (B, H, W) bool organ/body prior; masks stay inside it and the slice logit is pooled on it.
        slice_labels: optional (B,) 0/1 labels that gate slices instead of the detector.
        class_index: which presence class.
        batch_size: slices per pass.
        progress: told after each batch of either pass (``SliceProgress``).
    """
    maps = cam_maps(model, slices, region=region, class_index=class_index, batch_size=batch_size, progress=progress)
    if slice_labels is None:
        scores = slice_probabilities(model, slices, region=region, class_index=class_index, progress=progress)
    else:
        scores = torch.as_tensor(slice_labels).float().reshape(-1)
    return threshold_maps(maps, scores, cam_threshold=cam_threshold, slice_threshold=slice_threshold, region=region)


@dataclass(frozen=True)
class CamThresholds:
    """Thresholds picked on validation data, with the mean 3D Dice they reached there."""

    cam_threshold: float
    """Map threshold."""
    slice_threshold: float
    """Slice-probability (or label) threshold."""
    dice: float
    """Mean over validation volumes of the 3D Dice at these thresholds."""


def choose_cam_thresholds(
    maps: torch.Tensor,
    slice_scores: torch.Tensor,
    masks: torch.Tensor,
    *,
    groups: Sequence[str] | None = None,
    region: torch.Tensor | None = None,
    cam_thresholds: Sequence[float] = CAM_THRESHOLDS,
    slice_thresholds: Sequence[float] = SLICE_THRESHOLDS,
) -> CamThresholds:
    """The (map, slice) threshold pair with the best mean 3D Dice over the validation volumes.

    Dice of a volume is computed from its slices' pixel counts (2|P and T| / (|P| + |T|); 1 when both are empty), so
    slice order does not matter. Ties go to the first pair in (cam, slice) candidate order.

    Args:
        maps: (B, H, W) ``cam_maps`` of the validation slices.
        slice_scores: (B,) detector probabilities (or 0/1 labels).
        masks: (B, H, W) bool reference masks.
        groups: (B,) volume (case) of each slice; None: one volume.
        region: optional (B, H, W) bool prior applied as in ``threshold_maps``.
        cam_thresholds: candidate map thresholds.
        slice_thresholds: candidate slice thresholds.
    """
    if maps.shape != masks.shape:
        raise ValueError(f"maps {tuple(maps.shape)} and masks {tuple(masks.shape)} differ in shape")
    keys = np.asarray(list(groups) if groups is not None else ["volume"] * maps.shape[0])
    ids = [torch.from_numpy(keys == k) for k in sorted(set(keys.tolist()))]
    truth = masks.bool()
    true_counts = truth.flatten(1).sum(1).double()
    best: CamThresholds | None = None
    for cam_t in cam_thresholds:
        full = threshold_maps(maps, torch.ones(maps.shape[0]), cam_threshold=cam_t, slice_threshold=0.5, region=region)
        pred_counts = full.flatten(1).sum(1).double()
        inter_counts = (full & truth).flatten(1).sum(1).double()
        for slice_t in slice_thresholds:
            keep = (slice_scores >= slice_t).double()
            dices = []
            for sel in ids:
                inter = float((inter_counts[sel] * keep[sel]).sum())
                total = float((pred_counts[sel] * keep[sel]).sum() + true_counts[sel].sum())
                dices.append(1.0 if total == 0 else 2.0 * inter / total)
            score = float(np.mean(dices))
            if best is None or score > best.dice:
                best = CamThresholds(float(cam_t), float(slice_t), score)
    if best is None:
        raise ValueError("no threshold candidates given")
    logger.info("Grad-CAM++ thresholds chosen: %s", best)
    return best

