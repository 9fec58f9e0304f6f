"""Playing batches of games with policies: self-play rollouts for PPO, and agent a at inference (validation,
segmentation): alone, or against a fixed opponent (`OPPONENTS`).

Games run in lock-step on `BatchedGame`; at each step the learner acts in the games where it is its seat's move and
the frozen opponent in the others (seats fall out of step after a termination). The learner sits at agent a, or at
b in the games `learner_seat` says: the observation is relative to the acting agent, so one network plays either
seat. Only the learner's transitions are stored, as compact game state (owner grid, phase, turn) from which
`build_observation` rebuilds the inputs in PPO minibatches.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from medwss.agents.inputs import Encoder, build_observation, observation_base
from medwss.agents.policy import AgentPolicy, masked_log_probs
from medwss.game.engine import BatchedGame
from medwss.game.record import Phase
from medwss.game.rules import GameRules
from medwss.runtime.progress import SliceProgress, batches

STOPPING_RULES = ("step", "median", "quantile", "threshold")
"""When a deterministic agent alone calls termination. "step": when P(terminate) > 0.5 at that step. "median": at
the step where the policy, had it sampled, would have terminated with probability 0.5 by then (1 - prod(1 - p_t)
>= 0.5): the median of its own stopping time. Why: self-play trains a *sampled* stopping time, spread over several
steps at moderate P(terminate); the per-step rule waits for one step above 0.5 and took about twice the patches
(measured on 8 held-out prostate patients: 13% of patches against 5.5%, 3D Dice 0.49 against 0.63). "quantile": the
same at another quantile ``stop_quantile`` of its stopping time (above 0.5 plays longer, below stops sooner), a knob
picked on validation patients (``benchmarks/cohort.py``'s ``rlsp_stop_quantile`` row); "median" is quantile 0.5.
"threshold": the game's own termination test with the agent as its opponent: it stops when the patch it would take
next scores below the game's ROI threshold (``GameRules.roi_threshold``), that is when its own final pick would find
no ROI left and terminating wins; ``stop_level`` scales the threshold of that test (1 = the game's own, below 1
plays on past a pick that scores a little lower, a knob picked on validation patients like ``stop_quantile``). Why:
where self-play learns to rank the ROI patches but collapses to terminating at once (liver tumours,
``docs/design.md``), its stopping time says nothing and the game's test does."""


def check_stopping(stopping: str, stop_quantile: float, stop_level: float = 1.0) -> None:
    """Refuse an unknown stopping rule, a quantile outside (0, 1) or a stop level that is not a positive number; the
    inferer calls it when a bundle builds it, so a bad ``inference.yaml`` fails before any scan is read."""
    if stopping not in STOPPING_RULES:
        raise ValueError(f"stopping must be one of {STOPPING_RULES}, got {stopping!r}")
    if not 0.0 < stop_quantile < 1.0:
        raise ValueError(f"stop_quantile must lie in (0, 1), got {stop_quantile}")
    if isinstance(stop_level, bool) or not isinstance(stop_level, (int, float)) or not 0.0 < stop_level < math.inf:
        raise ValueError(f"stop_level must be a positive fraction of the ROI threshold, got {stop_level!r}")


@dataclass
class Rollout:
    """Learner (agent a) transitions of B games, step-major (T, B), T = the longest game's learner steps."""

    owner: torch.Tensor
    """(T, B, G, G) int8 board before the learner's action: 0 free, 1 a's, 2 b's (not relative to the seat)."""
    final_phase: torch.Tensor
    """(T, B) bool, the action was a final pick."""
    step_fraction: torch.Tensor
    """(T, B) float, turn / self-play turn limit at the action."""
    action_masks: torch.Tensor
    """(T, B, G*G + 1) bool legal actions."""
    actions: torch.Tensor
    """(T, B) int64."""
    logprobs: torch.Tensor
    """(T, B) log-probability of the action under the acting policy."""
    values: torch.Tensor
    """(T, B) value estimates."""
    rewards: torch.Tensor
    """(T, B) learner rewards between this action and its next one (turn and termination rewards)."""
    dones: torch.Tensor
    """(T, B) bool, the game ended before the learner's next action."""
    valid: torch.Tensor
    """(T, B) bool, the step holds a transition (games have different lengths)."""
    winner: torch.Tensor
    """(B,) int64 winner of the termination, -1 none."""
    end_reason: torch.Tensor
    """(B,) int64 `EndReason`."""
    turns: torch.Tensor
    """(B,) int64 completed turns."""
    returns: torch.Tensor
    """(B, 2) float summed rewards of a and b."""
    learner_seat: torch.Tensor
    """(B,) int64 the learner's seat per game: 0 = agent a, 1 = agent b."""

    @property
    def learner_returns(self) -> torch.Tensor:
        """(B,) the learner's summed rewards."""
        return self.returns.gather(1, self.learner_seat[:, None]).squeeze(1)

    @property
    def learner_won(self) -> torch.Tensor:
        """(B,) bool, the learner won the termination."""
        return self.winner == self.learner_seat


def _inputs(policy: AgentPolicy, base: torch.Tensor, game: BatchedGame, rows: torch.Tensor) -> torch.Tensor:
    """Observations of games `rows` from the point of view of the agent to move."""
    final = game.phase[rows] == Phase.FINAL
    return build_observation(
        base[rows], game.owner[rows], game.agent[rows], game.region[rows], final, game.step_fraction()[rows],
        policy.observation, policy.merge_sides,
    )  # fmt: skip


@torch.no_grad()
def play_selfplay_games(
    learner: AgentPolicy,
    opponent: AgentPolicy,
    base: torch.Tensor,
    scores: torch.Tensor,
    region: torch.Tensor | None,
    rules: GameRules,
    generator: torch.Generator | None = None,
    learner_seat: torch.Tensor | None = None,
    allow_termination: bool = True,
) -> Rollout:
    """Play B games to the end, learner against a frozen opponent, both sampling from their policies.

    Args:
        learner, opponent: policies of the same observation mode.
        base: (B, ...) `observation_base` rows of the games' slices.
        scores: (B, G, G) detector scores; region: (B, G, G) bool or None.
        generator: torch generator of the action samples.
        learner_seat: (B,) int64, 0 = the learner is agent a (default everywhere), 1 = agent b.
        allow_termination: False masks TERMINATE out for both agents (the termination warm-up of `selfplay.loop`):
            games then end when the board or `rules.max_turns` runs out.
    """
    # Game state, storage and the learner's inputs all live on the learner's device (CPU or GPU).
    dev = next(learner.parameters()).device
    base = base.to(dev)
    game = BatchedGame(rules, scores.to(dev), None if region is None else region.to(dev))
    n, g = game.batch_size, rules.grid_size
    seat = torch.zeros(n, dtype=torch.int64, device=dev) if learner_seat is None else learner_seat.to(dev, torch.int64)
    steps = rules.turn_limit(single_agent=False) + 2  # each normal pick, TERMINATE, one final pick
    owner = torch.zeros(steps, n, g, g, dtype=torch.int8, device=dev)
    final_phase = torch.zeros(steps, n, dtype=torch.bool, device=dev)
    fraction = torch.zeros(steps, n, device=dev)
    masks = torch.zeros(steps, n, rules.action_count, dtype=torch.bool, device=dev)
    actions = torch.zeros(steps, n, dtype=torch.int64, device=dev)
    logprobs, values, rewards = (torch.zeros(steps, n, device=dev) for _ in range(3))
    dones = torch.zeros(steps, n, dtype=torch.bool, device=dev)
    stored = torch.zeros(n, dtype=torch.int64, device=dev)  # learner steps stored per game
    cols = torch.arange(n, device=dev)
    while True:
        live = ~game.done
        if not bool(live.any()):
            break
        mask = game.action_mask()
        if not allow_termination:
            mask[live, -1] = False  # a live game in play always has a free patch, else it would be over
        step_actions = torch.full((n,), rules.terminate_action, dtype=torch.int64, device=dev)
        learner_turn = game.agent == seat
        for is_learner, policy in ((True, learner), (False, opponent)):
            rows = (live & (learner_turn == is_learner)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            chosen, logprob, _, value = policy.act(_inputs(policy, base, game, rows), mask[rows], generator=generator)
            step_actions[rows] = chosen
            if is_learner:
                t = stored[rows]
                owner[t, rows] = game.owner[rows]
                final_phase[t, rows] = game.phase[rows] == Phase.FINAL
                fraction[t, rows] = game.step_fraction()[rows]
                masks[t, rows], actions[t, rows] = mask[rows], chosen
                logprobs[t, rows], values[t, rows] = logprob, value
                stored[rows] += 1
        reward = game.step(step_actions).gather(1, seat[:, None]).squeeze(1)
        # Rewards arrive after b's reply (turn) or the final picks (termination): credit the learner's latest action.
        last = (stored - 1).clamp(min=0)
        rewards[last, cols] += reward * (stored > 0)
        ended = live & game.done & (stored > 0)
        dones[last[ended], cols[ended]] = True
    length = int(stored.max()) if n else 0
    valid = torch.arange(length, device=dev)[:, None] < stored[None, :]
    return Rollout(
        owner=owner[:length], final_phase=final_phase[:length], step_fraction=fraction[:length],
        action_masks=masks[:length], actions=actions[:length], logprobs=logprobs[:length], values=values[:length],
        rewards=rewards[:length], dones=dones[:length], valid=valid, winner=game.winner.clone(),
        end_reason=game.end_reason.clone(), turns=game.turn.clone(), returns=game.returns.clone(), learner_seat=seat,
    )  # fmt: skip


OPPONENTS = ("none", "self")
"""Who agent a plays against at inference. "none": nobody, agent a alone (RLSP §3.5, what the bundles ship).
"self": the trained policy itself in seat b, deterministic like a, so a plays the two-seat game it was trained on
(turns of two picks, the step fraction of self-play, either seat may terminate); the mask is still a's patches.
Why: alone, a sees boards and step fractions it never met in training (issue 15: it rarely called termination).
The opponent is the final policy because it is the one a bundle ships (`models/model.pt`); a pool snapshot would
need extra weights in every bundle."""


@dataclass
class InferenceGames:
    """How B deterministic inference games (alone or against an opponent) ended: the mask and the bookkeeping."""

    patches: torch.Tensor
    """(B, G, G) bool agent a's play-phase patches (`BatchedGame.segmentation`): the mask."""
    owner: torch.Tensor
    """(B, G, G) int8 final board: 0 free, 1 a's, 2 b's (final picks included)."""
    final_patch: torch.Tensor
    """(B, 2) int64 final pick of a and b, -1 none."""
    terminator: torch.Tensor
    """(B,) int64 who called TERMINATE: 0 a, 1 b, -1 nobody (the board or the step limit ended the game)."""
    end_reason: torch.Tensor
    """(B,) int64 `EndReason`."""


def _inference_actions(
    policy: AgentPolicy,
    obs: torch.Tensor,
    mask: torch.Tensor,
    survival: torch.Tensor,
    deterministic: bool,
    stopping: str,
    generator: torch.Generator | None,
    stop_quantile: float = 0.5,
    scores: torch.Tensor | None = None,
    threshold: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Actions of the agents to move at inference, and their updated `survival` (for the "median" and "quantile"
    rules).

    Args:
        obs, mask: inputs and legal actions of the n games where `policy` moves.
        survival: (n,) P(the sampled policy has not stopped yet) in each game, for the acting seat.
        stop_quantile: the "quantile" rule's quantile of the stopping time ("median": 0.5).
        scores, threshold: (n, G*G) game scores and the ROI threshold of the "threshold" rule.
    """
    if deterministic and stopping == "threshold":
        if scores is None:
            raise ValueError('the "threshold" stopping rule needs the game scores')
        best = masked_log_probs(policy(obs)[0], mask, policy.termination_floor)[:, :-1].argmax(dim=-1)
        found = scores.gather(1, best[:, None])[:, 0] >= threshold
        stop = (mask[:, -1] & ~found) | ~mask[:, :-1].any(dim=1)
        return torch.where(stop, mask.shape[1] - 1, best), survival
    if deterministic and stopping in ("median", "quantile"):
        level = 1.0 - (stop_quantile if stopping == "quantile" else 0.5)
        log_probs = masked_log_probs(policy(obs)[0], mask, policy.termination_floor)
        # P(terminate) is exactly 0 where TERMINATE is illegal (final picks): survival holds there, and a survival
        # already below the level must not call TERMINATE in the final phase.
        survival = survival * (1.0 - log_probs[:, -1].exp())
        stop = (mask[:, -1] & (survival < level)) | ~mask[:, :-1].any(dim=1)
        return torch.where(stop, mask.shape[1] - 1, log_probs[:, :-1].argmax(dim=-1)), survival
    return policy.act(obs, mask, deterministic, generator)[0], survival


@torch.no_grad()
def play_inference_games(
    policy: AgentPolicy,
    images: torch.Tensor | None,
    scores: torch.Tensor | None,
    region: torch.Tensor | None,
    rules: GameRules,
    *,
    opponent: AgentPolicy | None = None,
    features: torch.Tensor | None = None,
    encoder: Encoder | None = None,
    base: torch.Tensor | None = None,
    deterministic: bool = True,
    generator: torch.Generator | None = None,
    batch_size: int = 256,
    stopping: str = "step",
    stop_quantile: float = 0.5,
    stop_level: float = 1.0,
    progress: SliceProgress | None = None,
) -> InferenceGames:
    """Agent a plays every slice, alone (`opponent` None) or against `opponent` in seat b; `play_alone` and
    `play_against` keep only the mask, benchmarks read how the games ended.

    Both seats act by the same rule (`deterministic`, `stopping`), each with its own stopping survival. Arguments
    as `play_alone`; `opponent` must take the same observation base as `policy` (the trained policy itself does).
    """
    check_stopping(stopping, stop_quantile, stop_level)
    if base is None:
        if images is None:
            raise ValueError("play_alone needs images or a precomputed observation base")
        base = observation_base(
            images, policy.observation, policy.grid_size, features=features, encoder=encoder,
            pixels_per_patch=policy.pixels_per_patch,
        )  # fmt: skip
    g = rules.grid_size
    dev = next(policy.parameters()).device  # the game runs where the agent does
    base = base.to(dev)
    scores = torch.zeros(base.shape[0], g, g, device=dev) if scores is None else scores.to(dev)
    region = None if region is None else region.to(dev)
    alone = opponent is None
    parts: list[InferenceGames] = []
    for part in batches(base.shape[0], batch_size, progress, "playing slices"):
        game = BatchedGame(rules, scores[part], None if region is None else region[part], single_agent=alone)
        chunk, flat_scores = base[part], scores[part].flatten(1)
        survival = torch.ones(game.batch_size, 2, device=dev)  # per seat, for the "median" and "quantile" rules
        while True:
            live = ~game.done
            if not bool(live.any()):
                break
            step_actions = torch.full((game.batch_size,), rules.terminate_action, dtype=torch.int64, device=dev)
            mask = game.action_mask()
            # One forward pass over every live game when both seats are the same network (observations are
            # relative to the agent to move), else one per seat.
            if alone or opponent is policy:
                seats = ((policy, live),)
            else:
                seats = ((policy, live & (game.agent == 0)), (opponent, live & (game.agent == 1)))
            for actor, selected in seats:
                rows = selected.nonzero().squeeze(1)
                if rows.numel() == 0:
                    continue
                seat = game.agent[rows]
                step_actions[rows], survival[rows, seat] = _inference_actions(
                    actor, _inputs(actor, chunk, game, rows), mask[rows], survival[rows, seat], deterministic,
                    stopping, generator, stop_quantile, flat_scores[rows], stop_level * rules.roi_threshold,
                )  # fmt: skip
            game.step(step_actions)
        done = InferenceGames(
            patches=game.segmentation(), owner=game.owner.clone(), final_patch=game.final_patch.clone(),
            terminator=game.terminator.clone(), end_reason=game.end_reason.clone(),
        )  # fmt: skip
        parts.append(done)
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=dev)
        return InferenceGames(
            patches=torch.zeros(0, g, g, dtype=torch.bool, device=dev),
            owner=torch.zeros(0, g, g, dtype=torch.int8, device=dev),
            final_patch=torch.zeros(0, 2, dtype=torch.int64, device=dev), terminator=empty, end_reason=empty,
        )  # fmt: skip
    return InferenceGames(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(InferenceGames)))


@torch.no_grad()
def agent_ranking(
    policy: AgentPolicy,
    base: torch.Tensor,
    scores: torch.Tensor | None,
    region: torch.Tensor | None,
    rules: GameRules,
    *,
    stop_quantile: float | None = None,
    stop_threshold: float | None = None,
    min_steps: int = 0,
    batch_size: int = 256,
    progress: SliceProgress | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Agent a alone and deterministic, never calling termination: its picks in order and P(terminate) before each.

    Alone, its picks do not depend on when it stops (the board changes only by its own picks), so this is the
    agent's ranking of each slice's patches, and any stopping rule is a cut of it (``inference.volume_stop``).

    Args:
        base: the observation base of the slices (``agents.inputs.observation_base``).
        stop_quantile: play each batch only until the ``quantile`` rule (``STOPPING_RULES``) would have stopped
            every game in it, and at least ``min_steps``; None plays to the end of the board.
        stop_threshold: the same for the ``threshold`` rule at this score: a game has stopped once a pick scores
            below it (that pick is still recorded: ``volume_stop.threshold_counts`` reads it).

    Returns:
        (B, T) int64 patch indices (-1 where no patch was taken: the board ran out, or the batch stopped) and (B, T)
        float P(terminate) at each step (0 where TERMINATE was not legal), T the single-agent turn limit.
    """
    n, limit = base.shape[0], rules.turn_limit(single_agent=True)
    dev = next(policy.parameters()).device
    base = base.to(dev)
    scores = torch.zeros(n, rules.grid_size, rules.grid_size, device=dev) if scores is None else scores.to(dev)
    region = None if region is None else region.to(dev)
    order = torch.full((n, limit), -1, dtype=torch.int64, device=dev)
    p_stop = torch.zeros(n, limit, device=dev)
    level = None if stop_quantile is None else 1.0 - stop_quantile
    if stop_quantile is not None and stop_threshold is not None:
        raise ValueError("agent_ranking stops by the quantile or the threshold rule, not both")
    bounded = level is not None or stop_threshold is not None
    for part in batches(n, batch_size, progress, "playing slices"):
        game = BatchedGame(rules, scores[part], None if region is None else region[part], single_agent=True)
        chunk = base[part]
        survival = torch.ones(game.batch_size, device=dev)
        stopped = torch.zeros(game.batch_size, dtype=torch.bool, device=dev)
        for t in range(limit):
            live = ~game.done
            if not bool(live.any()) or (bounded and bool(stopped[live].all()) and t >= min_steps):
                break
            mask = game.action_mask()
            rows = live.nonzero().squeeze(1)
            log_probs = masked_log_probs(policy(_inputs(policy, chunk, game, rows))[0], mask[rows],
                                         policy.termination_floor)  # fmt: skip
            free = mask[rows, :-1].any(dim=1)
            rows = rows[free]
            picks = log_probs[free, :-1].argmax(dim=-1)
            stop_p = torch.where(mask[rows, -1], log_probs[free, -1].exp(), 0.0)
            order[part.start + rows, t], p_stop[part.start + rows, t] = picks, stop_p
            if level is not None:
                survival[rows] = survival[rows] * (1.0 - stop_p)
                stopped[rows] |= (survival[rows] < level) & (stop_p > 0)
            if stop_threshold is not None:
                stopped[rows] |= scores[part.start + rows].flatten(1).gather(1, picks[:, None])[:, 0] < stop_threshold
            step_actions = torch.full((game.batch_size,), rules.terminate_action, dtype=torch.int64, device=dev)
            step_actions[rows] = picks
            game.step(step_actions)
    return order.cpu(), p_stop.cpu()


@torch.no_grad()
def play_alone(
    policy: AgentPolicy,
    images: torch.Tensor | None,
    scores: torch.Tensor | None,
    region: torch.Tensor | None,
    rules: GameRules,
    **options: Any,
) -> torch.Tensor:
    """Agent a plays alone until it terminates (RLSP §3.5); returns the (B, G, G) bool patches it took.

    Args:
        policy: the trained agent.
        images: (B, C, H, W) slices (unused when `base` is given).
        scores: (B, G, G) detector scores; they only fill the game's bookkeeping alone, None = zeros.
        region: (B, G, G) bool legal region or None.
        features, encoder: for "features" policies, as in `agents.inputs.observation_base`.
        base: precomputed `observation_base` of the slices (validation reuses it).
        deterministic: the most likely patch at each step (inference); False samples with `generator`.
        batch_size: games played at once, to bound memory on large volumes.
        stopping: when a deterministic agent calls termination (see `STOPPING_RULES`).
        stop_quantile: the "quantile" rule's quantile of the agent's stopping time.
        stop_level: the "threshold" rule's level, a fraction of the game's ROI threshold.
        progress: told after each batch of games (``"playing slices"``, one game per slice).

    The keywords above go to `play_inference_games` (defaults: batch_size 256, stopping "step").
    """
    if "opponent" in options:
        raise TypeError("play_alone plays without an opponent: use play_against")
    return play_inference_games(policy, images, scores, region, rules, **options).patches


@torch.no_grad()
def play_against(
    policy: AgentPolicy,
    images: torch.Tensor | None,
    scores: torch.Tensor | None,
    region: torch.Tensor | None,
    rules: GameRules,
    *,
    opponent: AgentPolicy | None = None,
    **options: Any,
) -> torch.Tensor:
    """Agent a plays the self-play game against a fixed `opponent` in seat b (default: `policy` itself, `OPPONENTS`
    "self"); returns the (B, G, G) bool patches a took in the play phase.

    The mask is a's normal picks up to the termination, whoever called it. a's final pick is left out, as
    `BatchedGame.segmentation` leaves it out: after a's own termination it is a probe whose content decides nothing
    for a (the terminator's fate rests on b's final pick), and after b's termination it is a's bet that ROI is left,
    one patch past the point where the game says the ROI was taken. b's patches are not a's mask either: b is the
    opponent a competes with for ROI patches, so a's mask covers a's share of the ROI, not all of it.

    Arguments as `play_alone` (``options``: its keyword arguments), plus `opponent` (same observation base as
    `policy`). `scores` fill only the game's bookkeeping (who won the termination), not the mask.
    """
    opponent = policy if opponent is None else opponent
    return play_inference_games(policy, images, scores, region, rules, opponent=opponent, **options).patches
