"""The detector's trunk as a frozen image encoder for the agents' "features" observation.

The agents must see the image, not the detector's scores (RLSP §3.2); the detector's own trunk is an encoder
already trained on this anatomy with slice labels only, so the policy starts from features that separate tissue
types instead of learning them from game rewards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medwss.detector.network import PresenceDetector, coordinate_channels
from medwss.runtime.progress import SliceProgress, batches


class DetectorEncoder(torch.nn.Module):
    """(N, C, H, W) slices -> (N, F, G, G) trunk features of a frozen detector, average-pooled to the game grid."""

    def __init__(self, detector: PresenceDetector, grid_size: int) -> None:
        super().__init__()
        # Frozen by `forward`'s no_grad, not by switching requires_grad off: the detector is shared with Grad-CAM++
        # (which needs its gradients) and with the caller, whose model must not change by being wrapped.
        self.detector = detector.eval()
        self.grid_size = grid_size

    @property
    def out_channels(self) -> int:
        return int(self.detector.head.in_channels)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.detector.eval()
        x = images.to(next(self.detector.parameters()).device)  # features come back on the CPU, beside the planes
        if self.detector.coord_channels:
            x = torch.cat([x, coordinate_channels(x.shape[0], x.shape[-2], x.shape[-1], x)], dim=1)
        features = self.detector.features(x)
        return F.adaptive_avg_pool2d(features, self.grid_size).float().cpu()


AGENT_PLANES = ("prior", "gate", "scores")
"""Extra G x G planes an agent may see beside the image features: the position prior, the slice gate (presence
probability, the same on every patch) and the game scores themselves."""


def agent_features(
    encoder: DetectorEncoder,
    slices: torch.Tensor,
    scored,
    planes: tuple[str, ...] | list[str] = (),
    prior: torch.Tensor | None = None,
    batch_size: int = 256,
    progress: SliceProgress | None = None,
) -> torch.Tensor:
    """The features observation base (N, F + len(planes), G, G): trunk features, then the requested planes.

    Why planes: the slice gate and the position prior come free with the weak labels, and the agent's small trunk
    cannot rebuild a global slice probability or a data set's framing from local features alone.

    Args:
        encoder: the detector trunk.
        slices: (N, C, H, W).
        scored: ``ScoredSlices`` of the same slices (gate and scores).
        planes: names from ``AGENT_PLANES``, in this order in the output.
        prior: (G, G) position prior (needed for "prior").
        progress: told after each batch of slices through the trunk (``"encoding slices"``).
    """
    unknown = [p for p in planes if p not in AGENT_PLANES]
    if unknown:
        raise ValueError(f"unknown agent planes {unknown}, expected some of {AGENT_PLANES}")
    chunks = [encoder(slices[part]) for part in batches(len(slices), batch_size, progress, "encoding slices")]
    feats = torch.cat(chunks) if chunks else None
    if feats is None:
        return torch.zeros(0, encoder.out_channels + len(planes), encoder.grid_size, encoder.grid_size)
    n, g = feats.shape[0], feats.shape[-1]
    extra = []
    for name in planes:
        if name == "prior":
            if prior is None:
                raise ValueError('agent plane "prior" needs a position prior (scoring#prior: true)')
            extra.append(prior.float().reshape(1, 1, g, g).expand(n, 1, g, g))
        elif name == "gate":
            if scored.gate is None:
                raise ValueError('agent plane "gate" needs a gated scorer (scoring#gate: true)')
            extra.append(scored.gate.float().reshape(n, 1, 1, 1).expand(n, 1, g, g))
        else:
            extra.append(scored.scores.float().reshape(n, 1, g, g))
    return torch.cat([feats, *extra], dim=1) if extra else feats
