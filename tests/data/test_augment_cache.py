"""Augmentation keeps masks honest; the pre-computed cache matches direct loading and skips bad samples."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.augment import AugmentConfig, augment
from signt5.data.cache import PreparedDataset, prepare_all
from signt5.data.dataset import DataConfig, SampleLoader, prepare_sample
from signt5.data.manifest import ManifestEntry


def _prepared(real_clip):
    return prepare_sample(real_clip, DataConfig())


def test_augment_is_seeded_and_keeps_missing_points_missing(real_clip):
    s = _prepared(real_clip)
    hands = s.layout.hand_slices()
    cfg = AugmentConfig()
    a = augment(s.coords, s.mask, hands, np.random.default_rng(1), cfg)
    b = augment(s.coords, s.mask, hands, np.random.default_rng(1), cfg)
    c = augment(s.coords, s.mask, hands, np.random.default_rng(2), cfg)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[0].shape != c[0].shape or not np.allclose(a[0], c[0])
    for coords, mask in (a, c):
        assert (coords[~mask] == 0).all()
        never_seen = ~s.mask.any(axis=0)
        assert not mask[:, never_seen].any()


def test_augment_geometry_without_noise(real_clip):
    s = _prepared(real_clip)
    cfg = AugmentConfig(speed=(1, 1), rotation_degrees=0, scale=(2, 2), shift=0, jitter=0, drop_hand=0)
    coords, mask = augment(s.coords, s.mask, [], np.random.default_rng(0), cfg)
    np.testing.assert_allclose(coords, s.coords * 2, rtol=1e-6)
    np.testing.assert_array_equal(mask, s.mask)
    cfg = AugmentConfig(speed=(2, 2), rotation_degrees=0, scale=(1, 1), shift=0, jitter=0, drop_hand=0)
    coords, _ = augment(s.coords, s.mask, [], np.random.default_rng(0), cfg)
    assert coords.shape[0] == round(s.num_frames / 2)


def test_augment_drops_hands(real_clip):
    s = _prepared(real_clip)
    cfg = AugmentConfig(speed=(1, 1), drop_hand=1.0)
    right = s.layout.component_slice("RIGHT_HAND_LANDMARKS")
    _, mask = augment(s.coords, s.mask, s.layout.hand_slices(), np.random.default_rng(3), cfg)
    assert mask[:, right].sum() < s.mask[:, right].sum()


def test_flicker_loses_a_whole_hand_for_one_to_three_frames_at_a_time(real_clip):
    s = _prepared(real_clip)
    right = s.layout.component_slice("RIGHT_HAND_LANDMARKS")
    seen = s.mask[:, right].any(axis=1)
    cfg = AugmentConfig(speed=(1, 1), rotation_degrees=0, scale=(1, 1), shift=0, jitter=0, drop_hand=0, flicker=0.3)
    lengths = []
    for seed in range(20):
        _, mask = augment(s.coords, s.mask, s.layout.hand_slices(), np.random.default_rng(seed), cfg)
        lost = seen & ~mask[:, right].any(axis=1)  # (T,)
        np.testing.assert_array_equal(mask[~lost], s.mask[~lost])  # other frames keep their points
        np.testing.assert_array_equal(np.delete(mask, right, axis=1), np.delete(s.mask, right, axis=1))
        assert not mask[lost, right].any()  # the whole hand goes
        edges = np.diff(np.concatenate([[0], lost.astype(int), [0]]))
        lengths += list(np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1))
    assert set(lengths) == {1, 2, 3}


def test_flicker_is_on_by_default_but_off_for_configs_saved_before_it():
    assert AugmentConfig().flicker > 0
    assert AugmentConfig.from_dict({"speed": [0.75, 1.35]}).flicker == 0.0
    assert AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig()


def test_train_flags_set_the_speed_range_and_flicker():
    from signt5.cli import _train_config, build_parser
    from signt5.data.augment import WIDE_SPEED

    args = build_parser().parse_args(["train", "--augment_speed", *map(str, WIDE_SPEED), "--augment_flicker", "0.05",
                                      "--augment_speed_scale", "log"])
    config = _train_config(args, "finetune", "out")
    assert config.augment.speed == WIDE_SPEED == (0.5, 2.5) and config.augment.flicker == 0.05
    assert config.augment.speed_scale == "log"
    default = _train_config(build_parser().parse_args(["train"]), "finetune", "out")
    assert default.augment == AugmentConfig()


@pytest.fixture()
def entries(tmp_path, real_clip_path):
    good = tmp_path / "a.pose"
    good.write_bytes(real_clip_path.read_bytes())
    bad = tmp_path / "b.pose"
    bad.write_bytes(b"garbage")
    return [ManifestEntry("a", good, gloss="A", sign_language="ase"),
            ManifestEntry("b", bad, gloss="B", sign_language="ase"),
            ManifestEntry("c", good, gloss="A A", sign_language="ase")]


def test_cache_matches_direct_loading_and_skips_broken(tmp_path, entries):
    config = DataConfig()
    prepared = prepare_all(entries, config, cache_dir=tmp_path / "cache")
    assert [e.id for e in prepared.entries] == ["a", "c"]
    assert len(prepared.skipped) == 1 and prepared.skipped[0].startswith("b: ") and "b.pose" in prepared.skipped[0]
    direct = SampleLoader(config).load(entries[0])
    coords, mask = prepared.get(0)
    np.testing.assert_array_equal(coords, direct.coords)
    np.testing.assert_array_equal(mask, direct.mask)
    again = prepare_all(entries, config, cache_dir=tmp_path / "cache")  # served from disk
    np.testing.assert_array_equal(again.coords, prepared.coords)
    assert again.skipped == prepared.skipped and [e.id for e in again.entries] == ["a", "c"]
    assert again.layout == prepared.layout == direct.layout  # the prepared points' layout (mirror augmentation)
    assert again.hand_slices == prepared.layout.hand_slices()
    other = prepare_all(entries, DataConfig(normalization="minmax"), cache_dir=tmp_path / "cache")
    assert not np.allclose(other.coords, prepared.coords)
    assert len(list((tmp_path / "cache").iterdir())) == 2


def test_prepared_dataset_augments_per_epoch(tmp_path, entries):
    prepared = prepare_all(entries[:1], DataConfig())
    ds = PreparedDataset(prepared, target="gloss", augment_config=AugmentConfig(), seed=0)
    first = ds[0]["pose"]
    np.testing.assert_array_equal(first, ds[0]["pose"])
    ds.set_epoch(1)
    assert first.shape != ds[0]["pose"].shape or not np.allclose(first, ds[0]["pose"])
    plain = PreparedDataset(prepared, target="gloss")
    np.testing.assert_array_equal(plain[0]["pose"], prepared.get(0)[0])
    assert plain[0]["label"] == "A"


@pytest.mark.parametrize("factor", [0.5, 2.0])
def test_speed_augmentation_keeps_the_label(entries, factor):
    prepared = prepare_all(entries[2:], DataConfig())
    still = dict(rotation_degrees=0, scale=(1, 1), shift=0, jitter=0, drop_hand=0, flicker=0)
    ds = PreparedDataset(prepared, target="gloss", augment_config=AugmentConfig(speed=(factor, factor), **still))
    item, plain = ds[0], PreparedDataset(prepared, target="gloss")[0]
    assert item["label"] == plain["label"] == "A A"
    assert len(item["pose"]) == round(len(plain["pose"]) / factor) != len(plain["pose"])


def test_log_scale_speed_draws_slowing_and_speeding_alike():
    """On (0.5, 2.5) a log-scale draw slows (< 1) 43 % of the time (ln 2 / ln 5), a linear one 1 in 4."""
    from signt5.data.augment import augment

    coords, mask = np.ones((100, 4, 2), np.float32), np.ones((100, 4), bool)
    lengths = {}
    for scale in ("linear", "log"):
        config = AugmentConfig(speed=(0.5, 2.5), speed_scale=scale, drop_hand=0, flicker=0)
        rng = np.random.default_rng(0)
        lengths[scale] = np.array([len(augment(coords, mask, [], rng, config)[0]) for _ in range(2000)])
    assert abs((lengths["log"] > 100).mean() - np.log(2) / np.log(5)) < 0.04
    assert abs((lengths["linear"] > 100).mean() - 0.25) < 0.04
    assert lengths["log"].min() >= 40 and lengths["log"].max() <= 200  # 100 frames / 2.5 .. / 0.5
    with pytest.raises(ValueError, match="speed_scale"):
        AugmentConfig(speed_scale="cubic")
    assert AugmentConfig.from_dict({"speed": [0.75, 1.35]}).speed_scale == "linear"
    partial = AugmentConfig.from_dict({"jitter": 0.01})  # a user's partial dict: the default range, its own scale
    assert (partial.speed, partial.speed_scale) == (AugmentConfig().speed, "log")



def test_speeds_drawn_ahead_of_batching_group_samples_by_their_stretched_length(entries):
    """Per-sample factors drawn at load time pad a batch to its slowest draw; drawn ahead (bucketed), the sampler
    sees each sample's stretched length, and the sample loads at exactly that length."""
    from signt5.data.sampler import BucketBatchSampler

    prepared = prepare_all([entries[0]] * 8, DataConfig())
    frames = len(prepared.get(0)[0])
    still = dict(rotation_degrees=0, scale=(1, 1), shift=0, jitter=0, drop_hand=0, flicker=0)
    ds = PreparedDataset(prepared, target="gloss", augment_config=AugmentConfig(speed_draw="bucketed", **still),
                         seed=3)
    lengths = ds.epoch_lengths()
    assert len(set(lengths.tolist())) > 4 and np.array_equal(lengths, ds.epoch_lengths())  # reproducible
    sampler = BucketBatchSampler(prepared.lengths(), 4, seed=0)
    sampler.set_epoch(0, lengths)
    batches = ds.with_speeds(list(sampler))
    for batch in batches:
        stretched = [len(ds[key]["pose"]) for key in batch]
        assert stretched == [lengths[i] for i, _ in batch]
        assert stretched == [round(frames / speed) for _, speed in batch]
    # the two batches split the lengths: every length in one is at most every length in the other
    low, high = sorted(([lengths[i] for i, _ in b] for b in batches), key=min)
    assert max(low) <= min(high)
    ds.set_epoch(1)
    assert not np.array_equal(ds.epoch_lengths(), lengths)
    per_batch = PreparedDataset(prepared, target="gloss", augment_config=AugmentConfig(speed_draw="batch", **still))
    assert np.array_equal(per_batch.epoch_lengths(), prepared.lengths())
    for batch in per_batch.with_speeds([[0, 1, 2], [3, 4, 5]]):
        assert len({speed for _, speed in batch}) == 1
    per_sample = PreparedDataset(prepared, target="gloss", augment_config=AugmentConfig(speed_draw="sample", **still))
    assert per_sample.with_speeds([[0, 1, 2]]) == [[0, 1, 2]]
    assert len({len(per_sample[i]["pose"]) for i in range(8)}) > 1


def test_configs_saved_before_speeds_drawn_ahead_draw_them_at_load_time():
    assert AugmentConfig().speed_draw == "sample"
    assert AugmentConfig.from_dict({"speed": [0.75, 1.35]}).speed_draw == "sample"
    with pytest.raises(ValueError, match="speed_draw"):
        AugmentConfig(speed_draw="sometimes")
    from signt5.cli import _train_config, build_parser

    args = build_parser().parse_args(["train", "--augment_speed_draw", "batch"])
    assert _train_config(args, "finetune", "out").augment.speed_draw == "batch"
