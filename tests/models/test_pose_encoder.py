"""Pose encoder: RMSNorm and RoPE against independent formulas, the skeleton graph, masking, padding invariance."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from signt5.data.dataset import DataConfig, prepare_sample, resolve_components
from signt5.data.layout import KeypointLayout, layout_by_name
from signt5.models.pose_encoder import (BODY, FACE, LEFT_HAND, RIGHT_HAND, PoseEncoder, PoseEncoderConfig, RMSNorm,
                                        RotaryEmbedding, SkeletonGraph, SpatialGCN, TemporalDownsample)

from ..conftest import make_sample

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def default_layout(name: str = "holistic_586") -> KeypointLayout:
    layout = layout_by_name(name)
    return layout.select(resolve_components(layout, "default"))[0]


def tiny_config(**overrides) -> PoseEncoderConfig:
    values = dict(d_model=32, n_layers=2, n_heads=4, gcn_channels=8, gcn_layers=2, dropout=0.0)
    values.update(overrides)
    return PoseEncoderConfig(**values).with_layout(default_layout())


def random_batch(lengths: list[int], k: int = 84, seed: int = 0):
    """Zero-padded poses and masks as pad_batch builds them, with some points missing."""
    g = torch.Generator().manual_seed(seed)
    b, t = len(lengths), max(lengths)
    pose, point_mask = torch.zeros(b, t, k, 2), torch.zeros(b, t, k, dtype=torch.bool)
    for i, n in enumerate(lengths):
        pose[i, :n] = torch.randn(n, k, 2, generator=g)
        point_mask[i, :n] = torch.rand(n, k, generator=g) > 0.15
    pose = pose * point_mask.unsqueeze(-1)
    frame_mask = torch.arange(t)[None, :] < torch.tensor(lengths)[:, None]
    return pose, point_mask, frame_mask


def test_rmsnorm_matches_independent_formula():
    torch.manual_seed(0)
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(16))
    x = torch.randn(3, 5, 16) * 7
    x64 = x.double().numpy()
    expected = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6) * norm.weight.detach().double().numpy()
    np.testing.assert_allclose(norm(x).detach().numpy(), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(norm(x), torch.nn.functional.rms_norm(x, (16,), norm.weight, 1e-6))
    assert norm(x.bfloat16()).dtype == torch.bfloat16


def rope_reference(x: torch.Tensor, base: float) -> torch.Tensor:
    """Rotate each pair (x_i, x_{i+d/2}) at position p by p * base^(-2i/d), written out with complex numbers."""
    t, d = x.shape[-2:]
    half = d // 2
    freqs = base ** (-torch.arange(half, dtype=torch.float64) * 2 / d)
    angles = torch.arange(t, dtype=torch.float64)[:, None] * freqs[None, :]
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(torch.ones_like(angles), angles)
    return torch.cat([z.real, z.imag], dim=-1).float()


def test_rope_matches_reference_and_scores_depend_only_on_offset():
    torch.manual_seed(0)
    rope = RotaryEmbedding(head_dim=8, base=100.0)
    x = torch.randn(1, 2, 24, 8)
    torch.testing.assert_close(rope(x), rope_reference(x, 100.0), rtol=1e-5, atol=1e-5)
    q, k = torch.randn(8), torch.randn(8)
    qs, ks = rope(q.expand(1, 1, 24, 8))[0, 0], rope(k.expand(1, 1, 24, 8))[0, 0]  # q, k placed at every position
    scores = qs @ ks.t()  # (24, 24): scores[m, n] = <rope(q, m), rope(k, n)>
    for offset in (-5, 0, 3, 11):
        diagonal = torch.diagonal(scores, offset=offset)
        torch.testing.assert_close(diagonal, diagonal[:1].expand_as(diagonal), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(torch.diagonal(scores, 0)[:1], torch.diagonal(scores, 5)[:1])
    torch.testing.assert_close(qs.norm(dim=-1), q.norm().expand(24))  # a rotation keeps norms


def test_rope_cache_grows_past_its_first_length():
    rope = RotaryEmbedding(head_dim=8)
    rope(torch.randn(1, 1, 10, 8))
    first = rope.cached_length
    assert first >= 10
    x = torch.randn(1, 1, 3 * first + 1, 8)
    out = rope(x)
    assert rope.cached_length >= 3 * first + 1
    torch.testing.assert_close(out, rope_reference(x, 10000.0), rtol=1e-4, atol=1e-4)


def test_graph_is_symmetric_normalised_and_built_from_the_header_limbs(real_clip_path):
    from pose_format import Pose

    header = Pose.read(real_clip_path.read_bytes()).header
    layout = KeypointLayout.from_pose_header(header)
    graph = SkeletonGraph(layout)
    a = graph.adjacency.double().numpy()
    k = layout.num_points
    assert a.shape == (k, k)
    np.testing.assert_allclose(a, a.T)
    raw = np.eye(k)  # independent rebuild: header limbs per component, offset by component position
    offset = 0
    for comp in header.components:
        for i, j in comp.limbs:
            raw[offset + i, offset + j] = raw[offset + j, offset + i] = 1
        offset += len(comp.points)
    degree = raw.sum(1)
    np.testing.assert_allclose(a, raw / np.sqrt(np.outer(degree, degree)), atol=1e-6)
    assert np.isclose(np.linalg.eigvalsh(a).max(), 1.0)  # normalised: spectral radius 1
    parts = graph.part_ids.numpy()
    for name, part in (("POSE_LANDMARKS", BODY), ("FACE_LANDMARKS", FACE), ("LEFT_HAND_LANDMARKS", LEFT_HAND),
                       ("RIGHT_HAND_LANDMARKS", RIGHT_HAND), ("POSE_WORLD_LANDMARKS", BODY)):
        assert (parts[layout.component_slice(name)] == part).all()


def test_missing_points_do_not_contribute():
    torch.manual_seed(0)
    gcn = SpatialGCN(tiny_config()).eval()
    pose, point_mask, _ = random_batch([6])
    changed = pose.clone()
    changed[~point_mask] = torch.randn(int((~point_mask).sum()), 2) * 100
    changed[0, 0, ~point_mask[0, 0]] = float("nan")
    torch.testing.assert_close(gcn(pose, point_mask), gcn(changed, point_mask))
    hand = slice(42, 63)  # dropping a whole hand changes the output (the hands are not drowned)
    no_hand = point_mask.clone()
    no_hand[..., hand] = False
    assert not torch.allclose(gcn(pose, point_mask), gcn(pose, no_hand))


@pytest.mark.parametrize("face_pooling", ["mean", "subset", "none"])
def test_hands_keep_one_slot_per_joint(face_pooling):
    gcn = SpatialGCN(tiny_config(face_pooling=face_pooling, face_points=["61", "291"] if face_pooling == "subset"
                                 else None))
    c = 8
    assert gcn.part_projections["left_hand"].in_features == 21 * c
    assert gcn.part_projections["right_hand"].in_features == 21 * c
    face = gcn.part_projections["face"].in_features if "face" in gcn.part_projections else 0
    assert face == {"mean": c, "subset": 2 * c, "none": 0}[face_pooling]
    pose, point_mask, _ = random_batch([3])
    assert gcn(pose, point_mask).shape == (1, 3, 32)


@pytest.mark.parametrize("downsample,stride", [("conv", 2), ("conv", 3), ("pool", 2), ("none", 1)])
def test_padding_does_not_change_the_output(downsample, stride):
    torch.manual_seed(0)
    encoder = PoseEncoder(tiny_config(downsample=downsample, stride=stride)).eval()
    with torch.no_grad():
        encoder.spatial.bias.normal_()  # as after training: a padded frame's features are not zero by luck
    pose, point_mask, frame_mask = random_batch([7, 13, 10], seed=1)
    batched, batched_mask = encoder(pose, point_mask, frame_mask)
    alone, alone_mask = encoder(pose[:1, :7], point_mask[:1, :7], frame_mask[:1, :7])
    n = math.ceil(7 / stride)
    assert alone.shape[1] == n and alone_mask.all()
    assert batched_mask[0].sum() == n and batched_mask[1].sum() == math.ceil(13 / stride)
    torch.testing.assert_close(batched[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    assert (batched[0, n:] == 0).all()


def test_downsample_mask_and_pool_are_masked_means():
    down = TemporalDownsample("pool", 3, 4)
    x = torch.arange(2 * 7 * 4, dtype=torch.float32).view(2, 7, 4)
    mask = torch.tensor([[1] * 7, [1] * 4 + [0] * 3], dtype=torch.bool)
    y, m = down(x, mask)
    assert m.tolist() == [[True, True, True], [True, True, False]]
    torch.testing.assert_close(y[1, 1], x[1, 3])  # window (3, 4, 5) holds one real frame
    torch.testing.assert_close(y[0, 2], x[0, 6])


def test_encoder_runs_on_prepared_samples_and_condition_changes_it():
    torch.manual_seed(0)
    sample = prepare_sample(make_sample("holistic_586", frames=9), DataConfig())
    encoder = PoseEncoder(tiny_config()).eval()
    pose = torch.from_numpy(sample.coords)[None]
    mask = torch.from_numpy(sample.mask)[None]
    out, out_mask = encoder(pose, mask)
    assert out.shape == (1, 5, 32) and out_mask.shape == (1, 5) and torch.isfinite(out).all()
    conditioned, _ = encoder(pose, mask, condition=torch.randn(1, 32))
    assert not torch.allclose(out, conditioned)


def test_config_json_round_trip_and_shipped_configs(tmp_path):
    config = tiny_config(face_pooling="subset", downsample="pool")
    config.to_json(tmp_path / "c.json")
    assert PoseEncoderConfig.from_json(tmp_path / "c.json") == config
    assert config.keypoint_layout.same_points(default_layout())
    for name in ("pose_encoder_config.json", "pose_encoder_cpu.json"):
        shipped = PoseEncoderConfig.from_json(CONFIGS / name)
        assert shipped.layout is None and shipped.d_model % shipped.n_heads == 0
    with pytest.raises(ValueError, match="downsample"):
        PoseEncoderConfig(downsample="avg")
    with pytest.raises(ValueError, match="heads"):
        PoseEncoderConfig(d_model=30, n_heads=4)


def test_part_local_features_ignore_where_the_hand_is_and_its_size():
    """Moving and scaling one hand changes its global input but not its part-local features."""
    from signt5.models.pose_encoder import SpatialGCN, part_local_coordinates

    gcn = SpatialGCN(tiny_config())
    k = gcn.graph.num_points
    torch.manual_seed(0)
    pose = torch.randn(1, 3, k, 2)
    mask = torch.ones(1, 3, k, 1)
    mask[0, 1, 5] = 0  # a missing point neither counts nor gets a value
    right = gcn.graph.part_indices(RIGHT_HAND)
    moved = pose.clone()
    moved[:, :, right] = moved[:, :, right] * 2.5 + torch.tensor([3.0, -1.0])
    a = part_local_coordinates(pose * mask, mask, gcn.local_parts)
    b = part_local_coordinates(moved * mask, mask, gcn.local_parts)
    torch.testing.assert_close(a[:, :, right], b[:, :, right])
    others = [i for i in range(k) if i not in right]
    torch.testing.assert_close(a[:, :, others], b[:, :, others])
    assert a[0, 1, 5].abs().sum() == 0
    hand = a[0, 0, right]
    torch.testing.assert_close(hand.mean(0), torch.zeros(2), atol=1e-5, rtol=0)
    torch.testing.assert_close((hand ** 2).sum(-1).mean(), torch.tensor(1.0))


@pytest.mark.parametrize("stride", [2, 3])
def test_conv_downsample_is_the_strided_convolution(stride):
    """Computed as one matmul over the windows, it equals nn.Conv1d on the same (checkpointed) weights."""
    torch.manual_seed(0)
    down = TemporalDownsample("conv", stride, 8)
    x = torch.randn(3, 11, 8)
    frame_mask = torch.ones(3, 11, dtype=torch.bool)
    frame_mask[1, 7:] = False
    y, _ = down(x, frame_mask)
    padded = torch.nn.functional.pad(x * frame_mask.unsqueeze(-1), (0, 0, 0, (-11) % stride))
    expected = down.conv(padded.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-6)
