"""Patch presence probabilities from a trained ``PresenceDetector``: the scores the RLSP game compares.

One forward pass per slice gives every cell's logit; a patch's probability is the detector's own MIL pooling
over the cells (pixels) it covers, so a patch is scored as the detector scores a slice, only over a smaller bag
(RLSP Sec. 3.1: the detector "scores any patch"). Patches are never cropped, resized or blanked, which is what
made whole-slice classifiers fail as patch scorers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medwss.detector.network import PresenceDetector, pool_cells


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
    """
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, slices.shape[0], batch_size):
        x = slices[start : start + batch_size].to(device=device, dtype=torch.float32)
        reg = None if region is None else region[start : start + batch_size].to(device=device, dtype=torch.bool)
        cells = model(x)[:, class_index : class_index + 1]
        logits = patch_logits_from_cells(cells, x.shape[-2:], grid, reg, model.pooling, model.lse_r)[:, 0]
        probs = torch.sigmoid(logits)
        if reg is not None:
            h, w = x.shape[-2:]
            inside = reg.reshape(-1, grid, h // grid, grid, w // grid).any(dim=(2, 4))
            probs = probs * inside
        out.append(probs.float())
    return torch.cat(out)
