"""The YouTube-ASL peer (flattened points -> linear -> UMT5 encoder): shapes, masking, init, training, save/load."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from signt5.data.dataset import DataConfig, pad_batch, prepare_sample
from signt5.data.item import pose_item
from signt5.models.configuration import SignT5Config, build_config
from signt5.models.labels import model_inputs
from signt5.models.modeling import SignT5ForConditionalGeneration
from signt5.models.peer import FlatPoseEncoder
from signt5.models.pose_encoder import PoseEncoder, PoseEncoderConfig
from signt5.models.text import byte_tokenizer, umt5_config

from ..conftest import make_sample
from .test_pose_encoder import default_layout, random_batch

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
LANGUAGES = ["ase", "gsg"]


def peer_config(**overrides) -> PoseEncoderConfig:
    values = dict(architecture="youtube_asl", d_model=32, n_layers=2, n_heads=4, mlp_ratio=2.0, dropout=0.0)
    values.update(overrides)
    return PoseEncoderConfig(**values).with_layout(default_layout())


def peer_model(**kwargs) -> SignT5ForConditionalGeneration:
    torch.manual_seed(0)
    config = build_config(peer_config(), umt5_config("tiny"), sign_languages=LANGUAGES, **kwargs)
    return SignT5ForConditionalGeneration(config)


@pytest.fixture(scope="module")
def batch():
    """A real pad_batch of prepared fake samples (lengths 9, 14, 6)."""
    items = []
    for i, (frames, text, language) in enumerate(zip((9, 14, 6), ["hello", "Straße", "abc"], ("ase", "gsg", "xxx"))):
        sample = prepare_sample(make_sample("holistic_586", frames=frames, seed=i), DataConfig())
        items.append(pose_item(str(i), sample.coords, sample.mask, text, language))
    return pad_batch(items)


def test_outputs_keep_every_frame_and_the_frame_mask():
    torch.manual_seed(0)
    encoder = FlatPoseEncoder(peer_config()).eval()
    pose, point_mask, frame_mask = random_batch([7, 13, 10], seed=1)
    x, mask = encoder(pose, point_mask, frame_mask)
    assert x.shape == (3, 13, 32)  # no down-sampling
    assert torch.equal(mask, frame_mask) and torch.equal(encoder.output_mask(frame_mask), frame_mask)
    assert torch.isfinite(x).all()
    assert (x[~frame_mask] == 0).all() and (x[frame_mask].abs().sum(-1) > 0).all()
    full, full_mask = encoder(pose[:1, :7], point_mask[:1, :7])  # no frame mask: every frame is real
    assert full.shape == (1, 7, 32) and full_mask.all()


def test_padding_does_not_change_the_valid_frames():
    torch.manual_seed(0)
    encoder = FlatPoseEncoder(peer_config()).eval()
    pose, point_mask, frame_mask = random_batch([7, 13], seed=2)
    pose[0, 7:] = 5.0  # garbage in the padding: it must not leak in through attention
    point_mask[0, 7:] = True
    condition = torch.randn(2, 32)
    batched, _ = encoder(pose, point_mask, frame_mask, condition)
    alone, _ = encoder(pose[:1, :7], point_mask[:1, :7], frame_mask[:1, :7], condition[:1])
    torch.testing.assert_close(batched[0, :7], alone[0], atol=1e-5, rtol=1e-5)
    assert (batched[0, 7:] == 0).all()


def test_sign_language_condition_reaches_every_frame():
    torch.manual_seed(0)
    encoder = FlatPoseEncoder(peer_config()).eval()
    pose, point_mask, frame_mask = random_batch([6], seed=3)
    plain, _ = encoder(pose, point_mask, frame_mask)
    zero, _ = encoder(pose, point_mask, frame_mask, torch.zeros(1, 32))
    other, _ = encoder(pose, point_mask, frame_mask, torch.randn(1, 32))
    torch.testing.assert_close(plain, zero)
    assert ((other - plain).abs().sum(-1) > 1e-3).all()


def test_a_missing_point_differs_from_a_point_at_the_origin():
    torch.manual_seed(0)
    encoder = FlatPoseEncoder(peer_config()).eval()
    pose, point_mask, frame_mask = random_batch([5], seed=4)
    point_mask[0, 2, 30] = True
    pose[0, 2, 30] = 0.0  # a real point at (0, 0)
    at_origin, _ = encoder(pose, point_mask, frame_mask)
    missing_mask = point_mask.clone()
    missing_mask[0, 2, 30] = False
    missing, _ = encoder(pose, missing_mask, frame_mask)
    assert (missing[0, 2] - at_origin[0, 2]).abs().max() > 1e-3
    nan_pose = pose.clone()
    nan_pose[0, 2, 30] = float("nan")  # a missing point's coordinates are never read
    torch.testing.assert_close(encoder(nan_pose, missing_mask, frame_mask)[0], missing, rtol=0, atol=0)


def test_stack_starts_from_umt5_own_init_when_built_and_when_loaded_without_it(tmp_path):
    """Mesh-TensorFlow scales (T5 attention is unscaled), not the generic N(0, 0.02) nor N(0, initializer_factor);
    the input layer keeps PyTorch's fan-in init like the rest of the pose side."""
    torch.manual_seed(0)
    pose = peer_config(d_model=128, n_heads=4, mlp_ratio=4.0)
    model = SignT5ForConditionalGeneration(build_config(pose, umt5_config("tiny")))
    d, d_kv, d_ff = 128, 32, 512

    def check(m: SignT5ForConditionalGeneration) -> None:
        encoder = m.encoder.pose_encoder
        block = encoder.stack.block[0]
        attention, ff = block.layer[0].SelfAttention, block.layer[1].DenseReluDense
        expected = {attention.q.weight: (d * d_kv) ** -0.5, attention.k.weight: d ** -0.5,
                    attention.v.weight: d ** -0.5, attention.o.weight: d ** -0.5, ff.wi_0.weight: d ** -0.5,
                    ff.wo.weight: d_ff ** -0.5}
        for weight, std in expected.items():
            assert weight.std().item() == pytest.approx(std, rel=0.1)
        assert (encoder.stack.final_layer_norm.weight == 1).all()
        bound = 1 / math.sqrt(encoder.input.in_features)
        assert encoder.input.weight.abs().max() <= bound and encoder.input.weight.std() > 0.5 * bound / math.sqrt(3)

    check(model)
    model.save_pretrained(tmp_path)
    weights = load_file(str(tmp_path / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith("encoder.pose_encoder.")},
              str(tmp_path / "model.safetensors"), metadata={"format": "pt"})
    check(SignT5ForConditionalGeneration.from_pretrained(tmp_path))  # missing keys: initialised afresh, same way


def test_peer_model_trains_and_decodes(batch):
    model = peer_model(ctc_weight=0.5).train()
    assert isinstance(model.encoder.pose_encoder, FlatPoseEncoder)
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    out = model(**inputs)
    assert out.encoder_last_hidden_state.shape == (3, 14, 32)  # every frame, projected to the text width
    out.loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert no_grad == []
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    model.eval()
    inputs.pop("labels")
    generated = model.generate(**inputs, max_new_tokens=5)
    assert generated.shape[0] == 3 and generated.shape[1] <= 6
    assert len(model.ctc_decode(**inputs)) == 3


def test_save_and_load_give_identical_outputs(batch, tmp_path):
    model = peer_model().eval()
    inputs = model_inputs(batch, model.config, byte_tokenizer())
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["pose_encoder"]["architecture"] == "youtube_asl"
    loaded = SignT5ForConditionalGeneration.from_pretrained(tmp_path).eval()
    assert isinstance(loaded.encoder.pose_encoder, FlatPoseEncoder)
    torch.testing.assert_close(loaded(**inputs).logits, model(**inputs).logits, rtol=0, atol=0)
    torch.testing.assert_close(loaded.generate(**inputs, max_new_tokens=4), model.generate(**inputs, max_new_tokens=4))


def test_old_configs_load_as_gcn_rope_and_the_peer_config_builds():
    old = json.loads((CONFIGS / "pose_encoder_cpu.json").read_text())
    assert "architecture" not in old
    assert PoseEncoderConfig.from_dict(old).architecture == "gcn_rope"
    saved = {**PoseEncoderConfig.from_dict(old).with_layout(default_layout()).to_dict()}
    del saved["architecture"]  # a checkpoint's config.json written before the option existed
    config = SignT5Config(text_config=umt5_config("tiny"), pose_encoder=saved)
    assert config.pose_encoder_config.architecture == "gcn_rope"
    assert isinstance(SignT5ForConditionalGeneration(config).encoder.pose_encoder, PoseEncoder)
    with pytest.raises(ValueError, match="architecture"):
        PoseEncoderConfig(architecture="youtube")
    peer = PoseEncoderConfig.from_json(CONFIGS / "pose_encoder_youtube_asl_cpu.json")
    assert peer.architecture == "youtube_asl" and peer.time_stride == 1
    assert replace(peer, architecture="gcn_rope").time_stride == 2
    encoder = SignT5ForConditionalGeneration(build_config(peer, umt5_config("tiny"))).encoder.pose_encoder
    assert isinstance(encoder, FlatPoseEncoder) and encoder.input.in_features == 84 * 3
