"""Prioritised fictitious self-play training of the RLSP agents with PPO, in the shape of CleanRL `ppo.py`.

Setup (seed, data, networks, resume), then `for iteration`: pick an opponent from the pool, play a batch of games
(learner = agent a, frozen opponent = agent b), compute GAE returns, PPO-update the learner on its own transitions,
snapshot into the pool, log, checkpoint. Validation: agent a plays alone on held-out slices; its patches are the mask.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.utils import set_determinism

from medwss.agents.encoders import RandomConvEncoder, encoder_config
from medwss.agents.inputs import Encoder, build_observation, observation_base
from medwss.agents.policy import AgentPolicy
from medwss.agents.ppo import (
    PPOSettings,
    approx_kl,
    clip_fraction,
    compute_returns,
    entropy_bonus,
    normalize_advantages,
    policy_loss,
    value_loss,
)
from medwss.errors import MedwssError
from medwss.game.record import EndReason
from medwss.game.rules import GameRules
from medwss.runtime import distributed
from medwss.runtime.checkpoint import (
    FINAL,
    LATEST,
    check_provenance,
    fingerprint,
    load_checkpoint,
    provenance,
    resume_point,
    save_checkpoint,
)
from medwss.runtime.metric_log import MetricLog
from medwss.runtime.progress import ProgressTask
from medwss.runtime.seeding import named_generator, restore_rng_states, rng_states
from medwss.selfplay.baselines import patch_mask_dice
from medwss.selfplay.pool import LEARNER, OpponentPool, sample_opponent_index
from medwss.selfplay.rollout import Rollout, play_alone, play_selfplay_games
from medwss.selfplay.settings import RESUMABLE_CHANGES, SelfPlaySettings, section_of
from medwss.viz.curves import plot_progress

__all__ = ["SelfPlayData", "SelfPlaySettings", "train_selfplay", "play_alone", "validation_dice", "ppo_update"]

logger = logging.getLogger(__name__)


@dataclass
class SelfPlayData:
    """Training and validation slices with their cached detector patch scores (no detector needed here)."""

    images: torch.Tensor
    """(N, C, H, W) float training slices."""
    scores: torch.Tensor
    """(N, G, G) detector patch scores in [0, 1]."""
    region: torch.Tensor | None
    """(N, G, G) bool legal patches, or None for all."""
    val_images: torch.Tensor
    """(M, C, H, W) validation slices."""
    val_scores: torch.Tensor
    """(M, G, G) validation patch scores (the game needs them; agent a alone never sees them)."""
    val_region: torch.Tensor | None
    """(M, G, G) bool or None."""
    val_masks: torch.Tensor
    """(M, H, W) bool reference masks, for the validation mask Dice."""
    features: torch.Tensor | None = None
    """(N, F, G, G) precomputed encoder features for the "features" observation (else an encoder computes them)."""
    val_features: torch.Tensor | None = None
    """(M, F, G, G) validation features."""

    def __post_init__(self) -> None:
        n, m = self.images.shape[0], self.val_images.shape[0]
        g = self.scores.shape[-1]
        checks = {
            "images": (self.images.dim() == 4 and n > 0, "(N, C, H, W) with N > 0"),
            "scores": (tuple(self.scores.shape) == (n, g, g), f"(N, G, G) = ({n}, G, G)"),
            "region": (self.region is None or tuple(self.region.shape) == (n, g, g), f"({n}, {g}, {g}) or None"),
            "val_scores": (tuple(self.val_scores.shape) == (m, g, g), f"({m}, {g}, {g})"),
            "val_region": (self.val_region is None or tuple(self.val_region.shape) == (m, g, g), "(M, G, G)"),
            "val_masks": (tuple(self.val_masks.shape) == (m, *self.val_images.shape[-2:]), "(M, H, W)"),
        }
        for name, (ok, expected) in checks.items():
            if not ok:
                raise ValueError(f"SelfPlayData.{name} must be {expected}")


# ================================================================================================= ALGORITHM: update
def ppo_update(
    policy: AgentPolicy,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    base: torch.Tensor,
    region: torch.Tensor,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    ppo: PPOSettings,
    rng: np.random.Generator,
) -> dict[str, float]:
    """PPO epochs over the learner's valid transitions; inputs are rebuilt per minibatch from the stored state.

    Under torchrun each rank holds its own games' transitions: the ranks agree on the number of minibatches (the
    most any rank needs; a rank with fewer takes empty steps) and average their gradients before each clip and
    step, so every rank applies the same update and the learner stays identical everywhere.
    """
    b_t, b_game = rollout.valid.nonzero(as_tuple=True)
    totals = {"policy": 0.0, "value": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
    updates = 0
    here = distributed.world()
    device = next(policy.parameters()).device
    needed = torch.tensor(float(-(-len(b_t) // ppo.minibatch_size)), device=device)
    steps_per_epoch = int(distributed.all_reduce(needed, "max"))
    for _ in range(ppo.update_epochs):
        order = torch.from_numpy(rng.permutation(len(b_t))).to(b_t.device)
        minibatches = list(order.split(ppo.minibatch_size))
        minibatches += [order[:0]] * (steps_per_epoch - len(minibatches))
        for mb_inds in minibatches:
            if len(mb_inds) == 0:  # this rank has no transition left this epoch: a zero gradient keeps it in step
                optimizer.zero_grad()
                distributed.average_gradients(policy)
                torch.nn.utils.clip_grad_norm_(policy.parameters(), ppo.max_grad_norm)
                optimizer.step()
                continue
            t, game = b_t[mb_inds], b_game[mb_inds]
            obs = build_observation(
                base[game], rollout.owner[t, game], rollout.learner_seat[game], region[game],
                rollout.final_phase[t, game], rollout.step_fraction[t, game], policy.observation, policy.merge_sides,
            )  # fmt: skip
            mb_masks, mb_actions = rollout.action_masks[t, game], rollout.actions[t, game]
            newlogprob, entropy, newvalue = policy.evaluate(obs, mb_masks, mb_actions)
            old = rollout.logprobs[t, game]
            pg_loss = policy_loss(newlogprob, old, normalize_advantages(advantages[t, game]), ppo.clip)
            v_clip = ppo.clip if ppo.clip_value else None
            v_loss = value_loss(newvalue, returns[t, game], rollout.values[t, game], v_clip)
            loss = pg_loss + entropy_bonus(entropy, ppo.ent_coef) + ppo.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            distributed.average_gradients(policy)
            torch.nn.utils.clip_grad_norm_(policy.parameters(), ppo.max_grad_norm)
            optimizer.step()
            with torch.no_grad():
                kl, clipped = approx_kl(newlogprob, old), clip_fraction(newlogprob, old, ppo.clip)
                stats = (pg_loss.detach(), v_loss.detach(), entropy.detach().mean(), kl, clipped)
            for key, value in zip(totals, stats, strict=True):
                totals[key] += float(value)
            updates += 1
    if here.distributed:  # the mean over every rank's minibatches, for the log
        stats = torch.tensor([*totals.values(), float(updates)], dtype=torch.float64, device=device)
        summed = distributed.all_reduce(stats)
        totals, updates = dict(zip(totals, summed[:-1].tolist(), strict=True)), int(summed[-1])
    return {key: value / max(updates, 1) for key, value in totals.items()} | {"updates": float(updates)}


def validation_dice(
    policy: AgentPolicy, data: SelfPlayData, rules: GameRules, base: torch.Tensor
) -> tuple[float, torch.Tensor]:
    """Mean 2D mask Dice of agent a playing alone, deterministically, on the validation slices; and its patches."""
    patches = play_alone(policy, None, data.val_scores, data.val_region, rules, base=base).cpu()
    return float(patch_mask_dice(patches, data.val_masks).mean()), patches


def train_selfplay(
    data: SelfPlayData,
    rules: GameRules,
    settings: SelfPlaySettings,
    run_dir: str | Path,
    *,
    restart: bool = False,
    task: ProgressTask | None = None,
    encoder: Encoder | None = None,
    device: torch.device | str = "cpu",
) -> AgentPolicy:
    """Train agent a by prioritised fictitious self-play; returns the final learner (also in checkpoint_final.pt).

    Args:
        data: slices, cached detector scores and validation masks.
        rules: the game rules (grid size must match the scores).
        settings: run, PPO, pool and policy settings (`selfplay.settings`).
        run_dir: run folder: checkpoints, metrics.jsonl, progress.png.
        restart: start over instead of resuming from the run folder's latest checkpoint.
        task: progress callbacks (one advance per iteration).
        encoder: frozen image encoder for the "features" observation when data.features is None; default a
            seeded `RandomConvEncoder`.
        device: where the policies, games and PPO updates run (the data is moved there once).

    Under torchrun (a process group is set up) each rank plays its share of ``games_per_iteration`` with its own
    seed (`distributed.rank_seed`) against the same opponent, gradients are averaged over ranks, and rank 0 alone
    writes metrics, checkpoints and the plot; a run is reproducible for a given world size.

    Raises:
        MedwssError: the run folder's checkpoint was made with other rules or settings (use restart).
    """
    # ============================================================================================ PLUMBING: setup
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    task = task or ProgressTask()
    g = rules.grid_size
    if data.scores.shape[-1] != g:
        raise ValueError(f"scores are on a {data.scores.shape[-1]}-grid, the rules on a {g}-grid")
    here = distributed.world()
    device = torch.device(device)
    ppo, pool_settings, policy_settings = settings.ppo, settings.pool, settings.policy
    set_determinism(settings.seed)
    # The opponent draw is shared (same seed on every rank: all ranks play the same snapshot); the games' slices,
    # minibatch order and action samples are each rank's own.
    own_seed = distributed.rank_seed(settings.seed, here.rank)
    rngs = {name: named_generator(own_seed, name) for name in ("slices", "minibatch")}
    rngs["opponent"] = named_generator(settings.seed, "opponent")
    action_gen = torch.Generator(device=device).manual_seed(own_seed)
    games_here = len(distributed.split_for_rank(range(settings.games_per_iteration), here.rank, here.size))
    first_game = here.rank * settings.games_per_iteration // here.size  # seats alternate over the global games
    if games_here < 1:
        raise MedwssError("selfplay#training#games_per_iteration", f"must be >= the {here.size} processes")
    observation = policy_settings.observation
    if observation == "features" and data.features is None and encoder is None:
        encoder = RandomConvEncoder(data.images.shape[1], g, seed=settings.seed)
    base_args = {"encoder": encoder, "pixels_per_patch": policy_settings.pixels_per_patch}
    base = observation_base(data.images, observation, g, features=data.features, **base_args)
    val_base = observation_base(data.val_images, observation, g, features=data.val_features, **base_args)
    region = data.region if data.region is not None else torch.ones(len(base), g, g, dtype=torch.bool)
    base, val_base, region, scores = base.to(device), val_base.to(device), region.to(device), data.scores.to(device)
    policy_config = policy_settings.network_config(g, int(base.shape[1]))  # saved with the weights, rebuilds them
    policy = AgentPolicy(**policy_config).to(device)
    opponent = AgentPolicy(**policy_config).requires_grad_(False).to(device)
    optimizer = torch.optim.Adam(policy.parameters(), lr=ppo.learning_rate, eps=1e-5)
    pool = OpponentPool(pool_settings.pool_size, pool_settings.snapshot_every)
    metric_log = MetricLog(run_dir / "metrics.jsonl")
    start_iteration, global_step = 0, 0
    made_from = provenance(
        fingerprint(data.images, data.scores, data.region, data.val_images, data.val_scores, data.val_region,
                    data.val_masks, data.features, data.val_features),
        settings.flat(), settings.seed,
    )  # fmt: skip
    checkpoint = resume_point(run_dir, restart)
    if checkpoint is not None:
        state = load_checkpoint(checkpoint)
        check_provenance(checkpoint, state, made_from, resumable=RESUMABLE_CHANGES)
        _check_resumable(checkpoint, state, rules, settings)
        policy.load_state_dict(state["policy"])
        optimizer.load_state_dict(state["optimizer"])
        pool.load_state_dict(state["pool"])
        start_iteration, global_step = int(state["iteration"]), int(state["global_step"])
        rank_states = state.get("rng_by_rank") or [state["rng"]]
        if len(rank_states) != here.size:
            raise MedwssError(checkpoint, f"the checkpoint was made by {len(rank_states)} process(es), this run has "
                              f"{here.size}: resume with the same number, or pass restart")  # fmt: skip
        restore_rng_states(rank_states[here.rank], rngs)
        action_gen.set_state(rank_states[here.rank]["actions"])
        if here.is_main:
            metric_log.reset()
            for record in state["metrics"]:
                metric_log.log(record["step"], **{k: v for k, v in record.items() if k != "step"})
        logger.info("resumed %s at iteration %d", checkpoint, start_iteration)
        distributed.barrier()  # every rank has read the checkpoint before rank 0 may move it
        if here.is_main and checkpoint.name == FINAL and start_iteration < settings.num_iterations:
            os.replace(checkpoint, run_dir / LATEST)  # a finished run is extended: its final state is now the latest
    else:
        if here.is_main:
            metric_log.reset()
        pool.add(policy.state_dict(), 0)  # the untrained policy is the first opponent

    def save(name: str, iteration: int) -> None:
        states = distributed.gather_objects(rng_states(rngs) | {"actions": action_gen.get_state()})  # every rank
        if not here.is_main:
            return
        save_checkpoint({
            "policy": policy.state_dict(), "policy_config": policy_config, "optimizer": optimizer.state_dict(),
            "iteration": iteration, "global_step": global_step, "pool": pool.state_dict(),
            "metrics": metric_log.records(), "settings": settings.to_config(),
            "rules": dataclasses.asdict(rules), "encoder": None if encoder is None else encoder_config(encoder),
            "rng": states[0], "rng_by_rank": states, "world_size": here.size, "provenance": made_from,
        }, run_dir / name)  # fmt: skip
        plot_progress(metric_log.records(), run_dir / "progress.png", title="self-play")

    warmup_rules = dataclasses.replace(rules, max_turns=min(settings.warmup_turns, rules.turn_limit()))
    task.describe("self-play: iteration")
    task.set_total(settings.num_iterations)
    task.skip(start_iteration)
    iteration, last_dice = start_iteration, None
    for iteration in range(start_iteration + 1, settings.num_iterations + 1):
        started = time.perf_counter()
        lr = ppo.learning_rate
        if ppo.anneal_lr:
            lr *= 1.0 - (iteration - 1.0) / settings.num_iterations
        for group in optimizer.param_groups:
            group["lr"] = lr

        # ================================================================================ ALGORITHM: pick opponent
        sampling = pool_settings.opponent_sampling
        opponent_index = sample_opponent_index(
            len(pool), sampling, rngs["opponent"], pool_settings.mean_fraction, pool_settings.std_fraction
        )
        opponent.load_state_dict(policy.state_dict() if opponent_index == LEARNER else pool.snapshot(opponent_index))

        # ========================================================================================= ALGORITHM: play
        task.describe("self-play (playing): iteration")
        games = torch.from_numpy(rngs["slices"].integers(0, len(base), size=games_here)).to(device)
        games_base, games_region = base[games], region[games]
        seats = (torch.arange(len(games), device=device) + first_game) % 2
        seats = seats if pool_settings.learner_seats == "both" else torch.zeros_like(games)
        warmup = iteration <= settings.termination_warmup
        rollout = play_selfplay_games(
            policy, opponent, games_base, scores[games], games_region, warmup_rules if warmup else rules,
            action_gen, seats, allow_termination=not warmup,
        )  # fmt: skip

        # ====================================================================================== ALGORITHM: returns
        advantages, returns = compute_returns(
            rollout.rewards * ppo.reward_scale, rollout.values, rollout.dones, rollout.valid, ppo.gamma,
            ppo.gae_lambda,
        )  # fmt: skip

        # ======================================================================================= ALGORITHM: update
        task.describe("self-play (updating): iteration")
        losses = ppo_update(
            policy, optimizer, rollout, games_base, games_region, advantages, returns, ppo, rngs["minibatch"]
        )
        global_step += int(distributed.all_reduce(rollout.valid.sum()))
        pool.maybe_add(policy, iteration)

        # ============================================================================================ PLUMBING: log
        scalars: dict[str, Any] = {
            "losses/policy": losses["policy"], "losses/value": losses["value"], "losses/entropy": losses["entropy"],
            "losses/approx_kl": losses["approx_kl"], "losses/clipfrac": losses["clipfrac"],
            "charts/learning_rate": lr, "charts/global_step": global_step,
            "charts/updates_per_s": losses["updates"] / max(time.perf_counter() - started, 1e-9),
            "game/win_rate": distributed.all_reduce(rollout.learner_won.float().mean(), "mean"),
            "game/reward": distributed.all_reduce(rollout.learner_returns.float().mean(), "mean"),
            "game/episode_length": distributed.all_reduce(rollout.turns.float().mean(), "mean"),
            "game/terminations": distributed.all_reduce(
                (rollout.end_reason == EndReason.TERMINATED).float().mean(), "mean"
            ),
            "pool/size": len(pool), "pool/opponent_index": opponent_index,
        }  # fmt: skip
        if here.is_main and (iteration % settings.eval_every == 0 or iteration == settings.num_iterations):
            task.describe("self-play (validating): iteration")
            scalars["val/dice"] = validation_dice(policy, data, rules, val_base)[0]
            logger.info("iteration %d: val/dice %.4f win_rate %.3f", iteration, scalars["val/dice"],
                        float(scalars["game/win_rate"]))  # fmt: skip
        scalars["charts/iteration_s"] = time.perf_counter() - started
        if here.is_main:
            metric_log.log(iteration, **scalars)

        # ===================================================================================== PLUMBING: checkpoint
        if iteration % settings.checkpoint_every == 0:
            save(LATEST, iteration)
        task.describe("self-play: iteration")
        last_dice = scalars.get("val/dice", last_dice)
        task.status(iteration_status(scalars, last_dice))
        task.advance(1)

    if checkpoint is None or checkpoint.name != FINAL or iteration > start_iteration:
        save(FINAL, iteration)
    return policy


def iteration_status(scalars: dict[str, Any], dice: Any = None) -> str:
    """What a person watches during self-play: ``loss 0.123, win rate 0.50, val Dice 0.412`` (``dice``: the latest
    validation, which runs every ``eval_every`` iterations)."""
    loss = float(scalars["losses/policy"]) + float(scalars["losses/value"])
    parts = [f"loss {loss:.3f}", f"win rate {float(scalars['game/win_rate']):.2f}"]
    if dice is not None:
        parts.append(f"val Dice {float(dice):.3f}")
    return ", ".join(parts)


def _check_resumable(path: Path, state: dict[str, Any], rules: GameRules, settings: SelfPlaySettings) -> None:
    """Refuse to continue a run under other rules or learning settings: the result would match neither.

    Settings are compared by field name (`SelfPlaySettings.flat`), so a checkpoint that stored the sections and one
    made before the split (one flat mapping) are read alike, and a change is named with its section.
    """
    if state["rules"] != dataclasses.asdict(rules):
        raise MedwssError(path, "the checkpoint was made with other game rules; pass --restart to start over")
    stored: dict[str, Any] = {}
    for key, value in state["settings"].items():
        stored |= value if isinstance(value, dict) else {key: value}
    ours = settings.flat()
    changed = sorted(
        f"{section_of(k)}.{k}" if section_of(k) else k for k in set(ours) | set(stored)
        if ours.get(k) != stored.get(k) and k not in RESUMABLE_CHANGES
    )  # fmt: skip
    if changed:
        raise MedwssError(path, f"the checkpoint was made with other settings ({', '.join(changed)}); pass --restart")
