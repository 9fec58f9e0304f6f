"""``SelfPlayInferer``: a MONAI ``Inferer`` that segments a preprocessed volume by letting agent a play alone.

It is the ``inferer`` of every medwss bundle's ``inference.yaml``: MONAI's ``SupervisedEvaluator``, ``python -m
monai.bundle run`` and MONAI Label's ``BundleInferTask`` call ``inferer(inputs, network)`` with the policy as
``network``. It holds the detector, which scores every slice once; the agent then takes patches on all slices of
the volume at once until it calls termination (RLSP §3.5), and the patches it took form the mask.

``method`` switches to the baselines a user would otherwise pick, over the same detector: ``single-agent`` (take
patches while the detector score is >= 0.8, the paper's ablation) and ``cam`` (Grad-CAM++ of the detector).

An optional ``refiner`` (the bundle's ``refine`` stage: a MONAI UNet trained on the agent's own masks of the
training slices) replaces the patch masks by pixel masks; ``refiner: null`` in ``inference.yaml`` leaves it off.

``medwss segment`` passes a ``progress`` callable (``runtime.progress.SliceProgress``) that each pass over the slices
(scoring, Grad-CAM++, features, the game) tells after every batch; MONAI's callers pass none, and nothing changes.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.inferers import Inferer

from medwss.runtime.progress import SliceProgress

METHODS = ("rlsp", "single-agent", "cam")
REGIONS = ("body", "prior", "none")


class SelfPlayInferer(Inferer):
    """Volume (B, C, H, W, Z) -> mask (B, 1, H, W, Z) uint8.

    Args:
        detector: the trained presence detector (eval mode is set here).
        rules: ``GameRules`` of the game the agent was trained on (grid size, threshold).
        method: ``rlsp`` (the trained agent), ``single-agent`` (detector score >= ``threshold``) or ``cam``.
        region: where the ROI may be: ``body`` (intensity rule), ``prior`` (an organ mask in the last input
            channel) or ``none``. Patches outside are never taken and masks are clipped to it.
        context: neighbouring slices per side the detector takes as channels (as in training).
        threshold: the single-agent baseline's stopping score.
        cam_threshold, slice_threshold: Grad-CAM++ map and slice-probability thresholds.
        batch_size: games played at once.
        scorer: the ``PatchScorer`` the agent was trained with (``scoring`` of the bundle); None = the detector's
            plain MIL patch scores (bundles trained before scorers existed).
        agent_planes: extra planes the agent sees beside the trunk features (``detector.features.AGENT_PLANES``),
            as in training (``selfplay#agent_planes``).
        stopping: when the agent alone calls termination (``selfplay.rollout.STOPPING_RULES``).
        refiner: a trained refinement UNet (``refinement.training.load_refiner``) or None. When set, the mask is
            the refiner's: it learnt the organ's appearance from the agent's masks, so its borders are the
            image's rather than the grid's (benchmarks/results/refinement.md measures both).
        refine_threshold: the refiner's foreground probability threshold.
        refine_gate: slices whose detector presence probability is below it get an empty refined mask (0 = off).
    """

    def __init__(
        self,
        detector: torch.nn.Module,
        rules: Any,
        method: str = "rlsp",
        region: str = "body",
        context: int = 0,
        threshold: float = 0.8,
        cam_threshold: float = 0.5,
        slice_threshold: float = 0.5,
        batch_size: int = 256,
        scorer: Any = None,
        agent_planes: tuple[str, ...] | list[str] = (),
        stopping: str = "step",
        refiner: torch.nn.Module | None = None,
        refine_threshold: float = 0.5,
        refine_gate: float = 0.0,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
        self.detector = detector.eval()
        self.rules, self.method, self.region, self.context = rules, method, region, context
        self.threshold, self.cam_threshold, self.slice_threshold = threshold, cam_threshold, slice_threshold
        self.batch_size = batch_size
        if scorer is None:
            from medwss.detector.scoring import PatchScorer

            scorer = PatchScorer(self.detector, rules.grid_size)
        self.scorer, self.agent_planes, self.stopping = scorer, tuple(agent_planes), stopping
        self.refiner = None if refiner is None else refiner.eval()
        self.refine_threshold, self.refine_gate = refine_threshold, refine_gate

    def __call__(
        self,
        inputs: torch.Tensor,
        network: torch.nn.Module | None = None,
        *args: Any,
        progress: SliceProgress | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Segment each volume of the batch; ``network`` is the agent policy (unused by the baselines); ``progress``
        is told after each batch of slices (module doc)."""
        if inputs.dim() != 5:
            raise ValueError(f"expected a batch of volumes (B, C, H, W, Z), got {tuple(inputs.shape)}")
        outs = [self.segment_volume(torch.as_tensor(volume), network, progress) for volume in inputs]
        return torch.stack(outs)

    def agent_base(
        self, slices: torch.Tensor, scored, network: torch.nn.Module, progress: SliceProgress | None = None
    ) -> torch.Tensor | None:
        """The features observation the agent was trained on (trunk features + ``agent_planes``), None for pixels."""
        from medwss.detector.features import DetectorEncoder, agent_features

        if getattr(network, "observation", "features") != "features":
            return None
        encoder = DetectorEncoder(self.detector, self.rules.grid_size)
        return agent_features(encoder, slices, scored, self.agent_planes, self.scorer.prior, progress=progress)

    @torch.no_grad()
    def _patches(self, slices, scored, network, progress: SliceProgress | None = None):
        from medwss.agents.threshold import threshold_segment
        from medwss.selfplay.rollout import play_alone

        if self.method == "single-agent":
            return threshold_segment(scored.scores, scored.region, self.threshold, self.rules)
        if network is None:
            raise ValueError("method 'rlsp' needs the agent policy as network")
        network.eval()
        base = self.agent_base(slices, scored, network, progress)
        return play_alone(
            network, slices, scored.scores, scored.region, self.rules, base=base, batch_size=self.batch_size,
            stopping=self.stopping, progress=progress,
        )

    def slices_and_region(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A preprocessed volume (C, H, W, Z) -> detector input slices (Z, C', H, W) and region pixels (Z, H, W)."""
        from medwss.data.regions import body_mask
        from medwss.data.slices import image_slices

        volume = volume.as_tensor() if hasattr(volume, "as_tensor") else volume
        volume = volume.float().cpu()
        image = volume[:1] if self.region != "prior" else volume[:-1]
        slices = image_slices(image, context=self.context)
        if self.region == "prior":
            return slices, (volume[-1] > 0.5).permute(2, 0, 1)
        if self.region == "body":
            return slices, torch.as_tensor(body_mask(image[0].permute(2, 0, 1).numpy()))
        return slices, None

    def segment_volume(
        self, volume: torch.Tensor, network: torch.nn.Module | None, progress: SliceProgress | None = None
    ) -> torch.Tensor:
        """One volume (C, H, W, Z) -> (1, H, W, Z) uint8 mask; ``progress`` is told after each batch of slices."""
        from medwss.data.slices import stack_slices

        slices, region = self.slices_and_region(volume)
        if self.refiner is not None:
            pixels = self.refined_masks(slices, region, progress)
        else:
            pixels = self.method_masks(slices, region, network, progress)
        return stack_slices(pixels.cpu()).to(torch.uint8)

    @torch.no_grad()
    def refined_masks(
        self, slices: torch.Tensor, region: torch.Tensor | None, progress: SliceProgress | None = None
    ) -> torch.Tensor:
        """(Z, H, W) bool masks of the refiner, inside the region, empty on slices below ``refine_gate``."""
        from medwss.refinement.training import refine

        device = next(self.refiner.parameters()).device
        pixels = refine(self.refiner, slices.to(device), threshold=self.refine_threshold).cpu()
        if self.refine_gate > 0:
            gate = self.scorer.slice_probabilities(slices, region, progress).cpu()
            pixels &= (gate >= self.refine_gate)[:, None, None]
        return pixels if region is None else pixels & region.bool()

    def method_masks(
        self,
        slices: torch.Tensor,
        region: torch.Tensor | None,
        network: torch.nn.Module | None,
        progress: SliceProgress | None = None,
    ) -> torch.Tensor:
        """(Z, C, H, W) detector input slices -> (Z, H, W) bool masks of ``method`` (never refined).

        Why public: the ``refine`` stage trains the refiner on exactly these masks of the training slices.
        """
        from medwss.detector.cam import cam_masks
        from medwss.metrics.patches import patches_to_pixels

        height, width = slices.shape[-2:]
        if self.method == "cam":
            pixels = cam_masks(
                self.detector,
                slices,
                cam_threshold=self.cam_threshold,
                slice_threshold=self.slice_threshold,
                region=region,
                progress=progress,
            )
        else:
            scored = self.scorer.score(slices, region, progress)
            patches = self._patches(slices, scored, network, progress).cpu()
            pixels = torch.as_tensor(patches_to_pixels(patches, (height, width))).bool()
            if region is not None:
                pixels &= region
        return pixels.bool()
