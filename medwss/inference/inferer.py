"""``SelfPlayInferer``: a MONAI ``Inferer`` that segments a preprocessed volume by letting agent a play alone.

It is the ``inferer`` of every medwss bundle's ``inference.yaml``: MONAI's ``SupervisedEvaluator``, ``python -m
monai.bundle run`` and MONAI Label's ``BundleInferTask`` call ``inferer(inputs, network)`` with the policy as
``network``. It holds the detector, which scores every slice once; the agent then takes patches on all slices of
the volume at once until it calls termination (RLSP §3.5), and the patches it took form the mask. With
``opponent="self"`` agent a plays the two-seat game against the agent itself instead (``selfplay.rollout.OPPONENTS``).

``method`` switches to the baselines a user would otherwise pick, over the same detector: ``single-agent`` (take
patches while the detector score is >= 0.8, the paper's ablation) and ``cam`` (Grad-CAM++ of the detector).

One inferer for every bundle: a photo (B, C, H, W) is a one-slice volume, and a multi-class bundle (``multiclass``,
chosen from its metadata: ``bundles/coco``, ``bundles/voc``) adds one step, a game per present class merged into a
label map (``medwss.inference.multiclass``), instead of a parallel pipeline.

An optional ``refiner`` (the bundle's ``refine`` stage: a MONAI UNet trained on the agent's own masks of the
training slices) replaces the patch masks by pixel masks; ``refiner: null`` in ``inference.yaml`` leaves it off.

``medwss segment`` passes a ``progress`` callable (``runtime.progress.SliceProgress``) that each pass over the slices
(scoring, Grad-CAM++, features, the game) tells after every batch; MONAI's callers pass none, and nothing changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.inferers import Inferer

from medwss.runtime.progress import SliceProgress

METHODS = ("rlsp", "single-agent", "cam")
REGIONS = ("body", "prior", "none")


class SelfPlayInferer(Inferer):
    """Volumes (B, C, H, W, Z) -> masks (B, 1, H, W, Z) uint8; images (B, C, H, W) -> (B, 1, H, W) uint8.

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
        stopping: when the agent calls termination (``selfplay.rollout.STOPPING_RULES``).
        stop_quantile: the ``quantile`` stopping rule's quantile of the agent's own stopping time.
        stop_level: the ``threshold`` stopping rule's level, a fraction of the game's ROI threshold (1 = the game's
            own termination test).
        volume_stop: ``inference.volume_stop.VolumeStop`` settings (``count_width``, ``gate``, ``one_run``): the
            agent's counts agreed along the volume's slices after each slice's ``quantile`` or ``threshold`` stop
            (``rlsp`` alone, binary bundles; None or ``{}`` = each slice stops alone).
        smooth: ``inference.mask_smoothing.MaskSmoothing`` settings (``sigma``, ``sigma_slices``, ``threshold``):
            the patch methods' (``rlsp``, ``single-agent``) binary masks blurred along the volume and thresholded,
            so the grid's staircase borders and square ends round off (binary bundles; None or ``{}`` = off).
        opponent: who agent a plays against (``selfplay.rollout.OPPONENTS``): ``none`` alone (the default, what
            the bundles ship) or ``self``, the agent itself in seat b, the game it was trained on; the mask is a's
            patches either way (``inferer#opponent`` in ``inference.yaml``; measured in
            ``benchmarks/results/cohort_prostate_opponent.md``).
        multiclass: play one game per class the detector finds and return a label map (0 background, k = class k)
            instead of a binary mask (``medwss.inference.multiclass``).
        gate_threshold: multi-class only: the image-level probability a class needs to get a game.
        position_prior: multi-class only: ``multiclass.POSITION_PRIORS`` name the game scores are multiplied by, as
            the agent's training games were (``selfplay#position_prior``).
        refiner: a trained refinement UNet (``refinement.training.load_refiner``) or None (binary bundles only).
            When set, the mask is the refiner's: it learnt the organ's appearance from the agent's masks, so its
            borders are the image's rather than the grid's (benchmarks/results/refinement.md measures both).
        refine_threshold: the refiner's foreground probability threshold.
        refine_gate: slices whose detector presence probability is below it get an empty refined mask (0 = off);
            ``"agent"``: only the slices the method's own mask marks keep a refined mask (for ``rlsp`` with a
            volume stop: the gate's longest run along the scan), so the refiner draws borders and the agent picks
            the slices.
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
        stop_quantile: float = 0.5,
        stop_level: float = 1.0,
        volume_stop: dict[str, Any] | None = None,
        smooth: dict[str, Any] | None = None,
        opponent: str = "none",
        multiclass: bool = False,
        gate_threshold: float = 0.5,
        position_prior: str = "none",
        refiner: torch.nn.Module | None = None,
        refine_threshold: float = 0.5,
        refine_gate: float | str = 0.0,
    ) -> None:
        from medwss.inference.multiclass import named_prior
        from medwss.selfplay.rollout import OPPONENTS, check_stopping

        super().__init__()
        if opponent not in OPPONENTS:
            raise ValueError(f"opponent must be one of {OPPONENTS}, got {opponent!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if region not in REGIONS:
            raise ValueError(f"region must be one of {REGIONS}, got {region!r}")
        from medwss.inference.mask_smoothing import MaskSmoothing
        from medwss.inference.volume_stop import VolumeStop

        check_stopping(stopping, stop_quantile, stop_level)
        self.stop_quantile, self.stop_level = float(stop_quantile), float(stop_level)
        self.volume_stop = VolumeStop(**dict(volume_stop or {}))
        volume_rules = ("median", "quantile", "threshold")
        if self.volume_stop.active and (stopping not in volume_rules or opponent != "none" or multiclass):
            raise ValueError("volume_stop agrees agent a's own stops along a volume: it needs stopping 'quantile' "
                             "(or 'median', 'threshold'), opponent 'none' and a binary bundle")
        self.smooth = MaskSmoothing(**dict(smooth or {}))
        if self.smooth.active and multiclass:
            raise ValueError("smooth blurs a binary mask: a multi-class bundle's label maps cannot take it")
        self.detector = detector.eval()
        self.rules, self.method, self.region, self.context = rules, method, region, context
        self.threshold, self.cam_threshold, self.slice_threshold = threshold, cam_threshold, slice_threshold
        self.batch_size = batch_size
        if scorer is None:
            from medwss.detector.scoring import PatchScorer

            scorer = PatchScorer(self.detector, rules.grid_size)
        self.scorer, self.agent_planes, self.stopping = scorer, tuple(agent_planes), stopping
        self.opponent = opponent
        self.multiclass, self.gate_threshold = multiclass, gate_threshold
        self.prior = named_prior(position_prior, rules.grid_size)
        self.refiner = None if refiner is None else refiner.eval()
        if isinstance(refine_gate, str) and refine_gate != "agent":
            raise ValueError(f"refine_gate must be a presence probability or 'agent', got {refine_gate!r}")
        self.refine_threshold, self.refine_gate = refine_threshold, refine_gate

    def __call__(
        self,
        inputs: torch.Tensor,
        network: torch.nn.Module | None = None,
        *args: Any,
        progress: SliceProgress | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Segment each volume (or image) of the batch; ``network`` is the agent policy (unused by the baselines);
        ``progress`` is told after each batch of slices (module doc). A multi-class bundle takes ``present`` (B, K)
        bool in ``kwargs`` to replace the detector's gate of a batch of images (given image labels)."""
        if inputs.dim() == 4:  # photos: each a one-slice volume
            present = kwargs.get("present")
            outs = [
                self.segment_volume(torch.as_tensor(image)[..., None], network, progress,
                                    None if present is None else present[b : b + 1])[..., 0]
                for b, image in enumerate(inputs)
            ]  # fmt: skip
            return torch.stack(outs)
        if inputs.dim() != 5:
            raise ValueError(f"expected a batch of volumes (B, C, H, W, Z) or images (B, C, H, W), got "
                             f"{tuple(inputs.shape)}")  # fmt: skip
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
    def play(self, slices, scores, region, network, base, progress: SliceProgress | None = None,
             gate: torch.Tensor | None = None, groups: Sequence[str] | None = None) -> torch.Tensor:
        """(N, G, G) bool patches taken on each game's ``scores``: the trained agent (``network``) alone, or the
        single-agent baseline; ``base`` maps the agent to its features observation (None for pixels). ``gate``:
        the slices' presence probabilities, which an active ``volume_stop`` reads (the rows are one volume's
        slices in order, or, with ``groups`` naming each row's volume, several volumes' slices in order)."""
        from medwss.agents.inputs import observation_base
        from medwss.agents.threshold import threshold_segment
        from medwss.inference.volume_stop import play_volume_stop
        from medwss.selfplay.rollout import play_inference_games

        if self.method == "single-agent":
            return threshold_segment(scores, region, self.threshold, self.rules)
        if network is None:
            raise ValueError("method 'rlsp' needs the agent policy as network")
        network.eval()
        if self.volume_stop.active:
            observed = base(network)
            if observed is None:
                observed = observation_base(slices, network.observation, network.grid_size,
                                            pixels_per_patch=network.pixels_per_patch)  # fmt: skip
            return play_volume_stop(
                network, observed, scores, region, self.rules, stop_quantile=self.stop_quantile,
                volume_stop=self.volume_stop, gate=gate, groups=groups, batch_size=self.batch_size, progress=progress,
                stopping=self.stopping, stop_level=self.stop_level,
            )  # fmt: skip
        return play_inference_games(
            network, slices, scores, region, self.rules, base=base(network), batch_size=self.batch_size,
            stopping=self.stopping, stop_quantile=self.stop_quantile, stop_level=self.stop_level, progress=progress,
            opponent=network if self.opponent == "self" else None,
        ).patches  # fmt: skip

    def slices_and_region(self, volume: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A preprocessed volume (C, H, W, Z) -> detector input slices (Z, C', H, W) and region pixels (Z, H, W)."""
        from medwss.data.regions import body_mask
        from medwss.data.slices import image_slices

        volume = volume.as_tensor() if hasattr(volume, "as_tensor") else volume
        volume = volume.float().cpu()
        image = volume[:-1] if self.region == "prior" else volume
        slices = image_slices(image, context=self.context)
        if self.region == "prior":
            return slices, (volume[-1] > 0.5).permute(2, 0, 1)
        if self.region == "body":
            return slices, torch.as_tensor(body_mask(image[0].permute(2, 0, 1).numpy()))
        return slices, None

    def segment_volume(
        self,
        volume: torch.Tensor,
        network: torch.nn.Module | None,
        progress: SliceProgress | None = None,
        present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One volume (C, H, W, Z) -> (1, H, W, Z) uint8 mask (a label map for a multi-class bundle, which may be
        given the classes ``present`` (Z, K) on each slice); ``progress`` is told after each batch of slices."""
        from medwss.data.slices import stack_slices

        slices, region = self.slices_and_region(volume)
        if self.refiner is not None and not self.multiclass:
            pixels = self.refined_masks(slices, region, progress, network)
        else:
            pixels = self.method_masks(slices, region, network, progress, present)
        return stack_slices(pixels.cpu()).to(torch.uint8)

    @torch.no_grad()
    def refined_masks(
        self,
        slices: torch.Tensor,
        region: torch.Tensor | None,
        progress: SliceProgress | None = None,
        network: torch.nn.Module | None = None,
    ) -> torch.Tensor:
        """(Z, H, W) bool masks of the refiner, inside the region, empty on slices below ``refine_gate`` (or, with
        ``"agent"``, on slices the method's own mask leaves empty: ``network`` is the agent)."""
        from medwss.refinement.training import refine

        device = next(self.refiner.parameters()).device
        pixels = refine(self.refiner, slices.to(device), threshold=self.refine_threshold).cpu()
        if self.refine_gate == "agent":
            own = self.method_masks(slices, region, network, progress).cpu()
            pixels &= own.flatten(1).any(1)[:, None, None]
        elif self.refine_gate > 0:
            gate = self.scorer.slice_probabilities(slices, region, progress).cpu()
            pixels &= (gate >= self.refine_gate)[:, None, None]
        return pixels if region is None else pixels & region.bool()

    def method_masks(
        self,
        slices: torch.Tensor,
        region: torch.Tensor | None,
        network: torch.nn.Module | None,
        progress: SliceProgress | None = None,
        present: torch.Tensor | None = None,
        groups: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """(Z, C, H, W) detector input slices -> (Z, H, W) bool masks of ``method`` (never refined); int64 label
        maps for a multi-class bundle (``class_labels``, given ``present`` classes if any). ``groups`` names each
        slice's volume when the slices are several volumes' (in order): the volume stop agrees counts per volume.

        Why public: the ``refine`` stage trains the refiner on exactly these masks of the training slices.
        """
        from medwss.detector.cam import cam_masks
        from medwss.metrics.patches import patches_to_pixels

        height, width = slices.shape[-2:]
        if self.multiclass:
            pixels = self.class_labels(slices, network, present)
        elif self.method == "cam":
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
            agent_base = lambda agent: self.agent_base(slices, scored, agent, progress)  # noqa: E731
            gate = scored.gate
            if gate is None and self.volume_stop.needs_gate and self.method == "rlsp":
                gate = self.scorer.slice_probabilities(slices, region, progress)
            patches = self.play(slices, scored.scores, scored.region, network, agent_base, progress, gate,
                                groups).cpu()
            pixels = torch.as_tensor(patches_to_pixels(patches, (height, width))).bool()
            pixels = self.smooth(pixels, self.rules.grid_size, groups)
            if region is not None:
                pixels &= region
        return pixels if self.multiclass else pixels.bool()

    @torch.no_grad()
    def class_labels(
        self, images: torch.Tensor, network: torch.nn.Module | None, present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The multi-class step: (N, C, H, W) -> (N, H, W) int64 label maps, one game per class the detector finds
        on an image (or per class of ``present`` (N, K)), merged (``multiclass.merge_games``)."""
        from medwss.detector.features import DetectorEncoder
        from medwss.inference.multiclass import cam_class_maps, class_games, class_scores, gate, merge_games
        from medwss.metrics.patches import patches_to_pixels

        grid, size = self.rules.grid_size, tuple(images.shape[-2:])
        image_probs, patch_probs = class_scores(self.detector, images, grid)
        present = gate(image_probs, self.gate_threshold) if present is None else torch.as_tensor(present).bool()
        if self.method == "cam":
            games = class_games(present, patch_probs)
            maps = cam_class_maps(self.detector, images, games)
            return merge_games(games, maps >= self.cam_threshold, maps, len(images))
        trunk = DetectorEncoder(self.detector, grid)(images) if self.method == "rlsp" else None
        if self.prior is not None:
            patch_probs = patch_probs * self.prior
        games = class_games(present, patch_probs, trunk)
        if len(games.scores) == 0:
            return torch.zeros(len(images), *size, dtype=torch.int64)
        patches = self.play(None, games.scores, None, network, lambda agent: class_base(agent, games))
        masks = torch.as_tensor(patches_to_pixels(patches, size)).bool()
        claims = torch.as_tensor(patches_to_pixels(games.scores, size)).float()
        return merge_games(games, masks, claims, len(images))


def class_base(network: torch.nn.Module, games) -> torch.Tensor:
    """A class game's observation base (trunk features + the class cue plane).

    Raises:
        ValueError: a pixels policy, which has no plane for the cue.
    """
    if getattr(network, "observation", None) != "features":
        raise ValueError("class games need a 'features' policy: its input carries the class cue")
    return games.features
