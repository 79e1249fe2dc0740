"""SignT5: pose encoder -> projection -> UMT5 decoder (stage 2); the contrastive model is in ``contrastive.py``.

Both models share one config (``configuration.py``) and name the pose tower ``encoder`` (``encoder.py``), so a
stage-1 (contrastive) checkpoint loads into the stage-2 (translation) model with ``from_pretrained``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.umt5.modeling_umt5 import UMT5Stack

from signt5.data.dataset import DataConfig

from .alignment import (aligned_attention_bias, aligned_attention_loss, aligned_frames, ctc_viterbi, eager_attention,
                        emission_places, emission_positions,
                        guided_attention_loss, memory_positions, sinusoidal_positions, unit_positions)
from .configuration import SignT5Config, build_config, decoder_config
from .encoder import TORCH_DEFAULT_INIT, PoseEncoderOutput, SignT5Encoder, keep_torch_init
from .labels import LabelUnits
from .losses import LOGIT_SCALE_INIT, ContrastiveHead
from .pose_encoder import PoseEncoderConfig, SpatialGCN
from .spelling import MemorySpelling
from .text import IGNORE_INDEX, load_umt5

logger = logging.getLogger(__name__)

# positions ctc: in training a sample's unit counts start at a random 0..COUNT_SHIFT (memory and decoder alike),
# so counts past the longest training word are not new at test time; decoding starts mid-range, where training
# saw every count (from 0 the first letters were misread: BENCHMARKS.md)
COUNT_SHIFT = 32
CTC_BLANK = 0  # the pad id of the byte vocabulary and of UMT5's; class 0 of the letter units



class SignT5PreTrainedModel(PreTrainedModel):
    config: SignT5Config
    config_class = SignT5Config
    base_model_prefix = "signt5"
    main_input_name = "pose"
    _no_split_modules = ["UMT5Block", "TransformerBlock"]
    _supports_sdpa = True

    def _init_weights(self, module: nn.Module) -> None:
        if getattr(module, TORCH_DEFAULT_INIT, False):
            module.reset_parameters()  # the pose side keeps PyTorch's fan-in init (see keep_torch_init)
            return
        super()._init_weights(module)  # Linear/Conv/Embedding ~ N(0, initializer_range), norms = 1
        if isinstance(module, SpatialGCN):
            init.zeros_(module.bias)
        elif isinstance(module, ContrastiveHead):
            init.constant_(module.logit_scale, LOGIT_SCALE_INIT)
        elif isinstance(module, SignT5ForConditionalGeneration) and not self.config.tie_word_embeddings:
            init.normal_(module.lm_head.weight, mean=0.0, std=self.config.text_config.initializer_factor)

    def sign_language_ids(self, codes: Sequence[str | None]) -> torch.Tensor:
        return torch.tensor(self.config.sign_language_ids(codes), dtype=torch.long, device=self.device)


class SignT5ForConditionalGeneration(SignT5PreTrainedModel, GenerationMixin, LabelUnits):
    """Pose encoder -> projection -> UMT5 decoder cross-attending to the pose features; works with generate()."""

    _tied_weights_keys = {"lm_head.weight": "decoder.embed_tokens.weight"}
    _keys_to_ignore_on_load_unexpected = [r"^text_encoder\.", r"^head\."]  # a stage-1 checkpoint's extra towers

    def __init__(self, config: SignT5Config):
        super().__init__(config)
        self.encoder = SignT5Encoder(config)
        self.decoder = UMT5Stack(decoder_config(config.text_config))
        self.lm_head = nn.Linear(config.text_config.d_model, config.text_config.vocab_size, bias=False)
        ctc_classes = len(config.ctc_units) + 1 if config.ctc_units else config.text_config.vocab_size
        self.ctc_head = (keep_torch_init(nn.Linear(config.text_config.d_model, ctc_classes))
                         if config.ctc_weight > 0 else None)
        self.memory_spelling = (MemorySpelling(config.ctc_units, ctc_classes, config.text_config.d_model)
                                if config.memory_spelling else None)
        self.post_init()

    def get_encoder(self, modality: str | None = None) -> SignT5Encoder:
        return self.encoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.decoder.set_input_embeddings(value)

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def _shift_right(self, labels: torch.Tensor) -> torch.Tensor:
        start = self.config.text_config.decoder_start_token_id
        shifted = labels.new_full(labels.shape, start)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == IGNORE_INDEX, self.config.text_config.pad_token_id)

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return self._shift_right(labels)

    def forward(self, pose: torch.Tensor | None = None, point_mask: torch.Tensor | None = None,
                frame_mask: torch.Tensor | None = None, sign_language_ids: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, decoder_input_ids: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: PoseEncoderOutput | tuple | None = None, cache: Any = None,
                use_cache: bool | None = None, ctc_only: bool = False,
                ctc_alignment: Sequence[tuple[list[int] | None, list[int | None]]] | None = None,
                **kwargs: Any) -> Seq2SeqLMOutput:
        """Teacher-forced loss with ``labels`` (B, L; -100 = ignore), or one decoding step inside generate().

        ``ctc_only``: the CTC loss alone, the decoder not run (stage 2's encoder phase, training/decoder_phase.py).
        ``ctc_alignment``: the labels' :meth:`forced_alignment`, when the caller has it (a frozen encoder's).
        In training, a CTC loss that cannot move anything (frozen head, frozen memory) is left out of the loss.
        """
        if encoder_outputs is None:
            encoder_outputs = self.encoder(pose, point_mask, frame_mask, sign_language_ids)
        if ctc_only:
            return self.encoder_ctc_loss(encoder_outputs, labels, sign_language_ids)
        hidden = encoder_outputs[0]  # (B, T', D)
        encoder_mask = getattr(encoder_outputs, "attention_mask", None)
        if encoder_mask is None and frame_mask is not None:
            encoder_mask = self.encoder.pose_encoder.output_mask(frame_mask)
        if labels is not None and decoder_input_ids is None:
            decoder_input_ids = self._shift_right(labels)
        extra = {k: kwargs[k] for k in ("output_attentions", "output_hidden_states") if k in kwargs}
        guided = labels is not None and self.training and self.config.guided_attention_weight > 0
        if guided:
            extra["output_attentions"] = True
        memory, memory_mask = self.decoder_memory(hidden, encoder_mask)  # (B, S, D), (B, S)
        frames_memory = memory_mask is not None and self.config.decoder_memory == "frames"
        reusable = labels is None and isinstance(encoder_outputs, PoseEncoderOutput)  # generate(): one memory
        reused = encoder_outputs.memory_positions if reusable else None  # it depends on the memory alone
        if reused is not None and reused.shape != memory.shape:
            reused = None
        places = encoder_outputs.memory_places if reused is not None else None  # (B, S): see emission_places
        ctc_log_probs = None  # (B, T', C): for the CTC loss, the CTC prior and positions counted in emissions
        reads_ctc = self.config.positions == "ctc" or self.memory_spelling is not None
        if self.ctc_head is not None and encoder_mask is not None and (
                labels is not None or (reads_ctc and frames_memory and reused is None)):
            ctc_log_probs = self.ctc_head(hidden).float().log_softmax(-1)
        alignment = None  # training: the CTC forced alignment of the labels, and each token's unit
        if labels is not None and ctc_log_probs is not None and frames_memory and self.aligns_labels(guided):
            alignment = (ctc_alignment if ctc_alignment is not None else
                         self.forced_alignment(ctc_log_probs, memory_mask, labels, sign_language_ids))
        scale = self.config.decoder_gradient_to_encoder
        if scale != 1.0 and torch.is_grad_enabled():
            memory = memory * scale + memory.detach() * (1 - scale)  # same values; the decoder's gradient scaled
        embeds = self.decoder.embed_tokens(decoder_input_ids)  # (B, L, D)
        cross_mask = memory_mask  # (B, S), or an additive (B, 1, L, S) with aligned_attention_slope
        if self.config.positions != "none" or self.memory_spelling is not None:
            past = cache.get_seq_length() if cache is not None else 0
            shift = None  # unit counts start at a random offset in training, mid-range otherwise (see COUNT_SHIFT)
            if self.config.positions == "ctc":
                shift = (torch.randint(0, COUNT_SHIFT + 1, (embeds.shape[0], 1), device=embeds.device)
                         if self.training and labels is not None
                         else torch.full((embeds.shape[0], 1), COUNT_SHIFT // 2, device=embeds.device))
            if places is None and self.config.positions == "ctc" and ctc_log_probs is not None and frames_memory:
                places = self.emission_places(memory_mask, ctc_log_probs, alignment)
            table = reused if reused is not None else self.memory_additions(memory, memory_mask, ctc_log_probs,
                                                                             places, shift)
            if reusable:
                encoder_outputs.memory_positions, encoder_outputs.memory_places = table, places
            memory = memory + table
            if self.config.positions == "ctc":
                counts = kwargs.get("decoder_unit_counts")
                if counts is None:
                    counts = self.decoder_unit_counts(decoder_input_ids)
                embeds = embeds + unit_positions(counts if shift is None else counts + shift, past,
                                                 embeds.shape[2], embeds.dtype)
                if self.config.aligned_attention_slope and places is not None:
                    cross_mask = aligned_attention_bias(places, memory_mask.bool(), counts,
                                                        self.config.aligned_attention_slope, memory.dtype)
            elif self.config.positions != "none":
                embeds = embeds + sinusoidal_positions(embeds.shape[1], embeds.shape[2], past, embeds.device,
                                                       embeds.dtype)
        with eager_attention(self.decoder.config, guided):  # sdpa gives no attention weights
            decoded = self.decoder(inputs_embeds=embeds, attention_mask=decoder_attention_mask,
                                   encoder_hidden_states=memory, encoder_attention_mask=cross_mask,
                                   cache=cache, use_cache=use_cache, **extra)
        sequence = decoded.last_hidden_state  # (B, L, D)
        if self.config.tie_word_embeddings:
            sequence = sequence * self.config.text_config.d_model ** -0.5
        logits = self.lm_head(sequence)  # (B, L, V)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), labels.to(logits.device).view(-1),
                                   ignore_index=IGNORE_INDEX, label_smoothing=self.config.label_smoothing)
            if ctc_log_probs is not None:
                weight = self.config.ctc_weight
                loss = (1 - weight) * loss
                if ctc_log_probs.requires_grad or not self.training:  # else a constant (the decoder phase)
                    loss = loss + weight * self.ctc_loss(ctc_log_probs, encoder_mask, labels, sign_language_ids)
            if guided and memory_mask is not None:
                loss = loss + self.config.guided_attention_weight * self.attention_prior_loss(
                    decoded.cross_attentions, labels, memory_mask, alignment)
        return Seq2SeqLMOutput(loss=loss, logits=logits, cache=decoded.cache,
                               decoder_hidden_states=decoded.hidden_states, decoder_attentions=decoded.attentions,
                               cross_attentions=decoded.cross_attentions, encoder_last_hidden_state=hidden)

    def encoder_ctc_loss(self, encoded: PoseEncoderOutput, labels: torch.Tensor | None,
                         sign_language_ids: torch.Tensor | None = None) -> Seq2SeqLMOutput:
        """The CTC head's loss on the encoder's output, unweighted: what the pose encoder learns from."""
        if self.ctc_head is None or labels is None or encoded.attention_mask is None:
            raise ValueError("ctc_only needs a CTC head (ctc_weight > 0), labels and the encoder's frame mask")
        hidden = encoded.last_hidden_state  # (B, T', D)
        log_probs = self.ctc_head(hidden).float().log_softmax(-1)  # (B, T', C)
        loss = self.ctc_loss(log_probs, encoded.attention_mask, labels, sign_language_ids)
        return Seq2SeqLMOutput(loss=loss, encoder_last_hidden_state=hidden)

    def decoder_memory(self, hidden: torch.Tensor, mask: torch.Tensor | None
                       ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What cross-attention reads: the encoder frames, or with ``ctc_segments`` one vector per run of
        frames that the CTC head labels alike (blank runs included), averaged.

        CTC compression (Gaido et al. 2021; Liu et al. 2020) turns alignment into reading segments in
        order, about one per letter and one per gap, while the decoder can still reorder for translation.
        """
        if self.config.decoder_memory == "frames" or self.ctc_head is None:
            return hidden, mask
        b, t, d = hidden.shape
        if mask is None:
            mask = torch.ones(b, t, dtype=torch.bool, device=hidden.device)
        with torch.no_grad():
            best = self.ctc_head(hidden).argmax(-1)  # (B, T')
            starts = torch.ones_like(mask)
            starts[:, 1:] = best[:, 1:] != best[:, :-1]
            segment = (starts & mask).long().cumsum(1) - 1  # (B, T'): the run each frame belongs to
            length = int(segment.masked_fill(~mask, -1).max().item()) + 1
            segment = segment.masked_fill(~mask, length).clamp_min(0)  # padding goes to a spare slot, dropped
        sums = hidden.new_zeros(b, length + 1, d).scatter_add(1, segment.unsqueeze(-1).expand(b, t, d), hidden)
        counts = hidden.new_zeros(b, length + 1).scatter_add(1, segment, mask.to(hidden.dtype))
        memory = sums[:, :length] / counts[:, :length].clamp_min(1).unsqueeze(-1)  # (B, S, D)
        return memory, counts[:, :length] > 0

    def ctc_loss(self, log_probs: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                 sign_language_ids: torch.Tensor | None = None) -> torch.Tensor:
        """CTC of the CTC head's log-probabilities (B, T', C) against the target (no eos; no spaces with the
        byte vocabulary).

        The monotonic alignment it forces teaches the encoder where each letter is long before
        cross-attention finds it, so the decoder trains in a fraction of the steps.
        """
        rows = self.ctc_targets(labels, sign_language_ids)
        device = log_probs.device
        targets = torch.tensor([t for row in rows for t in row], dtype=torch.long, device=device)
        return F.ctc_loss(log_probs.transpose(0, 1), targets, mask.sum(1),
                          torch.tensor([len(r) for r in rows], device=device),
                          blank=CTC_BLANK, reduction="mean", zero_infinity=True)

    def prepare_inputs_for_generation(self, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """generate()'s step inputs; with ``positions`` ctc also the unit counts of the whole prefix, which the
        step's own (last) token alone cannot give."""
        inputs = super().prepare_inputs_for_generation(input_ids, *args, **kwargs)
        if self.config.positions == "ctc":
            step = inputs["decoder_input_ids"].shape[1]
            inputs["decoder_unit_counts"] = self.decoder_unit_counts(input_ids)[:, -step:]
        return inputs

    def aligns_labels(self, guided: bool) -> bool:
        """Whether a teacher-forced forward reads the labels' CTC forced alignment: for positions counted in CTC
        emissions, or (``guided``: the prior is on) for guided attention sent to the CTC-aligned frames."""
        return (self.ctc_head is not None and self.config.decoder_memory == "frames"
                and (self.config.positions == "ctc" or (guided and self.config.guided_attention == "ctc")))

    def forced_alignment(self, ctc_log_probs: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                         sign_language_ids: torch.Tensor | None = None
                         ) -> list[tuple[list[int] | None, list[int | None]]]:
        """Per sample, the CTC Viterbi path of its labels (the unit index per frame, -1 for blank; None when
        they do not fit the frames) and each label token's unit (see :meth:`token_units`)."""
        rows = self.label_units(labels, sign_language_ids)
        paths = ctc_viterbi(ctc_log_probs, mask.sum(1).tolist(), [classes for classes, _ in rows], CTC_BLANK)
        return [(path, units) for path, (_, units) in zip(paths, rows)]

    def emission_places(self, mask: torch.Tensor, ctc_log_probs: torch.Tensor,
                        alignment: Sequence[tuple[list[int] | None, Any]] | None = None) -> torch.Tensor:
        """(B, S) each memory frame's place among the CTC units (:func:`emission_places`): on the best path, or in
        training on the labels' forced alignment (where the reference's letters are, not where CTC guesses)."""
        emissions = ctc_log_probs.detach().argmax(-1)  # (B, S)
        if alignment is not None:
            for i, (path, _) in enumerate(alignment):
                if path is not None:
                    emissions[i, :len(path)] = torch.tensor(path, device=emissions.device) + 1
        return emission_places(emissions, mask, CTC_BLANK)

    def position_table(self, memory: torch.Tensor, mask: torch.Tensor | None, places: torch.Tensor | None,
                       shift: torch.Tensor | None = None) -> torch.Tensor:
        """The absolute positions added to the memory (B or 1, S, D): counted in frames (``sinusoidal``,
        ``both_ends``) or in CTC emissions (``ctc``, given the frames' ``places``)."""
        width = memory.shape[2]
        if self.config.positions == "ctc" and places is not None and mask is not None:
            return emission_positions(places, mask, width, memory.dtype, shift)
        if self.config.positions in ("both_ends", "ctc") and mask is not None:
            return memory_positions(mask, width, memory.dtype)
        return sinusoidal_positions(memory.shape[1], width, 0, memory.device, memory.dtype)

    def memory_additions(self, memory: torch.Tensor, mask: torch.Tensor | None, ctc_log_probs: torch.Tensor | None,
                         places: torch.Tensor | None = None, shift: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S, D) added to the memory: its positions and, with ``memory_spelling``, the CTC reading's
        spelling. Both depend on the memory alone, so generate() computes them once."""
        table = (self.position_table(memory, mask, places, shift).expand_as(memory)
                 if self.config.positions != "none" else torch.zeros_like(memory))
        if self.memory_spelling is not None and ctc_log_probs is not None:
            table = table + self.memory_spelling(ctc_log_probs, self.decoder.embed_tokens).to(memory.dtype)
        return table

    def attention_prior_loss(self, cross_attentions: Sequence[torch.Tensor], labels: torch.Tensor,
                             memory_mask: torch.Tensor,
                             alignment: Sequence[tuple[list[int] | None, list[int | None]]] | None = None
                             ) -> torch.Tensor:
        """Guided attention: each token's attention mass on its CTC-aligned frames (``guided_attention``
        ctc, given the ``alignment``), or off the diagonal (diagonal, also the fallback without a CTC head
        or with CTC segments).

        The CTC head finds the letters long before the decoder does; its forced alignment tells
        cross-attention exactly which frames spell each token, where the diagonal only guesses.
        """
        token_mask = labels.ne(IGNORE_INDEX)
        if self.config.guided_attention == "diagonal" or alignment is None:
            return guided_attention_loss(cross_attentions, token_mask, memory_mask)
        width = memory_mask.shape[1]
        frames = torch.stack([aligned_frames(path, units, width) if path is not None
                              else torch.zeros(len(units), width, dtype=torch.bool)  # no alignment: no prior
                              for path, units in alignment])
        return aligned_attention_loss(cross_attentions, frames.to(labels.device), token_mask)

    def ctc_log_probs(self, encoder_outputs: PoseEncoderOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """The CTC head's log-probabilities over the encoder frames (B, T', C), float32, and their mask (B, T')."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (ctc_weight 0): use attention decoding")
        hidden = encoder_outputs.last_hidden_state
        return self.ctc_head(hidden).float().log_softmax(-1), encoder_outputs.attention_mask

    @torch.no_grad()
    def ctc_decode(self, pose: torch.Tensor, point_mask: torch.Tensor | None = None,
                   frame_mask: torch.Tensor | None = None, sign_language_ids: torch.Tensor | None = None,
                   **kwargs: Any) -> list[list[int]]:
        """Greedy CTC decoding of the encoder (best path, repeats merged, blanks dropped): token ids per sample."""
        if self.ctc_head is None:
            raise ValueError("this model has no CTC head (ctc_weight 0): use attention decoding")
        out = self.encoder(pose, point_mask, frame_mask, sign_language_ids)
        log_probs, frame_mask = self.ctc_log_probs(out)
        best = log_probs.argmax(-1)  # (B, T')
        blank = CTC_BLANK
        decoded = []
        for row, mask in zip(best.tolist(), frame_mask.tolist()):
            ids, previous = [], None
            for token, valid in zip(row, mask):
                if valid and token != previous and token != blank:
                    ids.append(token)
                previous = token if valid else previous
            decoded.append(ids)
        return decoded

    def load_umt5_weights(self, source: str | Path | PreTrainedModel) -> None:
        """Copy a pretrained UMT5's decoder, embeddings and lm_head (its encoder is not needed here)."""
        umt5 = load_umt5(source) if isinstance(source, (str, Path)) else source
        self.decoder.load_state_dict(umt5.decoder.state_dict())
        self.lm_head.load_state_dict(umt5.lm_head.state_dict())

    @classmethod
    def from_umt5(cls, umt5_dir: str | Path, pose_encoder: PoseEncoderConfig, data_config: DataConfig | None = None,
                  sign_languages: Sequence[str] = (), target: str = "text",
                  **config_kwargs: Any) -> "SignT5ForConditionalGeneration":
        """A new model around a local pretrained UMT5 (e.g. ``models/umt5``); the pose side starts random."""
        umt5 = load_umt5(umt5_dir)
        model = cls(build_config(pose_encoder, umt5.config, data_config, sign_languages, target, **config_kwargs))
        model.load_umt5_weights(umt5)
        return model
