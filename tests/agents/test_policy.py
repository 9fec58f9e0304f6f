"""The policy-value network: shapes in both observation modes, masking, sampling, evaluation, rebuild."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical

from medwss.agents.inputs import STATE_PLANES
from medwss.agents.policy import AgentPolicy, bound_logit, masked_log_probs

G = 4


def make(mode: str, **kwargs) -> tuple[AgentPolicy, torch.Tensor]:
    torch.manual_seed(0)
    if mode == "features":
        policy = AgentPolicy("features", G, 6, channels=8, num_res_units=1, **kwargs)
        return policy, torch.randn(5, 6 + STATE_PLANES, G, G)
    policy = AgentPolicy("pixels", G, 1, channels=8, num_res_units=1, pixels_per_patch=4, **kwargs)
    return policy, torch.randn(5, 1 + STATE_PLANES, 4 * G, 4 * G)


@pytest.mark.parametrize("mode", ["features", "pixels"])
def test_forward_shapes_and_wrong_input_size(mode: str) -> None:
    policy, obs = make(mode)
    logits, values = policy(obs)
    assert logits.shape == (5, G * G + 1) and values.shape == (5,)
    assert policy.action_count == G * G + 1
    with pytest.raises(ValueError, match="expects inputs"):
        policy(obs[..., :-1, :-1])


@pytest.mark.parametrize("mode", ["features", "pixels"])
def test_act_only_picks_legal_actions_and_evaluate_agrees(mode: str) -> None:
    policy, obs = make(mode)
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(5, G * G + 1, generator=gen) < 0.3
    mask[:, 0] = True  # every row needs one legal action
    for _ in range(20):
        actions, logprobs, entropy, values = policy.act(obs, mask, generator=gen)
        assert bool(mask.gather(1, actions[:, None]).all())
        new_logprobs, new_entropy, new_values = policy.evaluate(obs, mask, actions)
        assert torch.allclose(logprobs, new_logprobs) and torch.allclose(entropy, new_entropy)
        assert torch.allclose(values, new_values)
    greedy = policy.act(obs, mask, deterministic=True)[0]
    logits = policy(obs)[0]
    best_patch = logits[:, :-1].masked_fill(~mask[:, :-1], -math.inf).argmax(1)
    stop = mask[:, -1] & (logits[:, -1] > 0)  # P(terminate) > 0.5
    assert torch.equal(greedy, torch.where(stop, G * G, best_patch))


def test_sampling_is_reproducible_from_the_generator() -> None:
    policy, obs = make("features")
    mask = torch.ones(5, G * G + 1, dtype=torch.bool)
    first = policy.act(obs, mask, generator=torch.Generator().manual_seed(7))[0]
    again = policy.act(obs, mask, generator=torch.Generator().manual_seed(7))[0]
    assert torch.equal(first, again)


@pytest.mark.parametrize(
    "stop_logit,mask,floor,expected",
    [
        (0.0, [1, 1, 1, 1, 1], 0.0, [0.125] * 4 + [0.5]),  # stop 1/2, else a uniform patch
        (0.0, [1, 1, 0, 0, 1], 0.0, [0.25, 0.25, 0, 0, 0.5]),  # only legal patches share the rest
        (0.0, [1, 0, 1, 0, 0], 0.0, [0.5, 0, 0.5, 0, 0]),  # final phase: no stopping
        (5.0, [0, 0, 0, 0, 1], 0.0, [0, 0, 0, 0, 1]),  # nothing but TERMINATE legal (a done game)
        (50.0, [1, 1, 1, 1, 1], 0.1, [0.025] * 4 + [0.9]),  # the bound: P(stop) <= 1 - floor
        (-50.0, [1, 1, 1, 1, 1], 0.1, [0.225] * 4 + [0.1]),  # and >= floor
    ],
)
def test_two_stage_distribution_is_exact(stop_logit: float, mask: list, floor: float, expected: list) -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0, stop_logit]])
    legal = torch.tensor([mask], dtype=torch.bool)
    log_probs = masked_log_probs(logits, legal, floor)
    assert log_probs.exp()[0].tolist() == pytest.approx(expected, abs=1e-4)
    probs = torch.tensor(expected)
    entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    assert Categorical(logits=log_probs).entropy().item() == pytest.approx(entropy.item(), abs=1e-4)


@pytest.mark.parametrize("floor", [0.0, 0.02])
def test_categorical_log_prob_and_entropy_match_the_masked_gather(floor: float) -> None:
    """``Categorical`` over the masked log-probabilities gives what the hand-written gather and masked sum gave."""
    policy, obs = make("features", termination_floor=floor)
    gen = torch.Generator().manual_seed(3)
    mask = torch.rand(5, G * G + 1, generator=gen) > 0.4
    mask[0, :-1], mask[0, -1] = False, True  # only TERMINATE legal (a done game)
    mask[1, -1] = False  # the final phase: no stopping
    mask[1, 0] = True
    actions, logprobs, entropy, _ = policy.act(obs, mask, generator=gen)
    log_probs = masked_log_probs(policy(obs)[0], mask, floor)
    gathered = log_probs.gather(1, actions[:, None]).squeeze(1)
    summed = -(log_probs.exp() * log_probs).masked_fill(~mask, 0.0).sum(-1)
    torch.testing.assert_close(logprobs, gathered, rtol=0, atol=1e-6)
    torch.testing.assert_close(entropy, summed, rtol=0, atol=1e-6)
    new_logprobs, new_entropy, _ = policy.evaluate(obs, mask, actions)
    torch.testing.assert_close(new_logprobs, gathered, rtol=0, atol=1e-6)
    torch.testing.assert_close(new_entropy, summed, rtol=0, atol=1e-6)


@pytest.mark.parametrize("floor", [0.0, 0.05])
def test_termination_prior(floor: float) -> None:
    policy, obs = make("features", termination_prob=0.2, termination_floor=floor)
    probs = masked_log_probs(policy(obs)[0], torch.ones(5, G * G + 1, dtype=torch.bool), floor).exp()
    assert probs[:, -1].tolist() == pytest.approx([0.2] * 5, abs=0.02)


def test_config_round_trip_and_bad_settings() -> None:
    policy, obs = make("pixels")
    clone = AgentPolicy(**policy.config)
    clone.load_state_dict(policy.state_dict())
    assert torch.equal(clone(obs)[0], policy(obs)[0]) and clone.config == policy.config
    with pytest.raises(ValueError):
        AgentPolicy("pixels", G, 1, pixels_per_patch=3)
    with pytest.raises(ValueError):
        AgentPolicy("features", G, 1, termination_prob=1.0)
    with pytest.raises(ValueError):
        AgentPolicy("features", G, 1, termination_prob=0.01, termination_floor=0.02)
    with pytest.raises(ValueError):
        AgentPolicy("scores", G, 1)


def test_bound_passes_only_inward_gradients() -> None:
    limit = math.log(0.9 / 0.1)
    x = torch.tensor([0.0, 10.0, 10.0, -10.0, -10.0], requires_grad=True)
    y = bound_logit(x, 0.1)
    assert y.tolist() == pytest.approx([0.0, limit, limit, -limit, -limit])
    grad = torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0])
    y.backward(grad)
    # inside: passed; above the bound: only the gradient that lowers x (positive); below: only the negative one.
    assert x.grad.tolist() == [1.0, 1.0, 0.0, 0.0, -1.0]
    assert bound_logit(x, 0.0) is x


def test_score_prior_adds_the_score_plane_to_the_patch_logits_and_is_learned() -> None:
    from medwss.agents.policy import AgentPolicy, PolicySettings

    torch.manual_seed(0)
    plain = AgentPolicy("features", 4, 3)
    with_path = AgentPolicy("features", 4, 3, score_prior=5.0)
    with_path.load_state_dict(plain.state_dict() | {"score_weight": torch.tensor(5.0)})
    obs = torch.rand(2, 3 + STATE_PLANES, 4, 4)
    diff = with_path(obs)[0] - plain(obs)[0]
    assert torch.allclose(diff[:, :-1], 5.0 * obs[:, 2].flatten(1), atol=1e-5)  # the last base channel: scores
    assert torch.allclose(diff[:, -1], torch.zeros(2))
    assert "score_weight" in dict(with_path.named_parameters())
    assert "score_weight" not in plain.state_dict() and "score_prior" not in plain.config
    config = PolicySettings(observation="features", score_prior=5.0).network_config(4, 3)
    assert config == with_path.config and AgentPolicy(**config).config == config


def test_score_prior_needs_features_and_a_non_negative_weight() -> None:
    from medwss.agents.policy import AgentPolicy, PolicySettings

    with pytest.raises(ValueError, match="features"):
        AgentPolicy("pixels", 4, 1, score_prior=1.0)
    with pytest.raises(ValueError, match="score_prior"):
        PolicySettings(observation="features", score_prior=-1.0)
