"""PPO math: GAE over games of different lengths, the clipped losses, advantage normalisation."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.ppo import (
    approx_kl,
    clip_fraction,
    compute_returns,
    entropy_bonus,
    normalize_advantages,
    policy_loss,
    value_loss,
)


def col(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32)[:, None]


def flags(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.bool)[:, None]


@pytest.mark.parametrize(
    "rewards,values,dones,valid,gamma,lam,expected_adv",
    [
        # Monte-Carlo (lambda 1, gamma 1): advantage = reward-to-go - value.
        ((1, 2, 3), (0, 0, 0), (0, 0, 1), (1, 1, 1), 1.0, 1.0, (6, 5, 3)),
        ((1, 2, 3), (1, 1, 1), (0, 0, 1), (1, 1, 1), 1.0, 1.0, (5, 4, 2)),
        # One-step TD (lambda 0): r + gamma V(next) - V, no bootstrap after the done step.
        ((1, 0, 2), (0.5, 1.0, 2.0), (0, 0, 1), (1, 1, 1), 0.9, 0.0, (1.4, 0.8, 0.0)),
        # Two games one after the other in one column: the done cuts the first game off the second.
        ((1, 1, 5, 5), (0, 0, 0, 0), (0, 1, 0, 1), (1, 1, 1, 1), 1.0, 1.0, (2, 1, 10, 5)),
        # Invalid steps in between are skipped as if absent.
        ((1, 99, 2), (0, 99, 0), (0, 0, 1), (1, 0, 1), 1.0, 1.0, (3, 0, 2)),
        # A padded game: invalid steps after its end get 0.
        ((4, 0, 0), (1, 0, 0), (1, 0, 0), (1, 0, 0), 0.99, 0.95, (3, 0, 0)),
    ],
)
def test_compute_returns_table(rewards, values, dones, valid, gamma, lam, expected_adv) -> None:
    adv, ret = compute_returns(col(*rewards), col(*values), flags(*dones), flags(*valid), gamma, lam)
    assert adv[:, 0].tolist() == pytest.approx(expected_adv, abs=1e-5)
    v = flags(*valid)[:, 0]
    assert ret[:, 0][v].tolist() == pytest.approx((adv[:, 0] + col(*values)[:, 0])[v].tolist(), abs=1e-5)
    assert ret[:, 0][~v].abs().sum() == 0


def test_gae_matches_the_textbook_recursion() -> None:
    """GAE(lambda) = sum_l (gamma lambda)^l delta_{t+l} for one game ending at T (no bootstrap)."""
    torch.manual_seed(0)
    steps, gamma, lam = 7, 0.97, 0.8
    r, v = torch.randn(steps), torch.randn(steps)
    v_next = torch.cat([v[1:], torch.zeros(1)])
    delta = r + gamma * v_next - v
    expected = [sum((gamma * lam) ** k * float(delta[t + k]) for k in range(steps - t)) for t in range(steps)]
    done = torch.zeros(steps, dtype=torch.bool)
    done[-1] = True
    adv, _ = compute_returns(r[:, None], v[:, None], done[:, None], torch.ones(steps, 1, dtype=torch.bool), gamma, lam)
    assert adv[:, 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_games_of_different_lengths_in_one_batch_equal_each_alone() -> None:
    torch.manual_seed(1)
    lengths, steps = [5, 2, 7, 1], 7
    rewards, values = torch.randn(steps, 4), torch.randn(steps, 4)
    valid = torch.arange(steps)[:, None] < torch.tensor(lengths)[None]
    dones = torch.arange(steps)[:, None] == (torch.tensor(lengths) - 1)[None]
    adv, ret = compute_returns(rewards, values, dones, valid, 0.99, 0.9)
    for b, n in enumerate(lengths):
        alone_adv, alone_ret = compute_returns(
            rewards[:n, b : b + 1], values[:n, b : b + 1], dones[:n, b : b + 1], valid[:n, b : b + 1], 0.99, 0.9
        )
        assert torch.allclose(adv[:n, b], alone_adv[:, 0]) and torch.allclose(ret[:n, b], alone_ret[:, 0])
        assert not adv[n:, b].any()


def test_next_value_bootstraps_running_games() -> None:
    adv, _ = compute_returns(col(1.0), col(0.0), flags(0), flags(1), 0.5, 1.0, next_value=torch.tensor([4.0]))
    assert adv.item() == pytest.approx(3.0)
    with pytest.raises(ValueError):
        compute_returns(torch.zeros(3), torch.zeros(3), torch.zeros(3, dtype=torch.bool), torch.ones(3), 1.0, 1.0)


@pytest.mark.parametrize(
    "ratio,adv,expected",
    [
        (1.0, 2.0, -2.0),  # on-policy: minus the advantage
        (1.5, 1.0, -1.2),  # positive advantage: gain capped at 1 + clip
        (0.5, 1.0, -0.5),  # positive advantage, ratio down: unclipped (pessimistic)
        (0.5, -1.0, 0.8),  # negative advantage: loss capped at 1 - clip
        (1.5, -1.0, 1.5),  # negative advantage, ratio up: unclipped (pessimistic)
    ],
)
def test_policy_loss_clipping(ratio: float, adv: float, expected: float) -> None:
    new = torch.tensor([float(torch.log(torch.tensor(ratio)))])
    loss = policy_loss(new, torch.zeros(1), torch.tensor([adv]), clip=0.2)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_value_loss_plain_and_clipped() -> None:
    new, ret, old = torch.tensor([3.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0])
    assert value_loss(new, ret).item() == pytest.approx(0.5 * (4 + 0) / 2)
    # Clipped value 2.2 -> (1.2)^2 = 1.44 < 4: the max keeps the unclipped error.
    assert value_loss(new, ret, old, clip=0.2).item() == pytest.approx(1.0)
    # Moving towards the return beyond the clip: the clipped error (larger) counts.
    assert value_loss(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([2.0]), 0.2).item() == pytest.approx(
        0.5 * 0.8**2
    )


def test_normalize_and_diagnostics() -> None:
    adv = normalize_advantages(torch.tensor([1.0, 2.0, 3.0, 10.0]))
    assert adv.mean().item() == pytest.approx(0.0, abs=1e-6) and adv.std().item() == pytest.approx(1.0, abs=1e-5)
    assert normalize_advantages(torch.tensor([5.0])).tolist() == [0.0]
    assert entropy_bonus(torch.tensor([1.0, 3.0]), 0.1).item() == pytest.approx(-0.2)
    same = torch.tensor([-1.0, -2.0])
    assert approx_kl(same, same).item() == 0.0 and clip_fraction(same, same, 0.2).item() == 0.0
    assert approx_kl(same + 0.5, same).item() > 0 and clip_fraction(same + torch.tensor([0.5, 0.0]), same, 0.2) == 0.5
