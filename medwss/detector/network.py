"""Object presence detector: a fully convolutional multiple-instance (MIL) network with one logit per cell.

RLSP (Saeed et al., TPAMI 2025, Sec. 3.1) needs a detector that scores *patches* although it is trained on
*slice-level* presence labels only. A whole-slice classifier ranks slices well but scores cropped or blanked
patches poorly (measured: patch AUC 0.10-0.69 on prostate), so this network is a multiple-instance learner:
it emits one presence logit per 8 x 8 pixel cell, the slice logit is a pooling of the cells (the bag), and a
patch is scored by the same pooling over its own cells (a smaller bag). Training and patch scoring therefore
ask the same question of the same numbers.

Built from MONAI blocks (``Convolution``, ``ResidualUnit``: the blocks of ``monai.networks.nets.Classifier``
and ``Regressor``) rather than a whole ``monai.networks.nets`` class, because every MONAI classifier ends in
global pooling or a dense layer, which removes the spatial layout the cells need, and the MONAI ResNet/DenseNet
trunks give each cell a receptive field larger than the slice, so every cell sees (and copies) the whole-slice
decision. Here the receptive field is 39 px (about 5 cells at stride 8), plus 32 px per ``extra_blocks``.
"""

from __future__ import annotations

import math

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn

CELL_SIZE = 8
"""Pixels per cell side: the network's output stride."""

POOLINGS = ("lse", "max", "mean")


def coordinate_channels(batch: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Two channels with the row and column position in [-1, 1] (CoordConv, Liu et al. 2018).

    Why: scans are framed around the organ, so position is evidence a translation-equivariant net cannot use.
    """
    rows = torch.linspace(-1.0, 1.0, height, dtype=like.dtype, device=like.device)
    cols = torch.linspace(-1.0, 1.0, width, dtype=like.dtype, device=like.device)
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([grid_r, grid_c]).unsqueeze(0).expand(batch, 2, height, width)


def pool_cells(logits: torch.Tensor, mask: torch.Tensor | None, pooling: str, lse_r: float = 5.0) -> torch.Tensor:
    """MIL pooling of cell logits over the cells in ``mask``: (..., h, w) -> (...).

    ``lse`` is the log-mean-exp with sharpness ``lse_r`` (Pinheiro & Collobert 2015): between ``mean`` (r -> 0)
    and ``max`` (r -> inf). A bag whose mask is empty pools over all its cells, so it still gets a score.

    Args:
        logits: cell logits, any leading dims.
        mask: bool, broadcastable to ``logits``; None pools over all cells.
        pooling: one of ``POOLINGS``.
        lse_r: sharpness of ``lse``.
    """
    flat = logits.flatten(-2)
    if mask is None:
        keep = torch.ones_like(flat, dtype=torch.bool)
    else:
        keep = mask.expand_as(logits).flatten(-2)
        keep = keep | ~keep.any(-1, keepdim=True)
    count = keep.sum(-1).clamp(min=1).to(flat.dtype)
    if pooling == "mean":
        return (flat * keep).sum(-1) / count
    low = torch.finfo(flat.dtype).min / 4
    masked = flat.masked_fill(~keep, low)
    if pooling == "max":
        return masked.max(-1).values
    if pooling == "lse":
        return (torch.logsumexp(lse_r * masked, -1) - torch.log(count)) / lse_r
    raise ValueError(f"unknown pooling {pooling!r}, expected one of {POOLINGS}")


class PresenceDetector(nn.Module):
    """Fully convolutional presence detector: (B, C, H, W) -> cell logits (B, K, H/8, W/8).

    Args:
        in_channels: image channels C (1 for a slice; 3 with neighbouring slices as context).
        num_classes: K presence classes, each an independent sigmoid (multi-label).
        width: channels of the first residual stage; the last stage has ``2 * width``.
        extra_blocks: stride-1 residual units after the last stage (each widens the receptive field by 32 px).
        coord_channels: append row/column position channels (CoordConv).
        pooling: MIL pooling used for the slice logit and for patch scores, one of ``POOLINGS``.
        lse_r: sharpness of ``lse`` pooling.
        positive_box: the ROI is taken to lie in the central box of this fraction of each side (0: anywhere). The
            slice logit pools only the cells in the box, and training (``DetectorTrainer``) takes the cells outside it
            as negatives on ROI slices, so the anatomy an ROI slice shows everywhere cannot explain its label. A
            stated assumption that scans are framed around the organ, as the central-box baseline's.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 1,
        width: int = 16,
        extra_blocks: int = 0,
        coord_channels: bool = True,
        pooling: str = "lse",
        lse_r: float = 5.0,
        positive_box: float = 0.0,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}, expected one of {POOLINGS}")
        if not 0.0 <= positive_box <= 1.0:
            raise ValueError(f"positive_box must lie in [0, 1], got {positive_box}")
        self.positive_box = float(positive_box)
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.coord_channels = coord_channels
        self.pooling = pooling
        self.lse_r = lse_r
        stem_in = in_channels + (2 if coord_channels else 0)
        layers: list[nn.Module] = [
            Convolution(2, stem_in, width // 2 or 1, strides=2, kernel_size=3, norm="batch", act="relu"),
            ResidualUnit(2, width // 2 or 1, width, strides=2, subunits=2, norm="batch"),
            ResidualUnit(2, width, 2 * width, strides=2, subunits=2, norm="batch"),
        ]
        for _ in range(extra_blocks):
            layers.append(ResidualUnit(2, 2 * width, 2 * width, strides=1, subunits=2, norm="batch"))
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(2 * width, num_classes, kernel_size=1)
        # Start every cell at a low presence prior (Lin et al. 2017, focal loss init) so that pooling many cells
        # does not begin saturated at "present".
        nn.init.constant_(self.head.bias, -math.log(99.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Cell logits (B, K, ceil(H/8), ceil(W/8))."""
        if self.coord_channels:
            x = torch.cat([x, coordinate_channels(x.shape[0], x.shape[-2], x.shape[-1], x)], dim=1)
        return self.head(self.features(x))

    def presence_logits(self, x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """Slice-level presence logits (B, K): cells pooled over ``region`` (B, H, W) bool, e.g. an organ prior.

        A cell counts as inside the region when at least half of its pixels are.
        """
        cells = self(x)
        mask = None if region is None else region_cells(region, cells.shape[-2:]).unsqueeze(1)
        if self.positive_box > 0:
            box = region_cells(central_box(*x.shape[-2:], self.positive_box, x.device)[None], cells.shape[-2:])
            mask = box[:, None] if mask is None else mask & box[:, None]
        return pool_cells(cells, mask, self.pooling, self.lse_r)


def central_box(height: int, width: int, fraction: float, device=None) -> torch.Tensor:
    """(H, W) bool: the central box of ``fraction`` of each side (empty for 0)."""
    lo, hi = 0.5 - fraction / 2, 0.5 + fraction / 2
    box = torch.zeros(height, width, dtype=torch.bool, device=device)
    if fraction > 0:
        box[round(height * lo) : round(height * hi), round(width * lo) : round(width * hi)] = True
    return box


def region_cells(region: torch.Tensor, cell_shape: tuple[int, int] | torch.Size) -> torch.Tensor:
    """(B, H, W) bool pixel region -> (B, h, w) bool: cells at least half inside the region."""
    frac = nn.functional.adaptive_avg_pool2d(region.unsqueeze(1).float(), tuple(cell_shape))
    return frac[:, 0] >= 0.5


class DetectorEnsemble(nn.Module):
    """Several presence detectors of one architecture, trained from different seeds, read as one detector.

    Why: which evidence a detector trained on slice labels localises depends on its seed. Measured on the
    26-patient prostate cohort, one setting trained from seeds 0 and 1 gave Grad-CAM++ patch AUCs of 0.67 and 0.77
    inside the body; averaging the members keeps the evidence they agree on. Cell logits, slice logits and Grad-CAM++
    maps (``detector.cam.cam_maps``) are member means; the agents' image features come from the first member.
    """

    def __init__(self, members: int = 3, **detector_kwargs) -> None:
        super().__init__()
        if members < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {members}")
        self.members = nn.ModuleList(PresenceDetector(**detector_kwargs) for _ in range(members))

    # The first member stands in for the ensemble where one network is needed (trunk features, settings).
    @property
    def features(self) -> nn.Module:
        return self.members[0].features

    @property
    def head(self) -> nn.Module:
        return self.members[0].head

    def __getattr__(self, name: str):
        if name in ("in_channels", "num_classes", "coord_channels", "pooling", "lse_r", "positive_box"):
            return getattr(self.members[0], name)
        return super().__getattr__(name)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean cell logits of the members (B, K, h, w)."""
        return torch.stack([member(x) for member in self.members]).mean(0)

    def presence_logits(self, x: torch.Tensor, region: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the members' slice-level presence logits (B, K)."""
        return torch.stack([member.presence_logits(x, region) for member in self.members]).mean(0)


def build_detector(
    in_channels: int = 1,
    num_classes: int = 1,
    width: int = 16,
    extra_blocks: int = 0,
    coord_channels: bool = True,
    pooling: str = "lse",
    lse_r: float = 5.0,
    members: int = 1,
    positive_box: float = 0.0,
) -> PresenceDetector | DetectorEnsemble:
    """Factory from plain kwargs, for ``_target_: medwss.detector.network.build_detector`` in bundle configs.

    ``members`` > 1 builds a ``DetectorEnsemble`` of that many detectors (each trained from its own seed).
    """
    kwargs = {"in_channels": in_channels, "num_classes": num_classes, "width": width, "extra_blocks": extra_blocks,
              "coord_channels": coord_channels, "pooling": pooling, "lse_r": lse_r,
              "positive_box": positive_box}  # fmt: skip
    if members > 1:
        return DetectorEnsemble(members, **kwargs)
    return PresenceDetector(**kwargs)


def detector_members(model: nn.Module) -> list[PresenceDetector]:
    """The detectors to train one by one: an ensemble's members, or the detector itself."""
    return list(model.members) if isinstance(model, DetectorEnsemble) else [model]


PRETRAINED_KEYS = ("state_dict", "model", "network")
"""Keys under which common checkpoint layouts nest the weights (Lightning, MONAI ``CheckpointSaver``, ours)."""


def load_pretrained_trunk(model: nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Initialise the trunk (``features``) of a detector or of every ensemble member from a state dict.

    Why: a team with a detector pre-trained on its own scans (or a related task) starts from it instead of from
    random weights; only the trunk is taken, because the presence head belongs to this bundle's classes. The state
    dict may be a single ``PresenceDetector``'s (``features.*``, every member starts from it), an ensemble's of the
    same size (``members.<k>.features.*``, member k from member k), or either nested under ``state_dict`` /
    ``model`` / ``network``; a ``module.`` prefix (DataParallel) is dropped.

    Returns:
        The number of tensors loaded.

    Raises:
        ValueError: no trunk tensor in ``state``, a missing trunk tensor, or a shape that does not fit.
    """
    for key in PRETRAINED_KEYS:
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    members = detector_members(model)
    loaded = 0
    for k, member in enumerate(members):
        prefix = f"members.{k}.features." if any(n.startswith("members.") for n in state) else "features."
        trunk = {n[len(prefix):]: v for n, v in state.items() if n.startswith(prefix)}
        if not trunk:
            raise ValueError(f"no detector trunk weights ('{prefix}*') in the state dict")
        own = member.features.state_dict()
        missing = sorted(set(own) - set(trunk))
        if missing:
            raise ValueError(f"the trunk lacks {len(missing)} tensors (first: {prefix}{missing[0]}); "
                             "is it from another width or depth?")
        for name, value in own.items():
            if tuple(trunk[name].shape) != tuple(value.shape):
                raise ValueError(f"{prefix}{name} has shape {tuple(trunk[name].shape)}, this detector needs "
                                 f"{tuple(value.shape)} (another width, depth, or channel count)")
        member.features.load_state_dict({n: trunk[n] for n in own})
        loaded += len(own)
    return loaded
