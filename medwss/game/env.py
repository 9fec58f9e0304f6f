"""One RLSP game as a PettingZoo AEC environment, for tools that speak PettingZoo and for step-by-step checks.

The rules live in `BatchedGame`; this wrapper runs it with B = 1 and only translates to PettingZoo's dicts, so
the two cannot disagree. Observations come from `game.observation.build_observation`, the builder self-play trains
the policies on, so a trained agent (`agents.policy.AgentPolicy`) plays here as it does in `medwss segment`.
Training uses `BatchedGame` directly: this wrapper is about 100x slower.
"""

from __future__ import annotations

from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from pettingzoo import AECEnv

from medwss.game.engine import BatchedGame
from medwss.game.observation import STATE_PLANES, ObservationMode, check_mode
from medwss.game.record import AGENT_NAMES, EndReason, GameRecord
from medwss.game.rules import GameRules

_COLOURS = np.array([[0, 0, 0], [230, 60, 60], [60, 110, 230]], dtype=np.float32)  # free, a (red), b (blue)


def _tensor(value: Any, dtype: torch.dtype) -> torch.Tensor | None:
    return None if value is None else torch.as_tensor(np.asarray(value)).to(dtype)


class PatchGameEnv(AECEnv):
    """RLSP patch game for two agents ("agent_a" moves first) or, with `single_agent`, agent a alone.

    Observation per agent: {"observation": float32 Box, "action_mask": int8 Box (G*G + 1,)}. The observation is
    the policy input of `medwss.game.observation.build_observation` seen from that agent: the image with taken
    patches blanked plus the `STATE_PLANES` (owner planes and step fraction), (C + STATE_PLANES, H, W); without an
    image only the planes, (STATE_PLANES, G, G). Agents never see detector scores (RLSP §3.2). A game that ends by
    the step limit is a truncation, any other end a termination.

    Args:
        scores: (G, G) detector scores in [0, 1]; may instead come with each reset as options["scores"].
        rules: game rules (default `GameRules()`).
        image: optional (C, H, W) what the agents see of the slice, H and W multiples of G; or options["image"]. For a
            trained agent, its `agents.inputs.observation_base` row: the slice at G*p pixels ("pixels"), or the
            features at G x G ("features", e.g. `SelfPlayInferer.agent_base`).
        region: optional (G, G) bool legal region; or options["region"].
        image_shape: (C, H, W) of the images to come when none is given here; fixes the observation space.
        single_agent: only agent a plays (inference, threshold baseline).
        render_mode: None or "rgb_array".
        mode: how `image` is blanked, as the agent's policy was trained (`AgentPolicy.observation`).
        merge_sides: the owner planes do not tell who took a patch (`AgentPolicy.merge_sides`).
    """

    metadata = {"name": "medwss_patch_game_v0", "render_modes": ["rgb_array"], "is_parallelizable": False}

    def __init__(
        self,
        scores: Any = None,
        rules: GameRules | None = None,
        image: Any = None,
        region: Any = None,
        *,
        image_shape: tuple[int, int, int] | None = None,
        single_agent: bool = False,
        render_mode: str | None = None,
        mode: ObservationMode = "pixels",
        merge_sides: bool = False,
    ) -> None:
        super().__init__()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        check_mode(mode)
        self.mode, self.merge_sides = mode, bool(merge_sides)
        self.rules = rules if rules is not None else GameRules()
        self.render_mode = render_mode
        self.single_agent = single_agent
        self.possible_agents = list(AGENT_NAMES[:1] if single_agent else AGENT_NAMES)
        self.agents = self.possible_agents[:]
        self._scores = _tensor(scores, torch.float32)
        self._image = _tensor(image, torch.float32)
        self._region = _tensor(region, torch.bool)
        self.image_shape = tuple(image_shape) if image_shape is not None else None
        if self.image_shape is None and self._image is not None:
            self.image_shape = tuple(self._image.shape)
        g, n_planes = self.rules.grid_size, STATE_PLANES
        if self.image_shape is None:
            low, high = np.zeros((n_planes, g, g), np.float32), np.ones((n_planes, g, g), np.float32)
        else:
            c, h, w = self.image_shape
            low = np.concatenate([np.full((c, h, w), -np.inf, np.float32), np.zeros((n_planes, h, w), np.float32)])
            high = np.concatenate([np.full((c, h, w), np.inf, np.float32), np.ones((n_planes, h, w), np.float32)])
        n_actions = self.rules.action_count
        self.observation_spaces = {
            agent: spaces.Dict(
                {
                    "observation": spaces.Box(low, high, dtype=np.float32),
                    "action_mask": spaces.Box(0, 1, (n_actions,), dtype=np.int8),
                }
            )
            for agent in self.possible_agents
        }
        self.action_spaces = {agent: spaces.Discrete(n_actions) for agent in self.possible_agents}
        self.game: BatchedGame | None = None

    def observation_space(self, agent: str) -> spaces.Space:
        return self.observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Space:
        return self.action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None) -> None:
        """Start a game on the constructor's slice or on options["scores"/"image"/"region"] (kept for later resets).

        The game has no randomness, so `seed` changes nothing; other option keys are ignored.
        """
        options = options or {}
        if "scores" in options:
            self._scores = _tensor(options["scores"], torch.float32)
        if "image" in options:
            self._image = _tensor(options["image"], torch.float32)
        if "region" in options:
            self._region = _tensor(options["region"], torch.bool)
        if self._scores is None:
            raise ValueError("PatchGameEnv needs detector scores, as `scores=` or reset(options={'scores': ...})")
        if self.image_shape is not None and (self._image is None or tuple(self._image.shape) != self.image_shape):
            got = None if self._image is None else tuple(self._image.shape)
            raise ValueError(f"image of shape {self.image_shape} expected by the observation space, got {got}")
        if self.image_shape is None and self._image is not None:
            raise ValueError("an image needs `image=` or `image_shape=` at construction (it fixes the space)")
        g = self.rules.grid_size
        if self.mode == "features" and self._image is not None and tuple(self._image.shape[-2:]) != (g, g):
            raise ValueError(f"features are seen at the grid, {g}x{g}, got {tuple(self._image.shape)}")
        if self._region is not None and not bool(self._region.any()):
            raise ValueError("the legal region is empty: there is no game to play")
        region = None if self._region is None else self._region[None]
        self.game = BatchedGame(self.rules, self._scores[None], region, single_agent=self.single_agent, record=True)
        self.agents = self.possible_agents[:]
        self.rewards = dict.fromkeys(self.agents, 0.0)
        self._cumulative_rewards = dict.fromkeys(self.agents, 0.0)
        self.terminations = dict.fromkeys(self.agents, False)
        self.truncations = dict.fromkeys(self.agents, False)
        self.infos = {agent: {} for agent in self.agents}
        self.agent_selection = self.agents[0]

    def observe(self, agent: str) -> dict[str, np.ndarray]:
        """The agent's view; its action mask is all zero unless it is the one to move (PettingZoo classic)."""
        who = torch.tensor([self.possible_agents.index(agent)])
        images = None if self._image is None else self._image[None]
        observation = self.game.observation(images, who, self.mode, self.merge_sides)[0].numpy()
        mask = np.zeros(self.rules.action_count, dtype=np.int8)
        if agent == self.agent_selection and not (self.terminations[agent] or self.truncations[agent]):
            mask[:] = self.game.action_mask()[0].numpy()
        return {"observation": observation, "action_mask": mask}

    def step(self, action: int | None) -> None:
        """Play `action` (patch index row * G + col, or G*G = TERMINATE) for `agent_selection`."""
        agent = self.agent_selection
        if self.terminations[agent] or self.truncations[agent]:
            self._was_dead_step(action)
            return
        if action is None:
            raise ValueError(f"{agent} is still playing: None is only for agents that are done")
        self._cumulative_rewards[agent] = 0.0
        rewards = self.game.step(torch.tensor([int(action)]))[0].tolist()
        self.rewards = {name: rewards[i] for i, name in enumerate(self.possible_agents)}
        if bool(self.game.done[0]):
            truncated = bool(self.game.truncated[0])
            winner = int(self.game.winner[0])
            info = {
                "end_reason": EndReason(int(self.game.end_reason[0])).name,
                "winner": self.possible_agents[winner] if winner >= 0 else None,
            }
            for name in self.agents:
                self.terminations[name], self.truncations[name] = not truncated, truncated
                self.infos[name] = dict(info)
        else:
            self.agent_selection = self.possible_agents[int(self.game.agent[0])]
        self._accumulate_rewards()

    def record(self) -> GameRecord:
        """The game so far, move by move, for replays."""
        return self.game.record(0)

    def render(self) -> np.ndarray | None:
        """RGB picture (H, W, 3) uint8: the image (or the scores) with a's patches red, b's blue, outside dark."""
        if self.render_mode is None:
            gymnasium.logger.warn("render() called without render_mode='rgb_array'")
            return None
        g = self.rules.grid_size
        if self._image is not None:
            base = self._image.mean(0)
            base = (base - base.min()) / (base.max() - base.min()).clamp(min=1e-8)
        else:
            base = self.game.scores[0].repeat_interleave(8, 0).repeat_interleave(8, 1)
        height, width = base.shape
        cell = torch.ones(g, g, 3)
        owner = self.game.owner[0].long()
        tint = torch.from_numpy(_COLOURS)[owner] / 255.0
        cell = torch.where((owner > 0)[..., None], tint, cell) * torch.where(self.game.region[0], 1.0, 0.3)[..., None]
        cells = cell.repeat_interleave(height // g, 0).repeat_interleave(width // g, 1)
        rgb = base[..., None] * cells * 255.0
        return rgb.clamp(0, 255).to(torch.uint8).numpy()

    def close(self) -> None:
        """Nothing to release: no window, no files."""
