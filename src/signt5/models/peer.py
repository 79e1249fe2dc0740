"""The YouTube-ASL recipe (Uthus et al. 2023) as a peer of our pose encoder: flattened keypoints -> linear -> T5 encoder.

Per frame the selected keypoints are flattened into one vector, a linear layer maps it to the model width,
and a UMT5 encoder stack (relative position bias; no GCN, no RoPE, no temporal down-sampling) reads the
frames. It has :class:`PoseEncoder`'s forward signature and outputs, so ``SignT5Encoder`` picks it with
``PoseEncoderConfig(architecture="youtube_asl")`` and the projection, CTC head and decoder stay as they are.
Shapes: B batch, T frames, K keypoints, C coordinates, D model width.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import UMT5Config
from transformers.models.umt5.modeling_umt5 import UMT5Stack

from .pose_encoder import PoseEncoderConfig


def umt5_encoder_config(config: PoseEncoderConfig) -> UMT5Config:
    """The UMT5 encoder-stack config the peer's sizes translate to (T5's 32 buckets up to 128 frames apart)."""
    return UMT5Config(d_model=config.d_model, num_layers=config.n_layers, num_heads=config.n_heads,
                      d_kv=config.d_model // config.n_heads, d_ff=int(config.mlp_ratio * config.d_model),
                      dropout_rate=config.dropout, layer_norm_epsilon=config.norm_eps, feed_forward_proj="gated-gelu",
                      is_decoder=False, is_encoder_decoder=False, use_cache=False, vocab_size=1,
                      eos_token_id=None)  # no tokens: it reads frames


class UMT5EncoderStack(UMT5Stack):
    """A UMT5 encoder stack that always initialises as UMT5 does: Mesh-TensorFlow scales, not N(0, 0.02) or N(0, 1).

    T5 attention is unscaled and folds 1/sqrt(d) into its init (q ~ (D d_kv)^-1/2, k/v ~ D^-1/2, wo ~ d_ff^-1/2),
    so the scales matter. The stack is a ``PreTrainedModel``: transformers' ``initialize_weights`` dispatches its
    modules to its own ``_init_weights``, but for a model outside the ``transformers`` package (this class, and
    SignT5 around it) it passes ``is_custom_code=True``, which skips every module without direct parameters, i.e.
    ``UMT5Attention`` and the feed-forward whose branches set those scales: q, k, v, o would keep the generic Linear
    draw with UMT5's ``initializer_factor``, N(0, 1). The stack is transformers' own code, so its init runs as for
    UMT5 itself; weights loaded by ``from_pretrained`` are still flagged and left alone (tests/models/test_peer.py).
    """

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        super()._initialize_weights(module, is_custom_code=False)


class FlatPoseEncoder(nn.Module):
    """Poses (B, T, K, C) -> features (B, T, D) and their frame mask (B, T): one frame, one vector, no down-sampling.

    Initialisation: the stack (:class:`UMT5EncoderStack`) always runs UMT5's own init, built alone or inside our
    model, fresh or with keys missing in ``from_pretrained``; the input layer is ours and keeps PyTorch's fan-in
    init, like the rest of the pose side (``keep_torch_init``).
    """

    def __init__(self, config: PoseEncoderConfig):
        super().__init__()
        self.config = config
        k, c = config.keypoint_layout.num_points, config.input_dims
        self.input = nn.Linear(k * (c + 1), config.d_model)  # coordinates + a presence channel per point
        self.stack = UMT5EncoderStack(umt5_encoder_config(config))
        self.stack.embed_tokens = None  # it reads frames (inputs_embeds), never tokens

    def output_mask(self, frame_mask: torch.Tensor) -> torch.Tensor:
        """No down-sampling: the output frames are the input frames."""
        return frame_mask

    def forward(self, pose: torch.Tensor, point_mask: torch.Tensor, frame_mask: torch.Tensor | None = None,
                condition: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``condition`` (B, D), e.g. a sign-language embedding, is added to every frame before the encoder."""
        b, t = pose.shape[:2]
        if frame_mask is None:
            frame_mask = torch.ones(b, t, dtype=torch.bool, device=pose.device)
        point_mask = point_mask & frame_mask.unsqueeze(-1)  # (B, T, K)
        present = point_mask.unsqueeze(-1)  # (B, T, K, 1)
        pose = torch.where(present, pose, torch.zeros_like(pose))  # (B, T, K, C); missing points may hold NaN
        x = torch.cat([pose, present.to(pose.dtype)], dim=-1)  # (B, T, K, C+1): missing != at the origin
        x = self.input(x.reshape(b, t, -1))  # (B, T, D)
        if condition is not None:
            x = x + condition.unsqueeze(1).to(x.dtype)
        key_mask = frame_mask | ~frame_mask.any(-1, keepdim=True)  # an all-padding row attends everywhere
        x = self.stack(inputs_embeds=x, attention_mask=key_mask.long()).last_hidden_state  # (B, T, D)
        return x * frame_mask.unsqueeze(-1).to(x.dtype), frame_mask
