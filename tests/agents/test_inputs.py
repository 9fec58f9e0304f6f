"""Policy inputs (blanking, planes, step fraction, per-slice base) and the frozen encoders."""

from __future__ import annotations

import pytest
import torch

from medwss.agents.encoders import PatchStatsEncoder, RandomConvEncoder, encoder_config, encoder_from_config
from medwss.agents.inputs import STATE_PLANES, build_observation, observation_base

G = 2


def state() -> tuple[torch.Tensor, ...]:
    owner = torch.tensor([[[1, 0], [2, 0]]], dtype=torch.int8)  # a took (0,0), b took (1,0)
    region = torch.tensor([[[True, True], [True, False]]])
    return owner, torch.tensor([1]), region, torch.tensor([True]), torch.tensor([0.25])


def test_features_observation_blanks_taken_patches_and_adds_planes() -> None:
    base = torch.arange(1.0, 1.0 + 3 * G * G).view(1, 3, G, G)
    obs = build_observation(base, *state(), mode="features")
    assert obs.shape == (1, 3 + STATE_PLANES, G, G)
    taken = torch.tensor([[True, False], [True, False]])
    assert (obs[0, :3][:, taken] == 0).all() and torch.equal(obs[0, :3][:, ~taken], base[0][:, ~taken])
    mine, theirs, outside, final, step = obs[0, 3:]
    assert mine.tolist() == [[0, 0], [1, 0]]  # agent b's point of view: b's patch is "mine"
    assert theirs.tolist() == [[1, 0], [0, 0]]
    assert outside.tolist() == [[0, 0], [0, 1]]
    assert (final == 1).all() and (step == 0.25).all()


def test_pixels_observation_blanks_pixels_and_upsamples_planes() -> None:
    base = torch.ones(1, 1, 4 * G, 4 * G)
    obs = build_observation(base, *state(), mode="pixels")
    assert obs.shape == (1, 1 + STATE_PLANES, 8, 8)
    assert obs[0, 0, :4, :4].eq(0).all() and obs[0, 0, 4:, :4].eq(0).all() and obs[0, 0, :, 4:].eq(1).all()
    assert obs[0, 1, 4:, :4].eq(1).all() and obs[0, 1].sum() == 16  # "mine" upsampled to the 4 x 4 patch


def test_observation_base_modes() -> None:
    images = torch.rand(3, 1, 16, 16)
    down = observation_base(images, "pixels", 4, pixels_per_patch=2)
    assert down.shape == (3, 1, 8, 8)
    assert torch.allclose(down, torch.nn.functional.avg_pool2d(images, 2))  # area resize = patch-wise mean
    assert observation_base(images, "pixels", 4, pixels_per_patch=4) is not None
    feats = observation_base(images, "features", 4, encoder=PatchStatsEncoder(4), batch_size=2)
    assert feats.shape == (3, 4, 4, 4)
    given = torch.zeros(3, 5, 4, 4)
    assert observation_base(images, "features", 4, features=given) is given
    with pytest.raises(ValueError, match="needs precomputed features"):
        observation_base(images, "features", 4)
    with pytest.raises(ValueError, match="features must be"):
        observation_base(images, "features", 4, features=torch.zeros(3, 5, 2, 2))


def test_patch_stats_encoder_values() -> None:
    image = torch.zeros(1, 1, 4, 4)
    image[0, 0, :2, :2] = torch.tensor([[1.0, 3.0], [1.0, 3.0]])
    stats = PatchStatsEncoder(2)(image)
    assert stats.shape == (1, 4, 2, 2) and PatchStatsEncoder(2).out_channels(1) == 4
    assert stats[0, :, 0, 0].tolist() == [2.0, 1.0, 1.0, 3.0]  # mean, std, min, max of patch (0, 0)
    assert stats[0, :, 1, 1].tolist() == [0.0, 0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        PatchStatsEncoder(3)(image)


def test_random_conv_encoder_is_seeded_and_leaves_global_rng_alone() -> None:
    images = torch.rand(2, 1, 16, 16)
    torch.manual_seed(0)
    before = torch.rand(1)
    torch.manual_seed(0)
    enc = RandomConvEncoder(1, 4, filters=3, seed=5)
    assert torch.rand(1) == before
    out = enc(images)
    assert out.shape == (2, enc.out_channels(1), 4, 4) == (2, 7, 4, 4)
    assert torch.equal(out, RandomConvEncoder(1, 4, filters=3, seed=5)(images))
    assert not torch.equal(out, RandomConvEncoder(1, 4, filters=3, seed=6)(images))
    assert torch.allclose(out[:, -1], torch.nn.functional.avg_pool2d(images, 4)[:, 0])


def test_encoder_config_round_trip() -> None:
    images = torch.rand(2, 1, 16, 16)
    for encoder in (RandomConvEncoder(1, 4, filters=3, seed=2), PatchStatsEncoder(4)):
        rebuilt = encoder_from_config(encoder_config(encoder))
        assert type(rebuilt) is type(encoder) and torch.equal(rebuilt(images), encoder(images))
    assert encoder_config(torch.nn.Identity()) == {"name": "Identity"}
    with pytest.raises(ValueError, match="not built in"):
        encoder_from_config({"name": "Identity"})


def test_merged_sides_show_taken_patches_without_their_owner() -> None:
    from medwss.game.observation import agent_planes

    owner = torch.tensor([[[1, 2], [0, 0]], [[2, 0], [1, 0]]], dtype=torch.int8)
    region = torch.ones(2, 2, 2, dtype=torch.bool)
    final = torch.tensor([False, True])
    for seat in (0, 1):
        planes = agent_planes(owner, torch.tensor([seat, seat]), region, final, merge_sides=True)
        assert torch.equal(planes[:, 0].bool(), owner != 0)  # "mine" = every taken patch, whoever took it
        assert float(planes[:, 1].abs().sum()) == 0.0  # "theirs" stays empty
        assert torch.equal(planes[:, 3].bool(), final[:, None, None].expand(2, 2, 2))
    split = agent_planes(owner, torch.tensor([0, 0]), region, final)
    assert torch.equal(split[:, 0].bool(), owner == 1) and torch.equal(split[:, 1].bool(), owner == 2)


def test_merged_sides_make_a_solo_board_look_like_a_self_play_board() -> None:
    """The same taken patches, owned by both agents in self-play or by agent a alone, give the same input."""
    base = torch.rand(1, 3, 2, 2)
    region = torch.ones(1, 2, 2, dtype=torch.bool)
    args = (torch.tensor([0]), region, torch.tensor([False]), torch.tensor([0.25]), "features")
    selfplay = torch.tensor([[[1, 2], [0, 0]]], dtype=torch.int8)
    solo = torch.tensor([[[1, 1], [0, 0]]], dtype=torch.int8)
    merged = [build_observation(base, board, *args, merge_sides=True) for board in (selfplay, solo)]
    split = [build_observation(base, board, *args) for board in (selfplay, solo)]
    assert torch.equal(merged[0], merged[1])
    assert not torch.equal(split[0], split[1])


def test_policy_records_merge_sides_in_its_config() -> None:
    from medwss.agents.policy import AgentPolicy

    policy = AgentPolicy("features", 4, 3, merge_sides=True)
    assert policy.config["merge_sides"] is True
    assert AgentPolicy(**policy.config).merge_sides is True
    assert AgentPolicy("features", 4, 3).merge_sides is False
