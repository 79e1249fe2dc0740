"""Normalisation: resolution invariance, missing points never distort it, frame-rate resampling."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.dataset import DataConfig, prepare_sample
from signt5.data.normalize import normalize_coords, resample_fps, to_pixel_space
from signt5.data.sample import sample_from_array

RESOLUTIONS = [(500, 500), (1280, 720), (1920, 1080)]


def _filmed_at(clip, width, height, normalized=False):
    """The same signing filmed at another resolution: uniformly scaled to the frame's height, shifted."""
    scale = height / 500.0
    coords = clip.coords.copy()
    coords *= scale
    coords[..., 0] += (width - 500 * scale) / 2 + 13.0
    coords[..., 1] += 7.0
    if normalized:
        coords = coords / np.array([width, height, width], dtype=np.float32)
    coords[~clip.mask] = 0
    return clip.replace(coords=coords, resolution=(width, height),
                        coordinate_space="normalized" if normalized else "pixels")


@pytest.mark.parametrize("method", ["shoulders", "minmax"])
@pytest.mark.parametrize("normalized", [False, True])
def test_same_signing_any_resolution_same_input(real_clip, method, normalized):
    config = DataConfig(normalization=method, dims=3)
    outs = [prepare_sample(_filmed_at(real_clip, w, h, normalized), config).coords for w, h in RESOLUTIONS]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], atol=1e-4)
    assert np.abs(outs[0]).max() > 0.1  # not collapsed to zeros


def test_without_pixel_conversion_aspect_ratio_would_differ(real_clip):
    """Guard for the test above: [0, 1] coordinates of a 16:9 video are not comparable unless scaled back."""
    a = _filmed_at(real_clip, 500, 500, normalized=True)
    b = _filmed_at(real_clip, 1280, 720, normalized=True)
    na = normalize_coords(a.coords, a.mask, a.layout.shoulders(), "shoulders")
    nb = normalize_coords(b.coords, b.mask, b.layout.shoulders(), "shoulders")
    assert np.abs(na - nb).max() > 0.1


def test_shoulder_normalisation_puts_shoulders_at_unit_distance(real_clip):
    out = prepare_sample(real_clip, DataConfig(components="full", target_fps=None))
    left, right = 11, 12  # POSE_LANDMARKS LEFT/RIGHT_SHOULDER come first in the selection
    width = np.linalg.norm(out.coords[:, left] - out.coords[:, right], axis=-1).mean()
    centre = ((out.coords[:, left] + out.coords[:, right]) / 2).mean(axis=0)
    assert width == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(centre, 0.0, atol=1e-5)


def test_minmax_maps_into_unit_square(real_clip):
    out = prepare_sample(real_clip, DataConfig(normalization="minmax", components="full", target_fps=None))
    valid = out.coords[out.mask]
    assert valid.min() == pytest.approx(0.0, abs=1e-6) and valid.max() == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method", ["shoulders", "minmax"])
@pytest.mark.parametrize("how", ["zeros", "nan", "garbage_confidence_0"])
def test_missing_points_never_distort_normalisation(real_clip, method, how):
    raw = np.concatenate([real_clip.coords, real_clip.mask[..., None].astype(np.float32)], axis=-1)
    right = real_clip.layout.component_slice("RIGHT_HAND_LANDMARKS")
    reference = raw.copy()
    reference[3:9, right, 3] = 0  # hand lost in frames 3..8, said plainly by confidence
    broken = raw.copy()
    if how == "zeros":
        broken[3:9, right, :3] = 0  # undetected hand written as zeros, confidence still 1
    elif how == "nan":
        broken[3:9, right, :3] = np.nan
    else:
        broken[3:9, right, :3] = 1e6
        broken[3:9, right, 3] = 0
    config = DataConfig(normalization=method, components="full", dims=3)
    kw = dict(fps=25.0, resolution=(500, 500), coordinate_space="pixels")
    a = prepare_sample(sample_from_array(reference, real_clip.layout, **kw), config)
    b = prepare_sample(sample_from_array(broken, real_clip.layout, **kw), config)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_allclose(a.coords, b.coords, atol=1e-5)
    hand = b.layout.component_slice("RIGHT_HAND_LANDMARKS")
    assert not b.mask[3:9, hand].any() and (b.coords[3:9, hand] == 0).all()


def test_zero_shoulder_width_falls_back_to_minmax(real_clip):
    coords = real_clip.coords.copy()
    coords[:, 12] = coords[:, 11]  # both shoulders on one spot
    out = normalize_coords(coords, real_clip.mask, (11, 12), "shoulders")
    assert np.isfinite(out).all()
    valid = out[real_clip.mask]
    assert valid[:, :2].min() == pytest.approx(0.0, abs=1e-6) and valid[:, :2].max() == pytest.approx(1.0, abs=1e-6)


def test_resample_2997_to_25(real_clip):
    clip = real_clip.replace(fps=29.97)
    out = resample_fps(clip, 25.0)
    assert out.fps == 25.0 and out.num_frames == round(clip.num_frames * 25 / 29.97)
    # frame 1 at 25 fps lies at source position 29.97/25 = 1.1988: linear between source frames 1 and 2
    w = 29.97 / 25 - 1
    both = clip.mask[1] & clip.mask[2]
    expected = clip.coords[1, both] * (1 - w) + clip.coords[2, both] * w
    np.testing.assert_allclose(out.coords[1, both], expected, rtol=1e-5)
    assert not out.mask[:, ~clip.mask.any(axis=0)].any()  # never-seen points stay missing


def test_resample_masks_points_missing_at_a_neighbour(real_clip):
    clip = real_clip.replace(mask=real_clip.mask.copy(), fps=50.0)
    clip.mask[2, 20] = False
    out = resample_fps(clip, 25.0)  # frame 1 <- source frame 2 exactly; frame 0 <- 0
    assert not out.mask[1, 20] and out.mask[0, 20] == clip.mask[0, 20]


def test_normalised_coordinates_without_resolution_are_left_alone(real_clip, caplog):
    coords = real_clip.coords / 500.0
    sample = real_clip.replace(coords=coords, resolution=None, coordinate_space="unknown")
    out = to_pixel_space(sample)
    assert out.coordinate_space == "normalized" and "resolution is unknown" in caplog.text
    np.testing.assert_array_equal(out.coords, coords)
