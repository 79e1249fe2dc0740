"""Stage 1: the CLIP-style contrastive model, pooled pose features against the UMT5 encoder's text features.

It shares :class:`SignT5Config` and the pose tower's name (``encoder``) with the stage-2 model, so its
checkpoint initialises stage 2 through ``from_pretrained``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from transformers import PreTrainedModel, UMT5EncoderModel
from transformers.utils import ModelOutput

from signt5.data.dataset import DataConfig

from .losses import ContrastiveHead
from .configuration import SignT5Config, build_config
from .encoder import SignT5Encoder
from .modeling import SignT5PreTrainedModel
from .pose_encoder import PoseEncoderConfig
from .text import load_umt5


@dataclass
class SignT5ContrastiveOutput(ModelOutput):
    loss: torch.Tensor | None = None
    logits_per_pose: torch.Tensor | None = None  # (B, B) scaled cosine similarities
    pose_embeds: torch.Tensor | None = None  # (B, E), L2-normalised
    text_embeds: torch.Tensor | None = None  # (B, E), L2-normalised



def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over dim 1 of x (B, T, D) where mask (B, T) is True."""
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class SignT5ForContrastivePretraining(SignT5PreTrainedModel):
    """Stage 1: pooled pose and pooled UMT5-encoder text embeddings aligned with symmetric InfoNCE.

    With a pretrained UMT5 (``freeze_text_encoder``) only the pose tower and the head learn; from
    scratch both towers train, CLIP-style.
    """

    _keys_to_ignore_on_load_unexpected = [r"^decoder\.", r"^lm_head\."]  # a stage-2 checkpoint's decoder

    def __init__(self, config: SignT5Config):
        super().__init__(config)
        self.encoder = SignT5Encoder(config)
        self.text_encoder = UMT5EncoderModel(config.text_config)  # its own embeddings: UMT5's shared table
        width = config.text_config.d_model
        self.head = ContrastiveHead(width, width, config.contrastive_dim)
        self.post_init()
        if config.freeze_text_encoder:
            self.text_encoder.requires_grad_(False)

    def train(self, mode: bool = True) -> "SignT5ForContrastivePretraining":
        super().train(mode)
        if self.config.freeze_text_encoder:
            self.text_encoder.eval()  # a frozen tower keeps dropout off
        return self

    def pose_features(self, pose: torch.Tensor, point_mask: torch.Tensor | None = None,
                      frame_mask: torch.Tensor | None = None,
                      sign_language_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.encoder(pose, point_mask, frame_mask, sign_language_ids)
        return masked_mean(out.last_hidden_state, out.attention_mask)  # (B, D)

    def text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_text_encoder):
            hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden, attention_mask.bool())  # (B, D)

    def forward(self, pose: torch.Tensor, point_mask: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None, input_ids: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None, sign_language_ids: torch.Tensor | None = None,
                **kwargs: Any) -> SignT5ContrastiveOutput:
        """Pose batch + its texts (tokenised) -> InfoNCE loss; pair i is (pose i, text i)."""
        if attention_mask is None:
            attention_mask = input_ids.ne(self.config.text_config.pad_token_id).long()
        pose_pooled = self.pose_features(pose, point_mask, frame_mask, sign_language_ids)
        text_pooled = self.text_features(input_ids, attention_mask)
        loss, pose_emb, text_emb = self.head(pose_pooled, text_pooled)
        logits = self.head.clamped_logit_scale().exp() * pose_emb @ text_emb.t()
        return SignT5ContrastiveOutput(loss=loss, logits_per_pose=logits, pose_embeds=pose_emb, text_embeds=text_emb)

    def load_umt5_weights(self, source: str | Path | PreTrainedModel) -> None:
        """Copy a pretrained UMT5's encoder (with its embeddings) into the text tower."""
        umt5 = load_umt5(source) if isinstance(source, (str, Path)) else source
        self.text_encoder.encoder.load_state_dict(umt5.encoder.state_dict())

    @classmethod
    def from_umt5(cls, umt5_dir: str | Path, pose_encoder: PoseEncoderConfig, data_config: DataConfig | None = None,
                  sign_languages: Sequence[str] = (), target: str = "text",
                  **config_kwargs: Any) -> "SignT5ForContrastivePretraining":
        """A new contrastive model whose text tower is a local pretrained UMT5 encoder, frozen."""
        umt5 = load_umt5(umt5_dir)
        config_kwargs.setdefault("freeze_text_encoder", True)
        model = cls(build_config(pose_encoder, umt5.config, data_config, sign_languages, target, **config_kwargs))
        model.load_umt5_weights(umt5)
        return model
