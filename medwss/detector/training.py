"""Train the presence detector on in-memory slices with slice-level presence labels only.

``DetectorTrainer`` runs one epoch per ``train_epoch()`` call and keeps everything needed to resume in
``state_dict()`` (weights, optimizer, scheduler, epoch, best weights, history and all RNG states), so the lead's
checkpoint/resume and metric logging wrap it without touching the algorithm. ``train_detector`` is the plain
loop, public API for scripts and notebooks (no run folder). Masks are never used: ``regions`` is an optional organ
or body prior that limits which cells may explain a slice label (for liver tumours the liver mask, so the net must
tell tumour from liver, not tissue from air).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.metrics import compute_roc_auc
from monai.networks.layers import AffineTransform
from monai.transforms import RandAdjustContrast, RandGaussianNoise, RandScaleIntensity
from monai.utils import set_determinism

from medwss.detector.network import PresenceDetector, build_detector, central_box, pool_cells, region_cells
from medwss.errors import MedwssError
from medwss.runtime import distributed
from medwss.runtime.device import amp_enabled, autocast
from medwss.runtime.progress import batches

logger = logging.getLogger(__name__)

LOSSES = ("instance", "bag")


@dataclass(frozen=True)
class DetectorTrainingSettings:
    """Detector training hyper-parameters (kept in checkpoints)."""

    epochs: int = 25
    """Passes over the training slices."""
    batch_size: int = 16
    """Slices per optimizer step."""
    learning_rate: float = 3e-3
    """Peak learning rate of the one-cycle schedule."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""
    loss: str = "instance"
    """``instance``: every cell inside the region takes its slice's label (best measured patch AUC);
    ``bag``: the slice label supervises the region-pooled slice logit (classic MIL)."""
    seed: int = 0
    """Seeds weights, batch order and augmentation."""
    augment: bool = True
    """Random affine (MONAI ``AffineTransform``) plus intensity scale, gamma and noise (MONAI ``Rand*``)."""
    rotate_range: float = 0.2
    """Largest rotation, radians."""
    scale_range: float = 0.1
    """Largest relative zoom."""
    translate_fraction: float = 0.0625
    """Largest shift as a fraction of the image side (8 px at 128)."""
    flip_prob: float = 0.0
    """Probability of a left-right flip (photos; 0 for scans, whose left and right are anatomy)."""
    amp: bool = False
    """Mixed precision (float16 autocast + gradient scaling) on a GPU; ignored on the CPU (see runtime.device)."""


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean ROC AUC over classes that have both labels; NaN when none has."""
    aucs = [
        float(compute_roc_auc(scores[:, k], labels[:, k]))
        for k in range(labels.shape[1])
        if 0 < labels[:, k].sum() < labels.shape[0]
    ]
    return float(np.mean(aucs)) if aucs else math.nan


class DetectorTrainer:
    """Resumable training of a ``PresenceDetector`` from slice-level labels.

    Args:
        model: the detector to train (in place).
        images: (N, C, H, W) float slices, preprocessed.
        presence: (N, K) {0, 1} slice-level presence per class.
        regions: optional (N, H, W) bool prior; cells outside it are not used by the loss.
        patient_ids: optional N patient ids, used to hold out ``val_patients`` (validation is by patient).
        val_patients: patients whose slices are validated on instead of trained on.
        settings: hyper-parameters.

    Raises:
        MedwssError: inconsistent shapes, labels not in {0, 1}, unknown validation patients, or no training slice.
    """

    def __init__(
        self,
        model: PresenceDetector,
        images: torch.Tensor,
        presence: torch.Tensor,
        regions: torch.Tensor | None = None,
        patient_ids: Sequence[str] | None = None,
        val_patients: Sequence[str] = (),
        settings: DetectorTrainingSettings | None = None,
    ) -> None:
        self.settings = settings or DetectorTrainingSettings()
        s = self.settings
        if s.loss not in LOSSES:
            raise MedwssError("detector#loss", f"unknown loss {s.loss!r}, expected one of {LOSSES}")
        n = images.shape[0]
        if images.ndim != 4 or presence.ndim != 2 or presence.shape[0] != n:
            raise MedwssError("detector#images", f"expected images (N,C,H,W) and presence (N,K), got "
                              f"{tuple(images.shape)} and {tuple(presence.shape)}")
        if regions is not None and tuple(regions.shape) != (n, *images.shape[-2:]):
            expected = (n, *images.shape[-2:])
            raise MedwssError("detector#regions", f"expected regions {expected}, got {tuple(regions.shape)}")
        if not torch.all((presence == 0) | (presence == 1)):
            raise MedwssError("detector#presence", "presence labels must be 0 or 1")
        ids = np.asarray(list(patient_ids) if patient_ids is not None else ["?"] * n)
        if len(ids) != n:
            raise MedwssError("detector#patient_ids", f"expected {n} patient ids, got {len(ids)}")
        missing = set(val_patients) - set(ids.tolist())
        if missing:
            raise MedwssError("detector#val_patients", f"unknown validation patients {sorted(missing)}")
        is_val = torch.from_numpy(np.isin(ids, list(val_patients)))
        if bool(is_val.all()):
            raise MedwssError("detector#val_patients", "no training slice left")
        images, presence = images.float(), presence.float()
        if regions is None:
            regions = torch.ones(n, *images.shape[-2:], dtype=torch.bool)
        regions = regions.bool()
        self.train_data = (images[~is_val], presence[~is_val], regions[~is_val])
        self.val_data = (images[is_val], presence[is_val], regions[is_val]) if bool(is_val.any()) else None

        set_determinism(s.seed)
        self.model = model
        self.model.train()
        self.positive_box = float(getattr(model, "positive_box", 0.0))  # see ``PresenceDetector``
        self.device = next(model.parameters()).device
        # Under torchrun every rank draws the same batch order and augmentation (same seed) and trains on its part
        # of each global batch; DDP averages the gradients, so a step sees the same data at any world size.
        self.world = distributed.world()
        if self.world.distributed and s.batch_size < self.world.size:
            raise MedwssError("detector#training#batch_size", f"must be >= the {self.world.size} processes")
        self.net = self.model
        if self.world.distributed:
            if self.device.type == "cuda":  # batch statistics over the global batch (SyncBatchNorm is GPU-only)
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.amp = amp_enabled(self.device, s.amp)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        steps = s.epochs * math.ceil(len(self.train_data[0]) / s.batch_size)
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.OneCycleLR(self.optimizer, s.learning_rate, total_steps=max(steps, 1))
        positives = self.train_data[1].mean(0)
        # Class imbalance: weight positives by the negative/positive ratio of the training slices.
        self.pos_weight = ((1 - positives) / positives.clamp(min=1e-3)).clamp(0.1, 10.0).to(self.device)
        self.rng = np.random.default_rng(s.seed)
        self.torch_rng = torch.Generator().manual_seed(s.seed)
        self.intensity = [RandScaleIntensity(factors=0.15, prob=0.5), RandAdjustContrast(prob=0.5, gamma=(0.8, 1.25)),
                          RandGaussianNoise(prob=0.3, std=0.02)]
        for i, t in enumerate(self.intensity):
            t.set_random_state(seed=s.seed + i)
        self.warp_image = AffineTransform(normalized=True, mode="bilinear", padding_mode="zeros", align_corners=False)
        self.warp_region = AffineTransform(normalized=True, mode="nearest", padding_mode="zeros", align_corners=False)
        self.epoch = 0
        self.history: list[dict[str, float]] = []
        self.best_auc = -math.inf
        self.best_epoch = 0
        self.best_model_state = copy.deepcopy(model.state_dict())

    # ---------------------------------------------------------------- augmentation (plumbing)
    def _region_code(self, region: torch.Tensor) -> torch.Tensor:
        """(B, H, W) bool region -> float code: 0 outside, 1 inside, 2 inside and in the model's positive box.

        One code, so that a single nearest-neighbour warp moves the region and the box together.
        """
        if self.positive_box == 0:
            return region.float()
        return region.float() * (1 + central_box(*region.shape[-2:], self.positive_box, region.device).float())

    def _augment(self, x: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same random affine for image and region code (one batched MONAI warp), then per-slice intensity changes."""
        s, b = self.settings, x.shape[0]
        angle = self.rng.uniform(-s.rotate_range, s.rotate_range, b)
        zoom = 1 + self.rng.uniform(-s.scale_range, s.scale_range, b)
        shift = self.rng.uniform(-2 * s.translate_fraction, 2 * s.translate_fraction, (b, 2))
        theta = np.zeros((b, 2, 3), np.float32)
        theta[:, 0, 0] = theta[:, 1, 1] = np.cos(angle) / zoom
        theta[:, 0, 1], theta[:, 1, 0] = -np.sin(angle) / zoom, np.sin(angle) / zoom
        theta[:, :, 2] = shift
        if s.flip_prob > 0:  # drawn only when asked for, so runs without flips keep their random stream
            theta[self.rng.random(b) < s.flip_prob, :, 1] *= -1.0  # MONAI's theta is (H, W)-ordered: column 1 = W
        theta_t = torch.from_numpy(theta).to(x.device)
        x = self.warp_image(x, theta_t)
        region = self.warp_region(region.unsqueeze(1).float(), theta_t)[:, 0].round()
        x = torch.stack([self._intensity(xi) for xi in x])
        return x, region

    def _intensity(self, x: torch.Tensor) -> torch.Tensor:
        for t in self.intensity:
            x = torch.as_tensor(t(x))
        return x

    # ---------------------------------------------------------------- algorithm
    def _loss_terms(self, x: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss as (sum over this batch, its normaliser): the mean over a global batch split across ranks is
        the sum of the ranks' sums over the sum of their normalisers."""
        with autocast(self.device, self.amp):
            cells = self.net(x).float()  # (B, K, h, w)
        region, box = region > 0.5, region > 1.5  # a bool region, or the code of ``_region_code``
        inside = region_cells(region, cells.shape[-2:])
        inside = (inside | ~inside.flatten(1).any(1)[:, None, None]).unsqueeze(1)  # empty region: all cells
        if self.positive_box > 0:
            box = region_cells(box, cells.shape[-2:]).unsqueeze(1)
        if self.settings.loss == "instance":
            # Every cell inherits its slice label: learns P(slice has ROI | local view, position), highest for
            # views that occur only in positive slices, i.e. the ROI itself.
            target = y[:, :, None, None].expand_as(cells)
            if self.positive_box > 0:  # ROI slices: positives only in the box, the rest of the region negatives
                target = target * box
            weight = inside * torch.where(target > 0, self.pos_weight[None, :, None, None], 1.0)
            per_cell = F.binary_cross_entropy_with_logits(cells, target, reduction="none")
            return (per_cell * weight).sum(), weight.sum()
        if self.positive_box > 0:  # the slice logit pools the box, as ``PresenceDetector.presence_logits`` does
            inside = inside & box
            inside = inside | ~inside.flatten(1).any(1)[:, None, None, None]
        slice_logits = pool_cells(cells, inside, self.model.pooling, self.model.lse_r)
        per_slice = F.binary_cross_entropy_with_logits(slice_logits, y, pos_weight=self.pos_weight, reduction="none")
        return per_slice.sum(), torch.tensor(float(per_slice.numel()), device=per_slice.device)

    def _loss(self, x: torch.Tensor, y: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
        total, norm = self._loss_terms(x, y, region)
        return total / norm.clamp(min=1)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training slices in a seeded random order; returns ``losses/detector``."""
        s = self.settings
        images, presence, regions = self.train_data
        self.model.train()
        order = torch.randperm(len(images), generator=self.torch_rng)
        total, count = 0.0, 0
        for part in batches(len(order), s.batch_size):
            idx = order[part]
            if len(idx) < max(2, self.world.size) and len(order) >= 2:
                continue  # batch norm cannot train on a single slice (nor a rank on none): the same on every rank
            x, y = images[idx].to(self.device), presence[idx].to(self.device)
            r = self._region_code(regions[idx].to(self.device))
            if s.augment:
                x, r = self._augment(x, r)
            if self.world.distributed:
                loss = self._distributed_loss(x, y, r)
            else:
                loss = self._loss(x, y, r)
                self._batch_loss = loss.detach()
            self.optimizer.zero_grad()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            if self.scheduler.last_epoch < self.scheduler.total_steps:
                self.scheduler.step()
            total, count = total + float(self._batch_loss) * len(idx), count + len(idx)
        if self.world.distributed:
            distributed.broadcast_buffers(self.model)  # every rank validates and saves rank 0's running statistics
        self.epoch += 1
        return {"losses/detector": total / max(count, 1)}

    def _distributed_loss(self, x: torch.Tensor, y: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """This rank's share of the global batch's mean loss, scaled by the world size (DDP averages gradients)."""
        part = distributed.split_for_rank(torch.arange(len(x), device=x.device), self.world.rank, self.world.size)
        local, norm = self._loss_terms(x[part], y[part], r[part])
        global_norm = distributed.all_reduce(norm).clamp(min=1)
        self._batch_loss = distributed.all_reduce(local.detach()) / global_norm
        return local / global_norm * self.world.size

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """Slice-level ROC AUC on the validation patients (NaN without them): the only label we may select on."""
        if self.val_data is None:
            return {"charts/val_slice_auc": math.nan}
        images, presence, regions = self.val_data
        self.model.eval()
        logits = torch.cat([
            self.model.presence_logits(images[part].to(self.device), regions[part].to(self.device)).cpu()
            for part in batches(len(images), 64)
        ])
        return {"charts/val_slice_auc": _auc(torch.sigmoid(logits), presence)}

    def step(self) -> dict[str, float]:
        """Train one epoch, validate, keep the best weights (by validation AUC, else the latest)."""
        metrics = {**self.train_epoch(), **self.validate(), "charts/epoch": float(self.epoch)}
        auc = metrics["charts/val_slice_auc"]
        if math.isnan(auc) or auc > self.best_auc:
            self.best_auc = -math.inf if math.isnan(auc) else auc
            self.best_epoch = self.epoch
            self.best_model_state = copy.deepcopy(self.model.state_dict())
        self.history.append(metrics)
        logger.info("detector epoch %d: %s", self.epoch, metrics)
        return metrics

    # ---------------------------------------------------------------- resume (plumbing)
    def data_fingerprint(self) -> str:
        """A hash of the slices, labels and regions this trainer learns and validates on (checkpoint provenance)."""
        from medwss.runtime.checkpoint import fingerprint

        return fingerprint(self.train_data, self.val_data)

    def state_dict(self) -> dict:
        """All that a resumed run needs to continue exactly where this one stopped."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "history": list(self.history),
            "best_auc": self.best_auc,
            "best_epoch": self.best_epoch,
            "best_model": self.best_model_state,
            "settings": asdict(self.settings),
            "rng": self.rng.bit_generator.state,
            "torch_rng": self.torch_rng.get_state(),
            "intensity_rng": [t.R.get_state() for t in self.intensity],
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a ``state_dict()`` taken from a trainer built with the same data and settings."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.epoch = state["epoch"]
        self.history = list(state["history"])
        self.best_auc, self.best_epoch = state["best_auc"], state["best_epoch"]
        self.best_model_state = state["best_model"]
        self.rng.bit_generator.state = state["rng"]
        self.torch_rng.set_state(state["torch_rng"])
        for t, rs in zip(self.intensity, state["intensity_rng"], strict=True):
            t.R.set_state(rs)


def train_detector(
    images: torch.Tensor,
    presence: torch.Tensor,
    *,
    settings: DetectorTrainingSettings | None = None,
    model: PresenceDetector | None = None,
    callback: Callable[[DetectorTrainer, dict[str, float]], None] | None = None,
    **data: Any,
) -> tuple[PresenceDetector, list[dict[str, float]]]:
    """Train a detector for ``settings.epochs`` epochs; returns it with its best weights, and the history.

    ``data`` are ``DetectorTrainer``'s other inputs (``regions``, ``patient_ids``, ``val_patients``);
    ``callback(trainer, metrics)`` runs after every epoch (checkpointing, metric logging).
    """
    settings = settings or DetectorTrainingSettings()
    if model is None:
        set_determinism(settings.seed)
        model = build_detector(in_channels=images.shape[1], num_classes=presence.shape[1])
    trainer = DetectorTrainer(model, images, presence, settings=settings, **data)
    while trainer.epoch < settings.epochs:
        metrics = trainer.step()
        if callback is not None:
            callback(trainer, metrics)
    model.load_state_dict(trainer.best_model_state)
    model.eval()
    return model, trainer.history
