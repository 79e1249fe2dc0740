"""Pose encoder: a spatial GCN over each frame's skeleton, then a RoPE transformer over time.

Read top to bottom: config, RMSNorm, rotary embeddings, the skeleton graph, the GCN with
per-part aggregation, temporal down-sampling, transformer blocks, and the encoder that
chains them. Shapes: B batch, T frames, K keypoints, C coordinates, D model width.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from signt5.data.layout import KeypointLayout, component_part

logger = logging.getLogger(__name__)

BODY, LEFT_HAND, RIGHT_HAND, FACE = 0, 1, 2, 3
PART_NAMES = ("body", "left_hand", "right_hand", "face")
_PART_IDS = {"left_hand": LEFT_HAND, "right_hand": RIGHT_HAND, "face": FACE}  # any other part counts as body
FACE_POOLING = ("mean", "subset", "none")
DOWNSAMPLE = ("conv", "pool", "none")
ARCHITECTURES = ("gcn_rope", "youtube_asl")  # ours | the peer: flattened points -> linear -> UMT5 encoder (peer.py)


@dataclass
class PoseEncoderConfig:
    """Hyper-parameters of the pose encoder; serialised to JSON and stored inside every checkpoint."""

    layout: dict | None = None  # KeypointLayout.to_dict() of the model's input points (the data's selection)
    input_dims: int = 2  # coordinates per point (DataConfig.dims)
    gcn_channels: int = 64
    gcn_layers: int = 2
    face_pooling: str = "mean"  # mean: one masked mean per frame | subset: per point, face_points only | none
    face_points: list | None = None  # subset mode: face point names kept (None: every face point of the layout)
    d_model: int = 256
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    downsample: str = "conv"  # conv: strided conv over non-overlapping windows | pool: masked mean | none
    stride: int = 2
    rope_base: float = 10000.0
    part_local: bool = True  # also feed each point relative to its part (hand, face, body), scale-free
    norm_eps: float = 1e-6
    architecture: str = "gcn_rope"  # gcn_rope: PoseEncoder | youtube_asl: FlatPoseEncoder (peer.py; no GCN fields)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}")
        if self.face_pooling not in FACE_POOLING:
            raise ValueError(f"face_pooling must be one of {FACE_POOLING}, got {self.face_pooling!r}")
        if self.downsample not in DOWNSAMPLE:
            raise ValueError(f"downsample must be one of {DOWNSAMPLE}, got {self.downsample!r}")
        rope = self.architecture == "gcn_rope"  # RoPE rotates pairs: even head size
        if self.d_model % self.n_heads or (rope and (self.d_model // self.n_heads) % 2):
            raise ValueError(f"d_model {self.d_model} must split into {self.n_heads} heads of even size")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def keypoint_layout(self) -> KeypointLayout:
        if self.layout is None:
            raise ValueError("PoseEncoderConfig.layout is unset: use config.with_layout(selected_layout)")
        return KeypointLayout.from_dict(self.layout)

    @property
    def time_stride(self) -> int:
        return 1 if self.downsample == "none" or self.architecture == "youtube_asl" else self.stride

    def with_layout(self, layout: KeypointLayout) -> "PoseEncoderConfig":
        return replace(self, layout=layout.to_dict())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "PoseEncoderConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            logger.warning("PoseEncoderConfig: ignoring unknown keys %s", unknown)
        return cls(**{k: v for k, v in d.items() if k in names})

    def to_json(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def from_json(cls, path: str | Path) -> "PoseEncoderConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 so bf16 inputs stay stable."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (rotate-half form); its cos/sin cache grows to any length asked for."""

    def __init__(self, head_dim: int, base: float = 10000.0):
        super().__init__()
        self.head_dim, self.base = head_dim, base
        self._cos: torch.Tensor | None = None  # (L, head_dim), a plain attribute: derived, never saved
        self._sin: torch.Tensor | None = None

    @property
    def cached_length(self) -> int:
        return 0 if self._cos is None else self._cos.shape[0]

    def _build(self, length: int, device: torch.device) -> None:
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.head_dim, 2, device=device, dtype=torch.float32)
                                        / self.head_dim))
        angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)  # (L, hd/2)
        angles = torch.cat([angles, angles], dim=-1)  # (L, hd)
        self._cos, self._sin = angles.cos(), angles.sin()

    def cos_sin(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if self._cos is None or self._cos.shape[0] < length or self._cos.device != device:
            self._build(max(length, 2 ** math.ceil(math.log2(max(length, 1))), self.cached_length), device)
        return self._cos[:length], self._sin[:length]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` (B, H, T, hd) by its position along T."""
        cos, sin = self.cos_sin(x.shape[-2], x.device)
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class SkeletonGraph:
    """The skeleton as a graph: header limbs + self loops, symmetrically normalised D^-1/2 A D^-1/2."""

    def __init__(self, layout: KeypointLayout):
        self.layout = layout
        k = layout.num_points
        adjacency = np.eye(k, dtype=np.float32)
        edges = layout.edges()
        adjacency[edges[:, 0], edges[:, 1]] = 1.0
        adjacency[edges[:, 1], edges[:, 0]] = 1.0
        d_inv_sqrt = 1.0 / np.sqrt(adjacency.sum(1))
        self.adjacency = torch.from_numpy(d_inv_sqrt[:, None] * adjacency * d_inv_sqrt[None, :])  # (K, K)
        parts = np.full(k, BODY, dtype=np.int64)
        for comp in layout.components:
            parts[layout.component_slice(comp.name)] = _PART_IDS.get(component_part(comp.name), BODY)
        self.part_ids = torch.from_numpy(parts)  # (K,)
        self._on_device: dict[tuple, torch.Tensor] = {}

    @property
    def num_points(self) -> int:
        return self.layout.num_points

    def part_indices(self, part: int) -> list[int]:
        return [int(i) for i in torch.nonzero(self.part_ids == part).flatten()]

    def adjacency_on(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        key = (device, dtype)
        if key not in self._on_device:
            self._on_device[key] = self.adjacency.to(device=device, dtype=dtype)
        return self._on_device[key]


def masked_graph_aggregate(x: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A @ x over present points only, re-weighted so a point's total neighbour weight is unchanged.

    x (B, T, K, C) must be zero at missing points; adjacency (K, K); mask (B, T, K, 1) float.
    Missing points neither send (their rows are zero) nor receive (the output is masked).
    """
    present_weight = adjacency @ mask  # (B, T, K, 1)
    full_weight = adjacency.sum(-1, keepdim=True)  # (K, 1)
    scale = full_weight / present_weight.clamp_min(1e-6) * mask  # (B, T, K, 1)
    return (adjacency @ x) * scale


class GCNLayer(nn.Module):
    """Pre-norm residual graph convolution: x + GELU(A_masked (norm(x) W)); zero rows stay zero."""

    def __init__(self, channels: int, eps: float):
        super().__init__()
        self.norm = RMSNorm(channels, eps)
        self.linear = nn.Linear(channels, channels, bias=False)  # no bias: missing points stay exactly zero

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return x + F.gelu(masked_graph_aggregate(self.linear(self.norm(x)), adjacency, mask))


class SpatialGCN(nn.Module):
    """Per-frame GCN over the keypoints, then per-part aggregation into one D-vector per frame.

    Body and hand points keep one slot each (their features are concatenated), so every hand
    joint has its own weights. The face is either one masked mean (``mean``), a chosen subset of
    points with their own slots (``subset``), or left out (``none``): it cannot drown the hands.
    """

    def __init__(self, config: PoseEncoderConfig):
        super().__init__()
        self.graph = SkeletonGraph(config.keypoint_layout)
        c, k = config.gcn_channels, self.graph.num_points
        self.part_local = config.part_local
        self.input = nn.Linear(config.input_dims * (2 if config.part_local else 1), c)
        self.local_parts = [idx for part in (BODY, LEFT_HAND, RIGHT_HAND, FACE) if (idx := self.graph.part_indices(part))]
        self.joint_embedding = nn.Embedding(k, c)  # which joint this is
        self.layers = nn.ModuleList(GCNLayer(c, config.norm_eps) for _ in range(config.gcn_layers))
        self.norm = RMSNorm(c, config.norm_eps)
        self.slot_parts: dict[str, list[int]] = {}
        for part in (BODY, LEFT_HAND, RIGHT_HAND, FACE):
            indices = self.graph.part_indices(part)
            if part == FACE and config.face_pooling != "subset":
                continue
            if part == FACE and config.face_points is not None:
                indices = self._face_subset(indices, config.face_points)
            if indices:
                self.slot_parts[PART_NAMES[part]] = indices
        self.face_indices = self.graph.part_indices(FACE) if config.face_pooling == "mean" else []
        self.part_projections = nn.ModuleDict(
            {name: nn.Linear(len(idx) * c, config.d_model, bias=False) for name, idx in self.slot_parts.items()})
        if self.face_indices:
            self.part_projections["face"] = nn.Linear(c, config.d_model, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.d_model))

    def _face_subset(self, face_indices: list[int], names: list) -> list[int]:
        layout = self.graph.layout
        by_name = {layout_point_name(layout, i): i for i in face_indices}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise ValueError(f"face_points not in the layout's face: {missing[:5]}")
        return [by_name[n] for n in names]

    def forward(self, pose: torch.Tensor, point_mask: torch.Tensor) -> torch.Tensor:
        """pose (B, T, K, C), point_mask (B, T, K) bool -> (B, T, D)."""
        mask = point_mask.unsqueeze(-1).to(pose.dtype)  # (B, T, K, 1)
        pose = torch.where(point_mask.unsqueeze(-1), pose, torch.zeros_like(pose))  # missing may hold NaN
        if self.part_local:
            local = part_local_coordinates(pose, mask, self.local_parts)
            pose = torch.cat([pose, local], dim=-1)  # (B, T, K, 2C)
        x = (self.input(pose) + self.joint_embedding.weight) * mask  # (B, T, K, c), zero where missing
        adjacency = self.graph.adjacency_on(x.device, x.dtype)
        for layer in self.layers:
            x = layer(x, adjacency, mask)
        x = self.norm(x)  # missing points are still exactly zero
        b, t = x.shape[:2]
        out = self.bias.to(x.dtype).expand(b, t, -1)  # (B, T, D)
        for name, indices in self.slot_parts.items():
            out = out + self.part_projections[name](x[:, :, _as_slice(indices)].reshape(b, t, -1))
        if self.face_indices:
            face_slice = _as_slice(self.face_indices)
            face, face_mask = x[:, :, face_slice], mask[:, :, face_slice]  # (B, T, F, c), (B, T, F, 1)
            pooled = face.sum(2) / face_mask.sum(2).clamp_min(1.0)  # (B, T, c) masked mean
            out = out + self.part_projections["face"](pooled)
        return out


def part_local_coordinates(pose: torch.Tensor, mask: torch.Tensor, parts: list[list[int]]) -> torch.Tensor:
    """Each point (B, T, K, C) relative to its part's centre in this frame, divided by the part's spread.

    A handshape then looks the same wherever the hand is and however large it appears, which is what
    fingerspelling turns on; the global coordinates, fed beside these, still carry position. ``mask`` is
    (B, T, K, 1) in the pose's dtype; points outside ``parts`` and missing points come out as zero.
    """
    out = torch.zeros_like(pose)
    for indices in parts:
        idx = _as_slice(indices)
        p, m = pose[:, :, idx], mask[:, :, idx]  # (B, T, P, C), (B, T, P, 1)
        count = m.sum(2, keepdim=True).clamp_min(1.0)
        centre = p.sum(2, keepdim=True) / count
        spread = (((p - centre) ** 2 * m).sum(2, keepdim=True) / count).sum(-1, keepdim=True).sqrt()
        out[:, :, idx] = (p - centre) / spread.clamp_min(1e-3) * m
    return out


def _as_slice(indices: list[int]) -> slice | list[int]:
    """A slice when the indices are contiguous (a view, no gather), else the list."""
    if indices == list(range(indices[0], indices[-1] + 1)):
        return slice(indices[0], indices[-1] + 1)
    return indices


def layout_point_name(layout: KeypointLayout, index: int) -> str:
    for comp in layout.components:
        s = layout.component_slice(comp.name)
        if s.start <= index < s.stop:
            return comp.points[index - s.start]
    raise IndexError(index)


class TemporalDownsample(nn.Module):
    """Shrink time by ``stride`` over non-overlapping, left-aligned windows; padding stays inert.

    Padded frames are zeroed and the tail is zero-padded to a multiple of the stride, so a window
    holding real frames sees the same numbers whether the sample is alone or in a longer batch.
    A window is valid when it holds at least one real frame.
    """

    def __init__(self, mode: str, stride: int, d_model: int):
        super().__init__()
        self.mode, self.stride = mode, (1 if mode == "none" else stride)
        self.conv = nn.Conv1d(d_model, d_model, kernel_size=stride, stride=stride) if mode == "conv" else None

    def downsample_mask(self, frame_mask: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return frame_mask
        pad = (-frame_mask.shape[1]) % self.stride
        frame_mask = F.pad(frame_mask, (0, pad), value=False)
        return frame_mask.view(frame_mask.shape[0], -1, self.stride).any(-1)  # (B, ceil(T/s))

    def forward(self, x: torch.Tensor, frame_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.stride == 1:
            return x, frame_mask
        b, t, d = x.shape
        pad = (-t) % self.stride
        m = frame_mask.unsqueeze(-1).to(x.dtype)  # (B, T, 1)
        x = F.pad(x * m, (0, 0, 0, pad))  # (B, T', D), T' a multiple of the stride
        if self.conv is not None:
            # the conv's windows do not overlap, so it is one matmul over (stride x D) windows; as nn.Conv1d it
            # went through oneDNN, whose per-shape primitive cache grew with every new batch length
            weight = self.conv.weight.permute(0, 2, 1).reshape(d, self.stride * d)  # (D, s*D), window-major
            y = F.linear(x.reshape(b, -1, self.stride * d), weight, self.conv.bias)  # (B, T'/s, D)
        else:
            counts = F.pad(m, (0, 0, 0, pad)).view(b, -1, self.stride, 1).sum(2)
            y = x.view(b, -1, self.stride, d).sum(2) / counts.clamp_min(1.0)
        return y, self.downsample_mask(frame_mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE, through scaled_dot_product_attention and a key padding mask."""

    def __init__(self, config: PoseEncoderConfig, rope: RotaryEmbedding):
        super().__init__()
        self.n_heads, self.dropout = config.n_heads, config.dropout
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.rope = rope

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)  # (B, H, T, hd)
        q, k = self.rope(q), self.rope(k)
        attn_mask = key_mask[:, None, None, :]  # (B, 1, 1, T), True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, config: PoseEncoderConfig):
        super().__init__()
        hidden = int(config.mlp_ratio * config.d_model)
        self.fc = nn.Linear(config.d_model, hidden)
        self.proj = nn.Linear(hidden, config.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.gelu(self.fc(x)))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: PoseEncoderConfig, rope: RotaryEmbedding):
        super().__init__()
        self.norm1 = RMSNorm(config.d_model, config.norm_eps)
        self.attn = SelfAttention(config, rope)
        self.norm2 = RMSNorm(config.d_model, config.norm_eps)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), key_mask))
        return x + self.drop(self.mlp(self.norm2(x)))


class PoseEncoder(nn.Module):
    """Poses (B, T, K, C) -> features (B, T', D) and their frame mask (B, T'), T' = ceil(T / stride)."""

    def __init__(self, config: PoseEncoderConfig):
        super().__init__()
        self.config = config
        self.spatial = SpatialGCN(config)
        self.downsample = TemporalDownsample(config.downsample, config.stride, config.d_model)
        self.rope = RotaryEmbedding(config.d_model // config.n_heads, config.rope_base)
        self.blocks = nn.ModuleList(TransformerBlock(config, self.rope) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.d_model, config.norm_eps)
        self.drop = nn.Dropout(config.dropout)

    def output_mask(self, frame_mask: torch.Tensor) -> torch.Tensor:
        return self.downsample.downsample_mask(frame_mask)

    def forward(self, pose: torch.Tensor, point_mask: torch.Tensor, frame_mask: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``condition`` (B, D), e.g. a sign-language embedding, is added to every frame before attention."""
        b, t = pose.shape[:2]
        if frame_mask is None:
            frame_mask = torch.ones(b, t, dtype=torch.bool, device=pose.device)
        point_mask = point_mask & frame_mask.unsqueeze(-1)  # (B, T, K)
        x = self.spatial(pose, point_mask)  # (B, T, D)
        x, mask = self.downsample(x, frame_mask)  # (B, T', D), (B, T')
        if condition is not None:
            x = x + condition.unsqueeze(1).to(x.dtype)
        x = self.drop(x)
        key_mask = mask | ~mask.any(-1, keepdim=True)  # an all-padding row attends everywhere instead of NaN
        for block in self.blocks:
            x = block(x, key_mask)
        x = self.norm(x) * mask.unsqueeze(-1).to(x.dtype)
        return x, mask
