"""The detector's trunk as a frozen image encoder for the agents' "features" observation.

The agents must see the image, not the detector's scores (RLSP §3.2); the detector's own trunk is an encoder
already trained on this anatomy with slice labels only, so the policy starts from features that separate tissue
types instead of learning them from game rewards.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medwss.detector.network import PresenceDetector, coordinate_channels


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
        x = images
        if self.detector.coord_channels:
            x = torch.cat([x, coordinate_channels(x.shape[0], x.shape[-2], x.shape[-1], x)], dim=1)
        features = self.detector.features(x)
        return F.adaptive_avg_pool2d(features, self.grid_size)
