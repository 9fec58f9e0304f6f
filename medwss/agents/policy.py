"""The agents' policy-value network: a masked patch head, a termination head and a value head over one trunk.

One action space for the game engine: G*G patch actions (row-major) then TERMINATE (RLSP §3.2-3.3), drawn in two
stages: stop with P(terminate) = sigmoid(termination logit from pooled features), else pick a legal patch from the
softmax of the patch head (fully convolutional at G x G). Illegal actions (taken patches, outside the region,
TERMINATE in the final phase) get probability exactly 0.

P(terminate) is clamped to [floor, 1 - floor]. Without it, self-play collapsed in our runs: against the first,
random opponents "terminate at once" wins ~90% of games, the termination probability saturates to 1 and PPO never
again samples the one-step deviation ("play a patch, let the opponent terminate first") that becomes the better move
once opponents learn to find the ROI in their final pick. A squashing bound (tanh) saturates the same way, so the
clamp passes the gradients that pull the logit back inside and blocks those pushing it further out. (The loop's
termination warm-up and two learner seats, `selfplay.settings.SelfPlaySettings`, address the same collapse.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from monai.networks.blocks import Convolution, ResidualUnit
from torch import nn
from torch.distributions import Categorical

from medwss.agents.inputs import STATE_PLANES, ObservationMode, check_mode

MASKED_LOGIT = -1e9
"""Logit of an illegal action: exp() underflows to exactly 0, and stays finite so masked entropies are not NaN."""


class _InwardClamp(torch.autograd.Function):
    """clamp(x, -limit, limit) whose gradient is kept where it moves an outside x back towards the bounds."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, limit: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.limit = limit
        return x.clamp(-limit, limit)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        # Gradient descent moves x by -grad: above the bound only grad > 0 brings it down, below only grad < 0.
        keep = (x.abs() <= ctx.limit) | ((x > ctx.limit) & (grad > 0)) | ((x < -ctx.limit) & (grad < 0))
        return grad * keep, None


def bound_logit(logit: torch.Tensor, floor: float) -> torch.Tensor:
    """Clamp a logit to +-logit(1 - floor), so its sigmoid stays in [floor, 1 - floor] (gradients pull back in)."""
    if floor <= 0.0:
        return logit
    return _InwardClamp.apply(logit, math.log((1.0 - floor) / floor))


def masked_log_probs(logits: torch.Tensor, action_mask: torch.Tensor, floor: float = 0.0) -> torch.Tensor:
    """Log-probabilities (n, G*G + 1) of the two-stage action distribution; illegal actions get ~MASKED_LOGIT.

    Args:
        logits: (n, G*G + 1) patch logits, then the termination logit.
        action_mask: (n, G*G + 1) bool legal actions, TERMINATE last.
        floor: P(terminate) bound when both stopping and a patch are legal.
    """
    patch_mask, may_stop = action_mask[:, :-1], action_mask[:, -1]
    any_patch = patch_mask.any(dim=1)
    both = may_stop & any_patch
    stop_logit = bound_logit(logits[:, -1], floor)
    log_stop = torch.where(both, nn.functional.logsigmoid(stop_logit), torch.where(may_stop, 0.0, MASKED_LOGIT))
    log_go = torch.where(both, nn.functional.logsigmoid(-stop_logit), torch.where(any_patch, 0.0, MASKED_LOGIT))
    log_patch = torch.log_softmax(logits[:, :-1].masked_fill(~patch_mask, MASKED_LOGIT), dim=-1)
    joint = torch.cat([log_go[:, None] + log_patch, log_stop[:, None]], dim=1)
    return joint.masked_fill(~action_mask, MASKED_LOGIT)


def check_network(
    observation: str,
    pixels_per_patch: int,
    channels: int,
    num_res_units: int,
    termination_prob: float,
    termination_floor: float,
    score_prior: float = 0.0,
) -> None:
    """Raise ValueError for arguments no `AgentPolicy` can be built from; shared by the network and its settings, so
    a bundle config fails when it is read and a hand-built network fails the same way."""
    check_mode(observation)
    if score_prior < 0 or not math.isfinite(score_prior):
        raise ValueError(f"score_prior must be a finite number >= 0, got {score_prior}")
    if score_prior > 0 and observation != "features":
        raise ValueError('score_prior reads the "scores" agent plane: it needs observation "features"')
    if pixels_per_patch < 1 or pixels_per_patch & (pixels_per_patch - 1):
        raise ValueError(f"pixels_per_patch must be a power of two, got {pixels_per_patch}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if num_res_units < 0:
        raise ValueError(f"num_res_units must be >= 0, got {num_res_units}")
    if not 0.0 <= termination_floor < 0.5:
        raise ValueError(f"termination_floor must be in [0, 0.5), got {termination_floor}")
    if not termination_floor < termination_prob < 1.0 - termination_floor:
        raise ValueError(f"termination_prob must lie strictly inside the floor bounds, got {termination_prob}")


@dataclass(frozen=True)
class PolicySettings:
    """The agents' network and what it observes (``selfplay#policy`` in a bundle's ``train_selfplay.yaml``).

    Everything `AgentPolicy` is built from except what the data fixes (grid size, input channels): so
    ``network_config`` gives exactly the constructor arguments that the self-play stage saves beside
    ``models/model.pt`` (``inference_parts.json#network_def``), and inference rebuilds the trained network from them.
    termination_floor and merge_sides sit here, not with PPO or the game, because the network applies them: the floor
    bounds its termination head in play and in PPO's log-probabilities alike, and merge_sides chooses its input planes
    (inference must show it the same ones).
    """

    observation: ObservationMode = "pixels"
    """"pixels" (blanked image through a strided CNN) or "features" (frozen encoder features at G x G, ~2x faster
    per update). On the synthetic task pixels reached higher validation Dice (0.92 vs 0.89, two seeds each)."""
    pixels_per_patch: int = 4
    """Pixels observation: each patch is resized to p x p pixels (a power of two)."""
    channels: int = 16
    """Policy trunk width (32 costs ~3x the time per update on CPU)."""
    num_res_units: int = 1
    """Residual units in the policy trunk."""
    termination_prob: float = 0.05
    """Initial P(terminate) per play-phase step (keeps the first games short)."""
    termination_floor: float = 0.02
    """P(terminate) is clamped to [floor, 1 - floor] in play, so "terminate at once" can never saturate (see
    `agents.policy`); 0 disables the bound."""
    merge_sides: bool = False
    """The agents see taken patches without who took them, so solo play at inference shows them the boards they
    trained on (`game.observation.agent_planes`); False = the paper's "mine"/"theirs" planes."""
    score_prior: float = 0.0
    """Initial weight w of a direct path from the game-score plane to the patch logits (logit += w x score; w is
    learned): the first agents already prefer the patches the score calls ROI. Why: where ROI patches are a handful of
    a 32 x 32 grid (liver tumours), random opponents' final picks almost never find the ROI left, "terminate at once"
    wins, and the agents never learn to rank (an exploratory run on one fold's held-out liver patients: Dice of the
    agent's ranking cut at the ROI threshold 0.08 with w = 0, 0.40 with w = 30; ``docs/design.md``). Needs
    observation "features" with "scores" as the last agent plane; 0 = no path (the paper's agent)."""

    def __post_init__(self) -> None:
        check_network(self.observation, self.pixels_per_patch, self.channels, self.num_res_units,
                      self.termination_prob, self.termination_floor, self.score_prior)  # fmt: skip

    def network_config(self, grid_size: int, in_channels: int) -> dict[str, Any]:
        """`AgentPolicy` constructor arguments (equal to its ``.config``) for a G-grid and an observation base of
        ``in_channels`` channels: the network config stored with the trained weights."""
        config = {
            "observation": self.observation, "grid_size": int(grid_size), "in_channels": int(in_channels),
            "channels": self.channels, "num_res_units": self.num_res_units, "pixels_per_patch": self.pixels_per_patch,
            "termination_prob": self.termination_prob, "termination_floor": self.termination_floor,
            "merge_sides": bool(self.merge_sides),
        }  # fmt: skip
        return config | ({"score_prior": float(self.score_prior)} if self.score_prior > 0 else {})


class AgentPolicy(nn.Module):
    """Policy and value of an RLSP agent over `agents.inputs.build_observation` inputs.

    Args:
        observation: "pixels" (inputs at G*p x G*p, brought to G x G by a strided stem of log2(p) stride-2
            convolutions) or "features" (inputs at G x G).
        grid_size: G.
        in_channels: channels of the observation base (image channels C, or encoder features F).
        channels: width of the trunk.
        num_res_units: MONAI ResidualUnits in the trunk (its receptive field: 4 patches per unit).
        pixels_per_patch: p (pixels mode only), a power of two.
        termination_prob: initial P(terminate) at each step of the play phase (keeps the first games short).
        termination_floor: P(terminate) stays in [floor, 1 - floor] in the play phase (see the module docstring).
        merge_sides: the policy's inputs show taken patches without who took them (`game.observation.agent_planes`).
        score_prior: initial weight of the path from the last base channel (the "scores" agent plane) to the patch
            logits (`PolicySettings.score_prior`); 0 = no path.
    """

    def __init__(
        self,
        observation: ObservationMode = "pixels",
        grid_size: int = 16,
        in_channels: int = 1,
        *,
        channels: int = 16,
        num_res_units: int = 1,
        pixels_per_patch: int = 4,
        termination_prob: float = 0.05,
        termination_floor: float = 0.02,
        merge_sides: bool = False,
        score_prior: float = 0.0,
    ) -> None:
        super().__init__()
        check_network(observation, pixels_per_patch, channels, num_res_units, termination_prob, termination_floor,
                      score_prior)  # fmt: skip
        self.config: dict[str, Any] = {
            "observation": observation,
            "grid_size": grid_size,
            "in_channels": in_channels,
            "channels": channels,
            "num_res_units": num_res_units,
            "pixels_per_patch": pixels_per_patch,
            "termination_prob": termination_prob,
            "termination_floor": termination_floor,
            "merge_sides": bool(merge_sides),
        }
        if score_prior > 0:  # only then: the state dicts of agents without the path load unchanged
            self.config["score_prior"] = float(score_prior)
            self.score_weight = nn.Parameter(torch.tensor(float(score_prior)))
        self.termination_floor, self.merge_sides = termination_floor, bool(merge_sides)
        self.observation, self.grid_size = observation, grid_size
        self.pixels_per_patch = pixels_per_patch if observation == "pixels" else 1
        conv = {"spatial_dims": 2, "act": "RELU", "norm": None}  # no norm: absolute intensity is the signal
        width, stem = in_channels + STATE_PLANES, []
        downs = int(math.log2(self.pixels_per_patch))
        for i in range(downs):  # widths double towards `channels` as the resolution halves
            out = max(8, channels >> (downs - 1 - i))
            stem.append(Convolution(in_channels=width, out_channels=out, strides=2, kernel_size=3, **conv))
            width = out
        stem.append(Convolution(in_channels=width, out_channels=channels, kernel_size=3, **conv))
        units = [
            ResidualUnit(in_channels=channels, out_channels=channels, subunits=2, **conv) for _ in range(num_res_units)
        ]
        self.trunk = nn.Sequential(*stem, *units)
        self.patch_head = nn.Conv2d(channels, 1, kernel_size=1)
        self.termination_head = nn.Linear(2 * channels, 1)
        self.value_head = nn.Sequential(nn.Linear(2 * channels, channels), nn.ReLU(), nn.Linear(channels, 1))
        # CleanRL's actor init: near-zero action logits make the first policy uniform over patches.
        for head in (self.patch_head, self.termination_head):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        nn.init.constant_(self.termination_head.bias, math.log(termination_prob / (1.0 - termination_prob)))

    @property
    def action_count(self) -> int:
        return self.grid_size * self.grid_size + 1

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw action logits (n, G*G + 1): patch logits, then the unbounded termination logit; values (n,)."""
        size = self.grid_size * self.pixels_per_patch
        if obs.shape[-2:] != (size, size):
            raise ValueError(f"{self.observation} policy expects inputs of {size}x{size}, got {tuple(obs.shape)}")
        hidden = self.trunk(obs)
        pooled = torch.cat([hidden.mean(dim=(-2, -1)), hidden.amax(dim=(-2, -1))], dim=1)
        patch_logits = self.patch_head(hidden).flatten(1)
        if hasattr(self, "score_weight"):  # the score plane: last channel of the base, before the state planes
            patch_logits = patch_logits + self.score_weight * obs[:, self.config["in_channels"] - 1].flatten(1)
        logits = torch.cat([patch_logits, self.termination_head(pooled)], dim=1)
        return logits, self.value_head(pooled).squeeze(1)

    def act(
        self,
        obs: torch.Tensor,
        action_mask: torch.Tensor,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Pick legal actions: (actions int64, logprobs, entropy, values), each (n,).

        Args:
            obs: (n, ...) inputs from `build_observation`.
            action_mask: (n, G*G + 1) bool from `BatchedGame.action_mask`; every row needs a legal action.
            deterministic: stop if P(terminate) > 0.5, else the most likely legal patch (validation, inference),
                instead of a sample.
            generator: torch generator of the samples, so rollouts replay exactly from a checkpoint.
        """
        logits, values = self(obs)
        log_probs = masked_log_probs(logits, action_mask, self.termination_floor)
        dist = Categorical(logits=log_probs)  # log_prob and entropy; illegal actions (p = 0 exactly) add no entropy
        if deterministic:
            stop = log_probs[:, -1] > math.log(0.5)
            best_patch = log_probs[:, :-1].argmax(dim=-1)
            actions = torch.where(stop | ~action_mask[:, :-1].any(dim=1), action_mask.shape[1] - 1, best_patch)
        else:  # multinomial, not dist.sample(): only it takes the rollout's generator
            actions = torch.multinomial(log_probs.exp(), 1, generator=generator).squeeze(1)
        return actions, dist.log_prob(actions), dist.entropy(), values

    def evaluate(
        self, obs: torch.Tensor, action_mask: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logprobs, entropy, values) of the given actions under the current weights, for the PPO update."""
        logits, values = self(obs)
        dist = Categorical(logits=masked_log_probs(logits, action_mask, self.termination_floor))
        return dist.log_prob(actions.long()), dist.entropy(), values
