"""Game steps per second (one step = one agent action in one game) of the RLSP game, at G = 16.

Measures the batched engine with uniformly random legal moves (whole games, and a steady rollout where finished
games restart at once, as in PPO), the engine when the moves are sampled from `action_mask()` like a policy
would, the PettingZoo wrapper, and the threshold baseline. Median of repeats; writes
benchmarks/results/game_speed.json and .md.

    .venv/bin/python benchmarks/game_speed.py [--repeats 5] [--threads 1 2] [--batch 256 1024 4096]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from medwss.agents.threshold import ThresholdAgent
from medwss.game.engine import BatchedGame
from medwss.game.env import PatchGameEnv
from medwss.game.record import Phase
from medwss.game.rules import GameRules

RESULTS = Path(__file__).resolve().parent / "results"
RULES = GameRules(grid_size=16)


class RandomPlayer:
    """Uniformly random legal moves in O(B) per step, so the timing is the engine's, not the sampler's.

    Each game walks its own random permutation of the legal patches: since every pick in the game comes from the
    walk, the next entry is a uniform draw among the free patches; TERMINATE, where legal, has chance 1/(k + 1)
    with k free patches, which makes every legal action equally likely.
    """

    def __init__(self, game: BatchedGame, generator: torch.Generator) -> None:
        self.game, self.gen = game, generator
        self.restart(torch.ones(game.batch_size, dtype=torch.bool))

    def restart(self, games: torch.Tensor) -> None:
        """New walks for the games that (re)started; illegal patches sort last and are never reached."""
        outside = ~self.game.region[games].flatten(1)
        perm = (torch.rand(outside.shape, generator=self.gen) + outside.float()).argsort(dim=1)
        if not hasattr(self, "perm"):
            self.perm, self.taken = perm, torch.zeros(self.game.batch_size, dtype=torch.int64)
            return
        self.perm[games] = perm
        self.taken[games] = 0

    def act(self) -> torch.Tensor:
        game = self.game
        patch = self.perm.gather(1, self.taken.clamp(max=RULES.num_patches - 1)[:, None]).squeeze(1)
        coin = torch.rand(game.batch_size, generator=self.gen)
        stop = (game.phase == Phase.PLAY) & (coin * (game.free_count + 1) < 1)
        actions = torch.where(stop, RULES.terminate_action, patch)
        self.taken = self.taken + (~stop & ~game.done).to(torch.int64)
        return actions


def timed(fn: Callable[[], int]) -> float:
    """Steps per second of one run of `fn`, which returns the steps it played."""
    start = time.perf_counter()
    steps = fn()
    return steps / (time.perf_counter() - start)


def engine_whole_games(batch: int, gen: torch.Generator) -> int:
    game = BatchedGame(RULES, torch.rand(batch, 16, 16, generator=gen))
    player, steps = RandomPlayer(game, gen), 0
    while not bool(game.done.all()):
        steps += int((~game.done).sum())
        game.step(player.act())
    return steps


def engine_rollout(batch: int, gen: torch.Generator, length: int = 256) -> int:
    """PPO-like: `length` steps of all B games, finished games restarted with fresh scores right away."""
    game = BatchedGame(RULES, torch.rand(batch, 16, 16, generator=gen))
    player = RandomPlayer(game, gen)
    for _ in range(length):
        game.step(player.act())
        done = game.done
        if bool(done.any()):
            game.reset(torch.rand(int(done.sum()), 16, 16, generator=gen), games=done)
            player.restart(done)
    return batch * length


def engine_masked_sampling(batch: int, gen: torch.Generator) -> int:
    """Whole games with moves drawn from action_mask(), the (B, G*G + 1) work a policy adds per step."""
    game = BatchedGame(RULES, torch.rand(batch, 16, 16, generator=gen))
    steps = 0
    while not bool(game.done.all()):
        mask = game.action_mask()
        steps += int((~game.done).sum())
        game.step(torch.rand(mask.shape, generator=gen).masked_fill_(~mask, -1.0).argmax(1))
    return steps


def pettingzoo_games(games: int, rng: np.random.Generator) -> int:
    env = PatchGameEnv(rng.random((16, 16)), RULES)
    steps = 0
    for _ in range(games):
        env.reset(options={"scores": rng.random((16, 16))})
        for _agent in env.agent_iter():
            obs, _, terminated, truncated, _ = env.last()
            if terminated or truncated:
                env.step(None)
                continue
            env.step(int(rng.choice(np.flatnonzero(obs["action_mask"]))))
            steps += 1
    return steps


def threshold_games(batch: int, gen: torch.Generator) -> int:
    game = BatchedGame(RULES, torch.rand(batch, 16, 16, generator=gen), single_agent=True)
    agent, steps = ThresholdAgent(0.8), 0
    while not bool(game.done.all()):
        steps += int((~game.done).sum())
        game.step(agent.act(game))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--env-games", type=int, default=10)
    args = parser.parse_args()

    gen, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    cases: list[tuple[str, int, Callable[[], int]]] = []
    for b in args.batch:
        cases.append(("engine, whole games", b, lambda b=b: engine_whole_games(b, gen)))
        cases.append(("engine, rollout with auto-reset", b, lambda b=b: engine_rollout(b, gen)))
        cases.append(("engine + masked sampling", b, lambda b=b: engine_masked_sampling(b, gen)))
        cases.append(("threshold baseline (single agent)", b, lambda b=b: threshold_games(b, gen)))
    cases.append(("PettingZoo wrapper", 1, lambda: pettingzoo_games(args.env_games, rng)))

    load_before = os.getloadavg()
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, batch, fn in cases:
            fn()  # warm-up
            runs = [timed(fn) for _ in range(args.repeats)]
            results.append(
                {"name": name, "batch": batch, "threads": threads, "steps_per_s": statistics.median(runs), "runs": runs}
            )
            print(f"{name:36s} B={batch:5d} threads={threads}: {statistics.median(runs):12,.0f} steps/s")
    meta = {
        "grid_size": RULES.grid_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "load_average_before_after": [load_before[0], os.getloadavg()[0]],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write(RESULTS / "game_speed.json", json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    lines = [
        "# Game speed (G = 16, game steps per second, median of repeats)",
        "",
        f"torch {meta['torch']}, {meta['cpu_count']} CPU cores, 1-min load average before/after "
        f"{load_before[0]:.1f}/{meta['load_average_before_after'][1]:.1f} (other jobs share the machine).",
        "",
        "| measure | B | threads | steps/s |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {r['name']} | {r['batch']} | {r['threads']} | {r['steps_per_s']:,.0f} |" for r in results]
    write(RESULTS / "game_speed.md", "\n".join(lines) + "\n")


def write(path: Path, text: str) -> None:
    """Temp file then rename, so a killed run never leaves half a result."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
