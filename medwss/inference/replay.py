"""``medwss replay``: one game of the trained agent against itself on one slice, drawn as a PNG strip.

Both seats are the bundle's agent playing its most likely moves, so the replay shows what the agent has learned:
the patches each side takes in order, who calls termination, the final picks and the detector's scores.
"""

from __future__ import annotations

from pathlib import Path

import torch

from medwss.errors import MedwssError


@torch.no_grad()
def replay_slice(segmenter, scan: Path, slice_z: int, out_png: Path, prior: Path | None = None) -> Path:
    """Play and draw one game on slice ``slice_z`` (z of the scan as loaded) of ``scan``.

    Raises:
        MedwssError: unreadable scan, a slice outside it, a bundle without a trained agent.
    """
    from medwss.data.transforms import process_volume
    from medwss.game.engine import BatchedGame
    from medwss.viz.overlay import RAS
    from medwss.viz.replay import draw_replay

    if segmenter.network is None:
        raise MedwssError(segmenter.root, "replay needs the bundle's trained agent (method rlsp)")
    if segmenter.region == "prior" and prior is None:
        raise MedwssError(scan, "this bundle needs an organ prior mask: give --roi-mask")
    data = {"image": str(scan), **({"prior": str(prior)} if prior is not None and segmenter.region == "prior" else {})}
    processed = process_volume(data, segmenter.preprocessing)
    file_z = [int(z) for z in torch.as_tensor(processed["slice_index"]).tolist()]
    if slice_z not in file_z:
        raise MedwssError(scan, f"slice {slice_z} is outside the scan (0..{max(file_z)})")
    k = file_z.index(slice_z)
    inferer, policy = segmenter.inferer, segmenter.network.eval()
    slices, region = inferer.slices_and_region(torch.as_tensor(processed["image"]))
    one = slices[k : k + 1]
    scored = inferer.scorer.score(one, None if region is None else region[k : k + 1])
    scores = scored.scores
    base = inferer.agent_base(one, scored, policy)
    base = (one if base is None else base).to(segmenter.device)  # the game runs where the agent does
    region_g = None if scored.region is None else scored.region.to(segmenter.device)
    game = BatchedGame(inferer.rules, scores.to(segmenter.device), region_g, record=True)
    while not bool(game.done.all()):
        obs = game.observation(base, mode=policy.observation, merge_sides=policy.merge_sides)
        actions = policy.act(obs, game.action_mask(), deterministic=True)[0]
        game.step(actions)
    centre = one[0, one.shape[1] // 2]
    # The working grid is RAS (Orientationd): drawn the way `segment` overlays draw the scan.
    record = game.record(0)
    return draw_replay(centre, record, scores[0].cpu(), out_png, title=f"{scan.name} z={slice_z}", codes=RAS[:2])
