"""The RLSP patch game, without networks: detector scores come in as tensors (STYLE §1).

- `rules.GameRules`: the frozen rules (grid, rewards, termination, step limit).
- `engine.BatchedGame`: B games at once as tensor ops; what training and inference use.
- `env.PatchGameEnv`: one game as a PettingZoo AEC environment, over the same engine.
- `observation`: what an agent sees (blanked image + owner planes); `record`: phases, end reasons, replays.
"""
