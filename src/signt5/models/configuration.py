"""SignT5's configuration, apart from the model (``modeling.py``) as in transformers: the pose encoder's, UMT5's and
the data preprocessing's settings a checkpoint was trained with, in one ``config.json``.
"""

from __future__ import annotations

import copy
from typing import Any, Sequence

from transformers import PreTrainedConfig, UMT5Config
from transformers.configuration_utils import SubConfigSpec

from signt5.data.dataset import DataConfig, resolve_components
from signt5.data.layout import KeypointLayout, layout_by_name

from .choices import DECODER_MEMORIES, GUIDES, POSITIONS
from .pose_encoder import PoseEncoderConfig
from .text import BYTE_VOCAB_SIZE, UMT5_PRESETS

DEFAULT_SOURCE_LAYOUT = "holistic_586"


def selected_layout(data_config: DataConfig | None = None,
                    source: KeypointLayout | str = DEFAULT_SOURCE_LAYOUT) -> KeypointLayout:
    """The model's input layout: the data layer's selection (``DataConfig.components``) of ``source``."""
    data_config = data_config or DataConfig()
    source = layout_by_name(source) if isinstance(source, str) else source
    return source.select(resolve_components(source, data_config.components))[0]


def decoder_config(text_config: UMT5Config) -> UMT5Config:
    """UMT5's decoder stack config: a copy with ``is_decoder`` set and the decoder's layer count."""
    config = copy.deepcopy(text_config)
    config.is_decoder = True
    config.num_layers = text_config.num_decoder_layers
    return config


class SignT5Config(PreTrainedConfig):
    """Pose encoder config + UMT5 config + the data preprocessing a checkpoint was trained with."""

    model_type = "signt5"
    sub_configs_defaults = {
        "text_config": SubConfigSpec(UMT5Config, init_kwargs={"vocab_size": BYTE_VOCAB_SIZE, **UMT5_PRESETS["cpu"]}),
    }

    text_config: UMT5Config | dict | None = None
    pose_encoder: dict | None = None  # PoseEncoderConfig.to_dict(), layout included
    data: dict | None = None  # DataConfig.to_dict()
    sign_languages: list | None = None  # codes for conditioning; id = index + 1, 0 = unknown
    target: str = "text"  # gloss | text
    contrastive_dim: int = 256
    decoding: str = "attention"  # attention (generate()) | ctc (greedy CTC on the encoder) | joint; picked on dev
    ctc_weight: float = 0.7  # CTC loss on the encoder output beside the decoder's (hybrid CTC/attention); 0: off
    joint_ctc_weight: float = 0.5  # joint decoding: weight of the CTC prefix score beside the decoder's
    label_smoothing: float = 0.0  # training: the decoder's cross-entropy against targets smoothed by this share
    ctc_units: list | None = None  # CTC classes (blank = 0) as "language:letter" (gloss target, byte vocabulary)
    letter_tokens: list | None = None  # letters of several bytes with a decoder token each, ids 259, 260, ...
    freeze_text_encoder: bool = False  # contrastive stage: keep a pretrained UMT5 encoder fixed
    positions: str = "both_ends"  # absolute positions on the decoder's memory (from both ends) and inputs | sinusoidal | none
    decoder_memory: str = "frames"  # what cross-attention reads: frames | ctc_segments (frames averaged per CTC run)
    guided_attention_weight: float = 0.0  # training: weight of the prior on cross-attention (0: off)
    guided_attention: str = "diagonal"  # the prior: ctc (each token's CTC-aligned frames) | diagonal
    decoder_gradient_to_encoder: float = 1.0  # training: share of the decoder's gradient the encoder gets (0: CTC alone)
    memory_spelling: bool = False  # add the CTC posteriors' spelling, in the decoder's token embeddings, to its memory
    # positions ctc: cross-attention logits lowered by this much per CTC unit between a frame and the letter the
    # token reads (0: off; alignment.aligned_attention_bias)
    aligned_attention_slope: float = 0.0
    signing_rate: float | None = None  # training split's median letters/s (decoding/rate.py); None: not normalised
    signing_rate_band: float = 2.0  # decoding resamples a sample to signing_rate when its rate is off by more
    initializer_range: float = 0.02
    is_encoder_decoder: bool = True

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.positions not in POSITIONS:
            raise ValueError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")
        if self.guided_attention not in GUIDES:
            raise ValueError(f"guided_attention must be one of {', '.join(GUIDES)}, got {self.guided_attention!r}")
        if self.decoder_memory not in DECODER_MEMORIES:
            raise ValueError(f"decoder_memory must be one of {', '.join(DECODER_MEMORIES)}, got {self.decoder_memory!r}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must lie in [0, 1), got {self.label_smoothing}")
        if self.memory_spelling and (self.ctc_weight <= 0 or self.decoder_memory != "frames"):
            raise ValueError("memory_spelling needs a CTC head (ctc_weight > 0) and decoder_memory 'frames'")
        if self.aligned_attention_slope < 0 or (self.aligned_attention_slope and self.positions != "ctc"):
            raise ValueError(f"aligned_attention_slope must be >= 0, and needs positions 'ctc' (got "
                             f"{self.aligned_attention_slope} with positions {self.positions!r})")
        if self.data is None:
            self.data = DataConfig().to_dict()
        pose = PoseEncoderConfig.from_dict(self.pose_encoder or {})
        if pose.layout is None:
            pose = pose.with_layout(selected_layout(DataConfig.from_dict(self.data)))
        self.pose_encoder = pose.to_dict()
        self.sign_languages = list(self.sign_languages or [])
        # UMT5 ties lm_head to the embeddings (and rescales) unless the checkpoint had them apart (umt5-small)
        self.tie_word_embeddings = bool(getattr(self.text_config, "scale_decoder_outputs", True))

    def get_text_config(self, decoder: bool | None = None, encoder: bool | None = None) -> PreTrainedConfig:
        """The UMT5 config; for the decoder side with its own layer count (generate() sizes its cache on it)."""
        if decoder and not encoder:
            return decoder_config(self.text_config)
        return self.text_config

    @property
    def pose_encoder_config(self) -> PoseEncoderConfig:
        return PoseEncoderConfig.from_dict(self.pose_encoder)

    @property
    def data_config(self) -> DataConfig:
        return DataConfig.from_dict(self.data)

    def sign_language_ids(self, codes: Sequence[str | None]) -> list[int]:
        """Conditioning ids for sign-language codes: index + 1, and 0 for unknown or missing codes."""
        index = {code: i + 1 for i, code in enumerate(self.sign_languages)}
        return [index.get(code, 0) if code else 0 for code in codes]


def build_config(pose_encoder: PoseEncoderConfig, text_config: UMT5Config, data_config: DataConfig | None = None,
                 sign_languages: Sequence[str] = (), target: str = "text", **kwargs: Any) -> SignT5Config:
    """A SignT5Config whose pose layout and input dims follow the data config."""
    data_config = data_config or DataConfig()
    if pose_encoder.layout is None:
        pose_encoder = pose_encoder.with_layout(selected_layout(data_config))
    if pose_encoder.input_dims != data_config.dims:
        raise ValueError(f"pose encoder takes {pose_encoder.input_dims} coordinates, the data gives {data_config.dims}")
    return SignT5Config(text_config=text_config, pose_encoder=pose_encoder.to_dict(), data=data_config.to_dict(),
                        sign_languages=list(sign_languages), target=target, **kwargs)
