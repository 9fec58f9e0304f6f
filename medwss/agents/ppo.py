"""PPO math as small pure functions (CleanRL `ppo.py`), tested on their own and used by `selfplay.loop`.

Layout: (T, B) tensors, one column per game, T steps of the learner. Games of different lengths share one batch
through `valid` (the step holds a learner transition) and `dones` (the game ended with this step).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class PPOSettings:
    """The optimiser and the PPO maths of a self-play run (``selfplay#ppo`` in a bundle's ``train_selfplay.yaml``).

    Kept apart from the pool and the network so that tuning PPO reads as one block, and validated here because these
    numbers are only ever wrong in ways the maths above cannot notice (a negative clip silently disables learning).
    """

    learning_rate: float = 1e-3
    """Adam step size."""
    anneal_lr: bool = False
    """Decay the learning rate linearly to 0 over num_iterations (CleanRL `anneal_lr`)."""
    reward_scale: float = 0.1
    """Rewards are multiplied by this before GAE: returns of about +-1 keep the value loss from dominating the
    clipped gradient norm (termination rewards are 10 by default)."""
    gamma: float = 0.99
    """Discount per learner step."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip: float = 0.2
    """PPO ratio clip (also the value clip when clip_value)."""
    clip_value: bool = True
    """Clip the value update like the policy's (CleanRL `clip_vloss`)."""
    ent_coef: float = 0.01
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value loss weight."""
    max_grad_norm: float = 0.5
    """Gradient norm clip."""
    update_epochs: int = 4
    """Passes over the iteration's learner transitions."""
    minibatch_size: int = 256
    """Learner transitions per gradient step."""

    def __post_init__(self) -> None:
        for name in ("update_epochs", "minibatch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("clip", "max_grad_norm"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("learning_rate", "ent_coef", "vf_coef"):  # 0 is allowed: an untrained baseline, an ablation
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not math.isfinite(self.reward_scale):
            raise ValueError(f"reward_scale must be finite, got {self.reward_scale}")


def compute_returns(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    valid: torch.Tensor,
    gamma: float,
    gae_lambda: float,
    next_value: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns (Schulman et al. 2016), skipping invalid steps.

    An invalid step is jumped over as if absent: the valid step before it bootstraps from the next valid step's
    value. A done step does not bootstrap, so games placed one after another in a column stay separate.

    Args:
        rewards, values: (T, B) float, reward after and value before each step.
        dones: (T, B) bool, the game ended with this step (terminal: no value after it).
        valid: (T, B) bool, the step holds a transition; others get advantage and return 0.
        gamma: discount.
        gae_lambda: GAE lambda (1 = Monte-Carlo returns, 0 = one-step TD).
        next_value: (B,) value after the last valid step of games still running; None = 0 (all games ended).

    Returns:
        (advantages, returns), both (T, B); returns = advantages + values on valid steps.
    """
    if not rewards.shape == values.shape == dones.shape == valid.shape or rewards.dim() != 2:
        raise ValueError("rewards, values, dones and valid must all be (T, B)")
    steps, batch = rewards.shape
    zeros = torch.zeros(batch, dtype=values.dtype, device=values.device)
    next_v = zeros if next_value is None else next_value.to(values.device, values.dtype)
    next_adv = zeros.clone()
    advantages = torch.zeros_like(values)
    for t in reversed(range(steps)):
        nonterminal = 1.0 - dones[t].to(values.dtype)
        delta = rewards[t] + gamma * next_v * nonterminal - values[t]
        adv = delta + gamma * gae_lambda * nonterminal * next_adv
        advantages[t] = torch.where(valid[t], adv, 0.0)
        next_v = torch.where(valid[t], values[t], next_v)
        next_adv = torch.where(valid[t], adv, next_adv)
    returns = torch.where(valid, advantages + values, 0.0)
    return advantages, returns


def normalize_advantages(advantages: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit std over a minibatch (CleanRL `norm_adv`); a single sample is only centred."""
    centred = advantages - advantages.mean()
    if advantages.numel() < 2:
        return centred
    return centred / (advantages.std() + eps)


def policy_loss(
    new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, clip: float
) -> torch.Tensor:
    """Clipped surrogate objective, as a loss to minimise: mean of max(-A r, -A clip(r, 1-c, 1+c))."""
    ratio = (new_logprobs - old_logprobs).exp()
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    return torch.max(unclipped, clipped).mean()


def value_loss(
    new_values: torch.Tensor,
    returns: torch.Tensor,
    old_values: torch.Tensor | None = None,
    clip: float | None = None,
) -> torch.Tensor:
    """0.5 * mean squared error to the returns; with `clip`, the pessimistic max over the clipped update."""
    unclipped = (new_values - returns) ** 2
    if clip is None or old_values is None:
        return 0.5 * unclipped.mean()
    clipped_values = old_values + (new_values - old_values).clamp(-clip, clip)
    return 0.5 * torch.max(unclipped, (clipped_values - returns) ** 2).mean()


def entropy_bonus(entropy: torch.Tensor, ent_coef: float) -> torch.Tensor:
    """Loss term -ent_coef * mean entropy: minimising it keeps the policy exploring."""
    return -ent_coef * entropy.mean()


def approx_kl(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor) -> torch.Tensor:
    """Low-variance KL(old || new) estimate (r - 1) - log r (Schulman's k3), for logs and early stopping."""
    logratio = new_logprobs - old_logprobs
    return ((logratio.exp() - 1.0) - logratio).mean()


def clip_fraction(new_logprobs: torch.Tensor, old_logprobs: torch.Tensor, clip: float) -> torch.Tensor:
    """Share of samples whose probability ratio left [1 - clip, 1 + clip]."""
    return ((new_logprobs - old_logprobs).exp().sub(1.0).abs() > clip).float().mean()
