"""Reference points for the learned agent on the same slices: the 0.8 threshold agent and the oracle patch mask.

All three are scored by the same 2D mask Dice, per slice, where a slice with an empty reference counts 1 if the
prediction is empty too (a correct "no ROI here") and 0 otherwise.
"""

from __future__ import annotations

import torch
from monai.metrics import compute_dice

from medwss.agents.threshold import threshold_segment
from medwss.game.rules import GameRules
from medwss.metrics.patches import oracle_patch_mask, patches_to_pixels


def slice_dice(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Dice (M,) of M binary 2D masks (M, H, W); 1 where both are empty (MONAI `compute_dice`, ignore_empty=False)."""
    if pred.shape != gt.shape or pred.dim() != 3:
        raise ValueError(f"pred and gt must both be (M, H, W), got {tuple(pred.shape)} and {tuple(gt.shape)}")
    if pred.shape[0] == 0:
        return torch.zeros(0)
    dice = compute_dice(pred[:, None].float(), gt[:, None].float(), include_background=True, ignore_empty=False)
    return dice[:, 0]


def patch_mask_dice(patches: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Dice (M,) of patch decisions (M, G, G) painted to pixels against reference masks (M, H, W)."""
    return slice_dice(patches_to_pixels(patches.bool(), (gt.shape[-2], gt.shape[-1])), gt.bool())


def threshold_baseline_dice(
    scores: torch.Tensor,
    region: torch.Tensor | None,
    gt: torch.Tensor,
    rules: GameRules,
    threshold: float = 0.8,
) -> torch.Tensor:
    """Dice (M,) of the single agent that takes patches while the detector scores >= `threshold` (RLSP §5)."""
    return patch_mask_dice(threshold_segment(scores, region, threshold, rules), gt)


def oracle_dice(gt: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Dice (M,) of the oracle patch mask (patches at least half ROI): the ceiling of any G x G patch method."""
    return slice_dice(oracle_patch_mask(gt.bool(), grid_size), gt.bool())
