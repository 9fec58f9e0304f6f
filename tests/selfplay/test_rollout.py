"""Self-play rollouts store exactly the learner's transitions, rewards and game ends; agent a alone, or against an
opponent at inference, makes masks."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.encoders import PatchStatsEncoder
from medwss.agents.inputs import build_observation, observation_base
from medwss.agents.policy import AgentPolicy
from medwss.game.record import EndReason
from medwss.game.rules import GameRules
from medwss.selfplay.rollout import play_against, play_alone, play_inference_games, play_selfplay_games

G, SIZE, B = 4, 16, 12


def setup(mode: str, termination_prob: float = 0.1, seed: int = 0):
    torch.manual_seed(seed)
    images = torch.rand(B, 1, SIZE, SIZE)
    base = observation_base(images, mode, G, encoder=PatchStatsEncoder(G), pixels_per_patch=2)
    make = lambda: AgentPolicy(mode, G, base.shape[1], channels=8, num_res_units=1, pixels_per_patch=2,  # noqa: E731
                               termination_prob=termination_prob, termination_floor=0.0)  # fmt: skip
    region = torch.rand(B, G, G) < 0.8
    region[:, 0, 0] = True
    return make(), make(), base, torch.rand(B, G, G), region


@pytest.mark.parametrize("mode", ["features", "pixels"])
@pytest.mark.parametrize("seats", ["a", "both"])
def test_rollout_bookkeeping(mode: str, seats: str) -> None:
    learner, opponent, base, scores, region = setup(mode)
    seat = torch.arange(B) % 2 if seats == "both" else torch.zeros(B, dtype=torch.int64)
    rules = GameRules(grid_size=G)
    ro = play_selfplay_games(learner, opponent, base, scores, region, rules, torch.Generator().manual_seed(1), seat)
    steps = ro.valid.sum(0)
    assert ro.valid.shape == ro.rewards.shape == (int(steps.max()), B)
    assert bool(ro.valid[0][seat == 0].all())  # a always moves first
    # Rewards in the rollout add up to the learner's game return; one done per game, at its last step.
    assert torch.allclose(ro.rewards.sum(0), ro.learner_returns)
    played = steps > 0
    assert torch.equal(ro.dones.sum(0), played.long())
    last = (steps - 1).clamp(min=0)
    assert bool(ro.dones[last, torch.arange(B)][played].all())
    assert not bool((ro.dones & ~ro.valid).any()) and not bool((ro.rewards.ne(0) & ~ro.valid).any())
    # Stored actions were legal, and re-evaluating the rebuilt inputs gives the stored log-probs and values.
    t, b = ro.valid.nonzero(as_tuple=True)
    assert bool(ro.action_masks[t, b].gather(1, ro.actions[t, b][:, None]).all())
    obs = build_observation(base[b], ro.owner[t, b], seat[b], region[b], ro.final_phase[t, b], ro.step_fraction[t, b],
                            mode)  # fmt: skip
    logprobs, _, values = learner.evaluate(obs, ro.action_masks[t, b], ro.actions[t, b])
    assert torch.allclose(logprobs, ro.logprobs[t, b], atol=1e-5) and torch.allclose(values, ro.values[t, b], atol=1e-5)
    # Taken patches stay inside the region; every game is over.
    assert not bool(((ro.owner != 0) & ~region[None]).any())
    assert bool((ro.end_reason != EndReason.NOT_ENDED).all())
    assert torch.equal(ro.learner_won, ro.winner == seat)


def test_rollout_replays_from_the_generator() -> None:
    learner, opponent, base, scores, region = setup("features")
    rules = GameRules(grid_size=G)
    first = play_selfplay_games(learner, opponent, base, scores, region, rules, torch.Generator().manual_seed(4))
    again = play_selfplay_games(learner, opponent, base, scores, region, rules, torch.Generator().manual_seed(4))
    assert torch.equal(first.actions, again.actions) and torch.equal(first.returns, again.returns)


@pytest.mark.parametrize("mode", ["features", "pixels"])
def test_play_alone_masks(mode: str) -> None:
    policy, _, base, scores, region = setup(mode, termination_prob=0.01)
    rules = GameRules(grid_size=G)
    masks = play_alone(policy, None, scores, region, rules, base=base, batch_size=5)
    assert masks.shape == (B, G, G) and masks.dtype == torch.bool
    assert not bool((masks & ~region).any())
    assert torch.equal(masks, play_alone(policy, None, None, region, rules, base=base))  # deterministic, scores unused
    # A policy that always terminates at once takes nothing.
    quitter, _, _, _, _ = setup(mode, termination_prob=0.999)
    assert not bool(play_alone(quitter, None, scores, region, rules, base=base).any())
    with pytest.raises(ValueError, match="needs images"):
        play_alone(policy, None, scores, region, rules)


def test_play_alone_from_images() -> None:
    torch.manual_seed(0)
    policy = AgentPolicy("pixels", G, 1, channels=8, num_res_units=0, pixels_per_patch=2)
    images = torch.rand(3, 1, SIZE, SIZE)
    rules = GameRules(grid_size=G)
    masks = play_alone(policy, images, None, None, rules, generator=torch.Generator(), deterministic=False)
    assert masks.shape == (3, G, G)


def _constant_stopper(p_stop: float) -> AgentPolicy:
    """A features policy whose P(terminate) is exactly ``p_stop`` at every play step, whatever it sees."""
    policy = AgentPolicy("features", 2, 1, termination_prob=p_stop)
    torch.nn.init.zeros_(policy.termination_head.weight)
    return policy.eval()


@pytest.mark.parametrize(("p_stop", "stopping", "patches"), [
    (0.3, "step", 4),  # never above 0.5 at one step: plays the board out
    (0.3, "median", 1),  # 1 - 0.7 = 0.3 after one step, 1 - 0.49 = 0.51 after two: stops at the second
    (0.1, "median", 4),  # 1 - 0.9**4 = 0.34 < 0.5: the board runs out first
    (0.6, "step", 0),
    (0.6, "median", 0),
])
def test_play_alone_stopping_rules(p_stop: float, stopping: str, patches: int) -> None:
    rules = GameRules(grid_size=2)
    taken = play_alone(_constant_stopper(p_stop), None, None, None, rules, base=torch.zeros(3, 1, 2, 2),
                       stopping=stopping)
    assert taken.flatten(1).sum(1).tolist() == [patches] * 3


@pytest.mark.parametrize(("quantile", "patches"), [
    (0.25, 0),  # stop once P(stopped) >= 0.25: 0.3 at the first step
    (0.5, 1),  # the median rule
    (0.6, 2),  # 1 - 0.7**3 = 0.66 at the third step
    (0.9, 4),  # 1 - 0.7**4 = 0.76 < 0.9: the board runs out first
])
def test_play_alone_stops_at_a_quantile_of_its_stopping_time(quantile: float, patches: int) -> None:
    rules = GameRules(grid_size=2)
    taken = play_alone(_constant_stopper(0.3), None, None, None, rules, base=torch.zeros(3, 1, 2, 2),
                       stopping="quantile", stop_quantile=quantile)
    assert taken.flatten(1).sum(1).tolist() == [patches] * 3


def test_play_alone_refuses_a_stop_quantile_outside_0_1() -> None:
    with pytest.raises(ValueError, match="stop_quantile"):
        play_alone(_constant_stopper(0.3), None, None, None, GameRules(grid_size=2), base=torch.zeros(1, 1, 2, 2),
                   stopping="quantile", stop_quantile=1.0)


def test_play_alone_refuses_an_unknown_stopping_rule() -> None:
    with pytest.raises(ValueError, match="stopping"):
        play_alone(_constant_stopper(0.3), None, None, None, GameRules(grid_size=2), base=torch.zeros(1, 1, 2, 2),
                   stopping="never")


# ---------------------------------------------------------------------------------------- against an opponent
@pytest.mark.parametrize("mode", ["features", "pixels"])
def test_play_against_itself_keeps_only_agent_a_play_phase_patches(mode: str) -> None:
    policy, _, base, scores, region = setup(mode, termination_prob=0.2)
    rules = GameRules(grid_size=G)
    games = play_inference_games(policy, None, scores, region, rules, base=base, opponent=policy, batch_size=5,
                                 stopping="median")  # fmt: skip
    assert games.patches.shape == (B, G, G) and games.patches.dtype == torch.bool
    # b played (its patches are on the board) and none of them is in a's mask; nothing outside the region.
    assert bool((games.owner == 2).any())
    assert not bool((games.patches & (games.owner != 1)).any())
    assert not bool(((games.owner != 0) & ~region).any())
    # a's mask is every patch a owns but its final pick.
    a_final = torch.zeros(B, G * G, dtype=torch.bool)
    has = games.final_patch[:, 0] >= 0
    a_final[has.nonzero().squeeze(1), games.final_patch[has, 0]] = True
    assert torch.equal(games.patches, (games.owner == 1) & ~a_final.view(B, G, G))
    # Deterministic, and `play_against` (default opponent: the policy itself) returns the same mask.
    again = play_against(policy, None, scores, region, rules, base=base, stopping="median")
    assert torch.equal(again, games.patches)
    assert bool((games.end_reason != EndReason.NOT_ENDED).all())


@pytest.mark.parametrize(("p_stop", "stopping", "a_patches", "terminator"), [
    (0.3, "median", 1, 0),  # a: 1 - 0.7 after its first pick, 1 - 0.49 >= 0.5 at its second move: terminates
    (0.3, "step", 2, -1),  # nobody ever stops: a and b take 2 patches each and the board runs out
    (0.6, "step", 0, 0),  # a terminates at once: its final pick is not in its mask
    (0.6, "median", 0, 0),
])
def test_play_against_mask_stops_at_the_termination(p_stop: float, stopping: str, a_patches: int,
                                                    terminator: int) -> None:  # fmt: skip
    rules = GameRules(grid_size=2)
    policy = _constant_stopper(p_stop)
    games = play_inference_games(policy, None, None, None, rules, base=torch.zeros(3, 1, 2, 2), opponent=policy,
                                 stopping=stopping)  # fmt: skip
    assert games.patches.flatten(1).sum(1).tolist() == [a_patches] * 3
    assert games.terminator.tolist() == [terminator] * 3
    if terminator >= 0:  # both final picks were played (survival below 1/2 never calls TERMINATE in the final phase)
        assert bool((games.final_patch >= 0).all()) and games.end_reason.tolist() == [EndReason.TERMINATED] * 3
    else:
        assert games.end_reason.tolist() == [EndReason.EXHAUSTED] * 3


def test_play_against_a_terminating_opponent_keeps_a_s_first_pick() -> None:
    """b (another network) terminates at its first move: a's mask is its one normal pick, b's seat used b's net."""
    policy, _, base, scores, region = setup("features", termination_prob=0.01)
    quitter, _, _, _, _ = setup("features", termination_prob=0.999)
    games = play_inference_games(policy, None, scores, region, GameRules(grid_size=G), base=base, opponent=quitter)
    assert games.patches.flatten(1).sum(1).tolist() == [1] * B
    assert games.terminator.tolist() == [1] * B
    assert bool(((games.owner == 2).flatten(1).sum(1) <= 1).all())  # b only took its final pick


def test_play_alone_is_play_inference_games_without_an_opponent() -> None:
    policy, _, base, scores, region = setup("features", termination_prob=0.2)
    rules = GameRules(grid_size=G)
    games = play_inference_games(policy, None, scores, region, rules, base=base, stopping="median")
    assert torch.equal(games.patches, play_alone(policy, None, scores, region, rules, base=base, stopping="median"))
    assert set(games.terminator.tolist()) <= {-1, 0} and not bool((games.owner == 2).any())
    assert bool((games.final_patch == -1).all())
    empty = play_inference_games(policy, None, None, None, rules, base=base[:0], opponent=policy)
    assert empty.patches.shape == (0, G, G) and empty.terminator.shape == (0,)


def _score_follower(grid: int = 3) -> AgentPolicy:
    """A features policy that ranks patches by the score plane alone (the ``score_prior`` path, trunk head zeroed)."""
    policy = AgentPolicy("features", grid, 1, score_prior=50.0)
    torch.nn.init.zeros_(policy.patch_head.weight)
    return policy.eval()


def test_threshold_stopping_takes_the_ranked_patches_until_the_next_scores_below_the_roi_threshold() -> None:
    scores = torch.tensor([[[0.9, 0.1, 0.0], [0.7, 0.0, 0.0], [0.0, 0.0, 0.45]],
                           [[0.2, 0.1, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.3]]])  # fmt: skip
    rules = GameRules(grid_size=3, roi_threshold=0.4)
    taken = play_alone(_score_follower(), None, scores, None, rules, base=scores[:, None], stopping="threshold")
    assert torch.equal(taken, scores >= 0.4)  # the agent ranks by score: its cut equals the score rule here
    assert taken[1].sum() == 0  # nothing at or above the threshold: it stops at once


def test_threshold_stopping_stops_at_its_own_next_pick_not_at_the_best_patch_left() -> None:
    """The agent ranks by what it sees (here a plane that prefers patch (0, 1)), the game scores its pick: it stops
    at once, though patch (0, 0) above the threshold is left."""
    scores = torch.tensor([[[0.9, 0.1], [0.0, 0.0]]])
    seen = torch.tensor([[[[0.0, 1.0], [0.0, 0.0]]]])
    rules = GameRules(grid_size=2, roi_threshold=0.5)
    assert play_alone(_score_follower(2), None, scores, None, rules, base=seen, stopping="threshold").sum() == 0
    assert play_alone(_score_follower(2), None, scores, None, rules, base=scores[:, None],
                      stopping="threshold").sum() == 1


def test_sampled_play_ignores_the_threshold_rule_as_it_ignores_the_others() -> None:
    rules = GameRules(grid_size=3, roi_threshold=0.4)
    scores = torch.rand(2, 3, 3)
    sampled = play_alone(_score_follower(), None, scores, None, rules, base=scores[:, None], stopping="threshold",
                         deterministic=False, generator=torch.Generator().manual_seed(0))
    assert sampled.shape == (2, 3, 3)
