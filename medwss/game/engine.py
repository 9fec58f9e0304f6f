"""The RLSP patch game for B slices at once, as tensor ops on any device (no Python loop over games).

Order of play (agent-environment cycle, RLSP §3.2): in each turn agent a (0) picks a free patch, then agent b (1)
picks one seeing a's patch taken; after b's pick the turn is scored. In the play phase either agent may choose
TERMINATE (action G*G) instead of a patch (RLSP §3.3):

- a terminates: b plays no normal patch that turn. Final phase: a picks one final patch, then b.
- b terminates after a's normal pick: a's pick stays taken but no turn reward is paid (b picked nothing to
  compare with). Final phase: a picks one final patch, then b.
- The termination is decided by the opponent's (non-terminator's) final patch: score >= roi_threshold means an
  ROI patch was left, the terminator gets -R and the opponent +R; otherwise the terminator +R, the opponent -R.
  An agent with no free legal patch left skips its final pick; if that is the opponent, the terminator wins.

The game also ends, with no termination reward, when no free legal patch is left in the play phase (EXHAUSTED;
a pick of a that empties the board is not scored) or after `rules.turn_limit()` turns (STEP_LIMIT, a truncation).
In single-agent mode (inference, threshold baseline) agent a picks alone until it terminates or runs out; every
pick is a turn, there is no final phase and no reward.
"""

from __future__ import annotations

import torch

from medwss.game.observation import ObservationMode, build_observation
from medwss.game.record import EndReason, GameRecord, Move, Phase
from medwss.game.rules import GameRules


class BatchedGame:
    """B games over precomputed detector scores; state tensors live on the device of `scores`.

    Public state (read it, do not write it): `agent` (B,) int64 whose move it is, `phase` (B,) int64 `Phase`,
    `turn` (B,) int64 completed turns, `terminator` (B,) int64 (-1 none), `final_patch` (B, 2) int64 (-1 none),
    `winner` (B,) int64 (-1 none), `end_reason` (B,) int64 `EndReason`, `returns` (B, 2) float32 rewards so far.

    Args:
        rules: the game rules; `rules.grid_size` must match the scores.
        scores: (B, G, G) detector scores in [0, 1], one per patch.
        region: optional (B, G, G) bool; patches outside (organ prior, outside the body) can never be taken.
        single_agent: agent a plays alone (inference, threshold baseline).
        record: keep a per-step log so `record(i)` can replay game i; off for training rollouts (the log grows
            until the next full reset).
    """

    def __init__(
        self,
        rules: GameRules,
        scores: torch.Tensor,
        region: torch.Tensor | None = None,
        *,
        single_agent: bool = False,
        record: bool = False,
    ) -> None:
        self.rules = rules
        self.single_agent = single_agent
        self.recording = record
        if scores.dim() != 3:
            raise ValueError(f"scores must be (B, G, G), got shape {tuple(scores.shape)}")
        self.batch_size = int(scores.shape[0])
        self.device = scores.device
        self._n = rules.num_patches
        self._limit = rules.turn_limit(single_agent)
        self._all = torch.ones(self.batch_size, dtype=torch.bool, device=self.device)
        self.reset(scores, region)

    # ----------------------------------------------------------------------------------------------- state
    def reset(
        self, scores: torch.Tensor, region: torch.Tensor | None = None, games: torch.Tensor | None = None
    ) -> None:
        """Start new games: all of them, or only those where `games` (B,) bool is True (auto-reset in rollouts).

        Args:
            scores: (B, G, G) for a full reset, (k, G, G) with k = games.sum() for a partial one.
            region: same leading size as scores, bool; None = every patch legal.
            games: (B,) bool, which games restart; None = all.

        Raises:
            ValueError: on shapes, dtypes or scores outside [0, 1]; a game whose region is empty starts DONE.
        """
        g = self.rules.grid_size
        if games is not None and (games.shape != (self.batch_size,) or games.dtype != torch.bool):
            raise ValueError(f"games must be a bool tensor of shape {(self.batch_size,)}, got {tuple(games.shape)}")
        k = self.batch_size if games is None else int(games.sum())
        if scores.shape != (k, g, g) or not scores.is_floating_point():
            raise ValueError(f"scores must be a float tensor of shape {(k, g, g)}, got {tuple(scores.shape)}")
        if not bool(((scores >= 0) & (scores <= 1)).all()):
            raise ValueError("scores must lie in [0, 1] (detector probabilities)")
        if region is None:
            region = torch.ones(k, g, g, dtype=torch.bool, device=self.device)
        if region.shape != (k, g, g) or region.dtype != torch.bool:
            raise ValueError(
                f"region must be a bool tensor of shape {(k, g, g)}, got {region.dtype} {tuple(region.shape)}"
            )
        flat_scores = scores.to(self.device, torch.float32).reshape(k, self._n)
        flat_region = region.to(self.device).reshape(k, self._n)
        if games is None:
            games = self._all
            self._scores, self._region = flat_scores.clone(), flat_region.clone()
            # One (B, G*G + 1) buffer: free legal patches, then TERMINATE; `_free` is a view of its patch part.
            self._mask = torch.ones(k, self._n + 1, dtype=torch.bool, device=self.device)
            self._free = self._mask[:, : self._n]
            self._free.copy_(flat_region)
            self._owner = torch.zeros(k, self._n, dtype=torch.int8, device=self.device)
            self._log: list[tuple[torch.Tensor, ...]] = []
            self._episode_start = torch.zeros(k, dtype=torch.int64, device=self.device)
        else:
            self._scores[games], self._region[games], self._free[games] = flat_scores, flat_region, flat_region
            self._owner[games] = 0
            self._episode_start = torch.where(games, len(self._log), self._episode_start)
        zeros = torch.zeros(self.batch_size, dtype=torch.int64, device=self.device)
        self._n_free = torch.where(games, self._free.sum(1), getattr(self, "_n_free", zeros))
        fresh = {"agent": 0, "turn": 0, "terminator": -1, "winner": -1, "_pending": -1}
        for name, value in fresh.items():
            setattr(self, name, torch.where(games, value, getattr(self, name, zeros)))
        empty = self._n_free == 0
        self.phase = torch.where(games, torch.where(empty, Phase.DONE, Phase.PLAY), getattr(self, "phase", zeros))
        self.end_reason = torch.where(
            games, torch.where(empty, EndReason.EXHAUSTED, EndReason.NOT_ENDED), getattr(self, "end_reason", zeros)
        )
        self.final_patch = torch.where(games[:, None], -1, getattr(self, "final_patch", zeros[:, None].expand(-1, 2)))
        rzeros = torch.zeros(self.batch_size, 2, dtype=torch.float32, device=self.device)
        self.returns = torch.where(games[:, None], 0.0, getattr(self, "returns", rzeros))
        self._pending_rewards = torch.where(games[:, None], 0.0, getattr(self, "_pending_rewards", rzeros))
        self._mask[:, self._n] = self.phase != Phase.FINAL

    @property
    def scores(self) -> torch.Tensor:
        """(B, G, G) float32 detector scores (a view)."""
        return self._scores.view(-1, self.rules.grid_size, self.rules.grid_size)

    @property
    def region(self) -> torch.Tensor:
        """(B, G, G) bool legal region (a view)."""
        return self._region.view(-1, self.rules.grid_size, self.rules.grid_size)

    @property
    def owner(self) -> torch.Tensor:
        """(B, G, G) int8: 0 free, 1 taken by a, 2 taken by b (final picks included; a view)."""
        return self._owner.view(-1, self.rules.grid_size, self.rules.grid_size)

    @property
    def free_count(self) -> torch.Tensor:
        """(B,) int64 free patches left in the legal region."""
        return self._n_free

    @property
    def done(self) -> torch.Tensor:
        """(B,) bool, games that are over."""
        return self.phase == Phase.DONE

    @property
    def truncated(self) -> torch.Tensor:
        """(B,) bool, games stopped by the step limit rather than ended by the rules."""
        return self.end_reason == EndReason.STEP_LIMIT

    def segmentation(self) -> torch.Tensor:
        """(B, G, G) bool patches agent a took in the play phase: the mask at inference (RLSP §3.5)."""
        mine = self._owner == 1
        final_a = self.final_patch[:, 0]
        rows, col = torch.arange(self.batch_size, device=self.device), final_a.clamp(min=0)
        mine[rows, col] = mine[rows, col] & (final_a < 0)  # a's final pick is a probe, not part of its mask
        return mine.view(-1, self.rules.grid_size, self.rules.grid_size)

    def action_mask(self) -> torch.Tensor:
        """(B, G*G + 1) bool legal actions of the current agent: free patches in the region, plus TERMINATE in play.

        Done games get only TERMINATE set, so a masked softmax stays finite; their actions are ignored anyway.
        """
        return self._mask.clone()

    def step_fraction(self) -> torch.Tensor:
        """(B,) turn / turns of a self-play game, in [0, 1]; alone, a turn is one pick of a, so it reads the same."""
        return (self.turn.float() / self.rules.turn_limit(single_agent=False)).clamp(max=1.0)

    def observation(
        self,
        base: torch.Tensor | None = None,
        agent: torch.Tensor | None = None,
        mode: ObservationMode = "pixels",
        merge_sides: bool = False,
    ) -> torch.Tensor:
        """Policy input of every game for `agent` (default: the one to move), by `game.observation.build_observation`,
        the builder self-play trains on: (B, K + STATE_PLANES, ., .), or the state planes (B, STATE_PLANES, G, G)
        without `base`.

        Args:
            base: (B, K, ., .) what the agent sees of each slice: "pixels" images or "features" at G x G.
            mode, merge_sides: as the policy was trained (`AgentPolicy.observation`, `.merge_sides`).
        """
        who = self.agent if agent is None else agent
        if base is None:
            g = self.rules.grid_size
            base = torch.zeros(self.batch_size, 0, g, g, device=self.device)
        return build_observation(
            base, self.owner, who, self.region, self.phase == Phase.FINAL, self.step_fraction(), mode, merge_sides
        )

    def take_rewards(self) -> torch.Tensor:
        """(B, 2) float32 rewards of a and b since the previous call (or reset); clears them."""
        rewards, self._pending_rewards = self._pending_rewards, torch.zeros_like(self._pending_rewards)
        return rewards

    # ------------------------------------------------------------------------------------------------ step
    def step(self, actions: torch.Tensor) -> torch.Tensor:
        """Apply one action of the current agent in every game; returns this step's (B, 2) float32 rewards.

        Args:
            actions: (B,) integer, a patch index (row * G + col) or G*G for TERMINATE; ignored for done games.

        Raises:
            ValueError: an action of a live game is not legal (policies must use `action_mask`).
        """
        n = self._n
        actions = torch.as_tensor(actions, device=self.device).to(torch.int64).reshape(-1)
        if actions.shape[0] != self.batch_size:
            raise ValueError(f"expected {self.batch_size} actions, got {actions.shape[0]}")
        live = self.phase != Phase.DONE
        play, final = self.phase == Phase.PLAY, self.phase == Phase.FINAL
        term = actions == n
        idx = actions.clamp(0, n - 1)[:, None]
        legal = (actions >= 0) & torch.where(term, play, (actions < n) & self._free.gather(1, idx).squeeze(1))
        if not bool((legal | ~live).all()):
            bad = int((~legal & live).nonzero()[0, 0])
            raise ValueError(f"illegal action {int(actions[bad])} in game {bad} ({Phase(int(self.phase[bad])).name})")

        picks = live & ~term
        agent = self.agent
        self._free.scatter_(1, idx, self._free.gather(1, idx) & ~picks[:, None])
        self._owner.scatter_(
            1, idx, torch.where(picks[:, None], (agent[:, None] + 1).to(torch.int8), self._owner.gather(1, idx))
        )
        self._n_free = self._n_free - picks.long()
        score = self._scores.gather(1, idx).squeeze(1)
        if self.recording:
            self._log.append((live, self.phase, agent, actions.clone(), score))
        rewards = torch.zeros(self.batch_size, 2, dtype=torch.float32, device=self.device)
        p_pick, p_term, f_pick = play & picks, play & term, final & picks
        out_of_patches = self._n_free == 0

        if self.single_agent:
            self.turn = self.turn + p_pick.long()
            exhausted = p_pick & out_of_patches
            limit = p_pick & ~exhausted & (self.turn >= self._limit)
            self.terminator = torch.where(p_term, 0, self.terminator)
            self._finish(p_term, exhausted, limit, p_term)
            return rewards

        is_a = agent == 0
        a_pick, b_pick = p_pick & is_a, p_pick & ~is_a
        # The turn is scored after b's pick: a's patch (still pending) against b's (RLSP §3.2).
        score_a = self._scores.gather(1, self._pending.clamp(min=0)[:, None]).squeeze(1)
        rewards += torch.stack(self._turn_rewards(score_a, score), dim=1) * b_pick[:, None]
        self.turn = self.turn + b_pick.long()
        self._pending = torch.where(a_pick, actions, torch.where(b_pick | p_term, -1, self._pending))
        exhausted = p_pick & out_of_patches
        limit = b_pick & ~exhausted & (self.turn >= self._limit)
        self.agent = torch.where(a_pick, 1, torch.where(b_pick | p_term, 0, agent))
        decided = torch.zeros_like(picks)
        if bool((p_term | f_pick).any()):  # most steps of most games have no termination to handle
            decided = self._termination(actions, agent, p_term, f_pick, out_of_patches, rewards)
        self._finish(decided, exhausted, limit, p_term)
        self.returns = self.returns + rewards
        self._pending_rewards = self._pending_rewards + rewards
        return rewards

    def _termination(
        self,
        actions: torch.Tensor,
        agent: torch.Tensor,
        p_term: torch.Tensor,
        f_pick: torch.Tensor,
        out_of_patches: torch.Tensor,
        rewards: torch.Tensor,
    ) -> torch.Tensor:
        """TERMINATE calls and final picks (RLSP §3.3): adds termination rewards, returns the games now decided."""
        rules = self.rules
        self.terminator = torch.where(p_term, agent, self.terminator)
        self.phase = torch.where(p_term, Phase.FINAL, self.phase)
        # Final picks: a first, then b; b is skipped when nothing is left after a's pick.
        final_a, final_b = f_pick & (agent == 0), f_pick & (agent == 1)
        self.final_patch = torch.where(torch.stack([final_a, final_b], dim=1), actions[:, None], self.final_patch)
        self.agent = torch.where(final_a, 1, self.agent)
        decided = final_b | (final_a & out_of_patches)
        opponent = (1 - self.terminator).clamp(0, 1)
        opp_patch = self.final_patch.gather(1, opponent[:, None]).squeeze(1)
        opp_score = self._scores.gather(1, opp_patch.clamp(min=0)[:, None]).squeeze(1)
        winner = torch.where((opp_patch >= 0) & (opp_score >= rules.roi_threshold), opponent, self.terminator)
        self.winner = torch.where(decided, winner, self.winner)
        if rules.use_termination_reward:
            reward_a = torch.where(winner == 0, rules.termination_reward, -rules.termination_reward) * decided
            rewards += torch.stack([reward_a, -reward_a], dim=1)
        return decided

    def _turn_rewards(self, score_a: torch.Tensor, score_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rewards of a and b for one scored turn under `rules.turn_reward_mode` (RLSP §3.2, §5 ablation)."""
        r, mode = self.rules.turn_reward, self.rules.turn_reward_mode
        if mode == "none":
            zero = torch.zeros_like(score_a)
            return zero, zero
        if mode == "sign":
            reward_a = torch.where(score_a > score_b, r, -r)
        else:
            reward_a = r * (score_a - score_b)
        tie = score_a == score_b
        return torch.where(tie, self.rules.tie_reward, reward_a), torch.where(tie, self.rules.tie_reward, -reward_a)

    def _finish(
        self, terminated: torch.Tensor, exhausted: torch.Tensor, limit: torch.Tensor, p_term: torch.Tensor
    ) -> None:
        """Mark games over, with the first applicable reason, and update the action mask to the new phases."""
        ended = terminated | exhausted | limit
        if not bool((ended | p_term).any()):  # no phase changed: the mask's TERMINATE column still holds
            return
        reason = torch.where(
            terminated, EndReason.TERMINATED, torch.where(exhausted, EndReason.EXHAUSTED, EndReason.STEP_LIMIT)
        )
        self.end_reason = torch.where(ended, reason, self.end_reason)
        self.phase = torch.where(ended, Phase.DONE, self.phase)
        self._free[ended] = False  # rows of the games that just ended, not a (B, G*G) pass
        self._mask[:, self._n] = self.phase != Phase.FINAL

    # ---------------------------------------------------------------------------------------------- replay
    def record(self, game: int) -> GameRecord:
        """The current (or just finished) game `game` move by move; needs `record=True`."""
        if not self.recording:
            raise RuntimeError("BatchedGame(record=True) is needed to replay games")
        start = int(self._episode_start[game])
        moves = []
        for live, phase, agent, action, score in self._log[start:]:
            if not bool(live[game]):
                continue
            patch = int(action[game])
            is_patch = patch < self._n
            moves.append(
                Move(
                    agent=int(agent[game]),
                    phase=Phase(int(phase[game])),
                    patch=patch if is_patch else None,
                    score=float(score[game]) if is_patch else None,
                )
            )
        finals = [int(p) for p in self.final_patch[game]]
        terminator, winner = int(self.terminator[game]), int(self.winner[game])
        return GameRecord(
            grid_size=self.rules.grid_size,
            moves=tuple(moves),
            turns=int(self.turn[game]),
            terminator=None if terminator < 0 else terminator,
            final_patches=(None if finals[0] < 0 else finals[0], None if finals[1] < 0 else finals[1]),
            winner=None if winner < 0 else winner,
            end_reason=EndReason(int(self.end_reason[game])),
            returns=(float(self.returns[game, 0]), float(self.returns[game, 1])),
        )
