"""Handedness: mirror pairs derived from each layout, mirroring, dominant-hand detection, and the DataConfig switch."""

from __future__ import annotations

import ast
import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from signt5.data.dataset import DataConfig, prepare_sample, resolve_components
from signt5.errors import LayoutError, PoseDataError
from signt5.data.layout import HOLISTIC_FACE, OPENPOSE_FACE, Component, KeypointLayout, layout_by_name
from signt5.data.mirror import (_pose_format_face_map, dominant_hand, mirror_coords, mirror_permutation,
                                to_right_dominant)
from signt5.data.readers import read_pose_file
from signt5.data.sample import PoseSample
from tests.conftest import make_sample

LAYOUTS = ["holistic_543", "holistic_553", "holistic_576", "holistic_586", "holistic_reduced_178", "openpose_137"]


def _face_component(layout: KeypointLayout) -> str:
    return OPENPOSE_FACE if OPENPOSE_FACE in layout.component_names else HOLISTIC_FACE


def _pose_format_table(module: str, name: str):
    """A constant of a pose-format module, read from its source (the modules import mediapipe)."""
    path = Path(importlib.util.find_spec("pose_format").origin).parent / "utils" / f"{module}.py"
    with warnings.catch_warnings():  # the module's source has an invalid escape sequence
        warnings.simplefilter("ignore", DeprecationWarning)
        tree = ast.parse(path.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.Assign)
                and any(getattr(t, "id", None) == name for t in n.targets))
    return ast.literal_eval(node.value)


def _mirror_residual(face: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Per point: distance between the point and its partner reflected about their best plane, in face radii."""
    centred = face - face.mean(axis=0)  # (N, 2)
    chords = centred - centred[perm]
    normal = np.linalg.eigh(chords.T @ chords)[1][:, -1]
    offset = float(((centred + centred[perm]) / 2 @ normal).mean())
    reflected = centred - 2 * (centred @ normal - offset)[:, None] * normal
    return np.linalg.norm(reflected[perm] - centred, axis=-1) / np.sqrt((centred ** 2).sum(-1).mean())


@pytest.fixture(scope="module")
def held_out_face(lexicon) -> dict[str, np.ndarray]:
    """A real MediaPipe face (median over a clip's frames) by point name; the clip is not one the pairs come from."""
    sample = read_pose_file(lexicon.letters("ase")[5].path)
    face = sample.layout.component_slice(HOLISTIC_FACE)
    coords = sample.coords[:, face, :2][sample.mask[:, face].all(axis=1)]  # (F, 478, 2)
    return dict(zip(sample.layout.component(HOLISTIC_FACE).points, np.median(coords, axis=0)))


def _with_gaps(sample: PoseSample, seed: int = 1) -> PoseSample:
    rng = np.random.default_rng(seed)
    mask = sample.mask & (rng.random(sample.mask.shape) > 0.2)
    return sample.replace(coords=np.where(mask[..., None], sample.coords, 0.0).astype(np.float32), mask=mask)


@pytest.mark.parametrize("name", LAYOUTS)
def test_mirroring_twice_is_the_identity(name):
    sample = _with_gaps(make_sample(name))
    coords, mask = mirror_coords(sample.coords, sample.mask, sample.layout)
    assert not np.allclose(coords, sample.coords)
    assert (coords[~mask] == 0).all()
    back, back_mask = mirror_coords(coords, mask, sample.layout)
    assert (back_mask == sample.mask).all()
    np.testing.assert_allclose(back, sample.coords, atol=1e-3)


def test_mirror_reflects_x_about_the_shoulders_and_keeps_y_and_z():
    sample = make_sample("holistic_586", frames=6)
    layout = sample.layout
    coords = np.concatenate([sample.coords, sample.coords[..., :1] / 7], axis=-1)  # (T, K, 3): a z channel
    mask = sample.mask.copy()
    left, right = layout.shoulders()
    mask[0, left] = mask[1, right] = False  # frames 0 and 1 do not count towards the midline
    coords[~mask] = 0
    world = ~layout.image_points()
    world_left, world_right = (layout.index("POSE_WORLD_LANDMARKS", p) for p in ("LEFT_SHOULDER", "RIGHT_SHOULDER"))
    centre = (coords[2:, left, 0].astype(np.float64) + coords[2:, right, 0]).mean() / 2
    world_centre = (coords[:, world_left, 0].astype(np.float64) + coords[:, world_right, 0]).mean() / 2
    perm = mirror_permutation(layout)
    for centre_x, expected_centre in ((None, centre), (100.0, 100.0)):
        mirrored, mirrored_mask = mirror_coords(coords, mask, layout, centre_x=centre_x)
        assert (mirrored_mask == mask[:, perm]).all()
        seen = mask[:, perm]
        expected_x = np.where(world[perm], 2 * world_centre, 2 * expected_centre) - coords[:, perm, 0]
        np.testing.assert_allclose(mirrored[..., 0][seen], expected_x[seen], rtol=1e-5, atol=1e-3)
        np.testing.assert_array_equal(mirrored[..., 1:][seen], coords[:, perm, 1:][seen])
        assert (mirrored[~seen] == 0).all()
    assert mirrored[0, layout.index("POSE_LANDMARKS", "RIGHT_WRIST"), 0] == 200 - coords[0, layout.index(
        "POSE_LANDMARKS", "LEFT_WRIST"), 0]


@pytest.mark.parametrize("name", LAYOUTS)
def test_permutation_swaps_sides_by_name(name):
    layout = layout_by_name(name)
    perm = mirror_permutation(layout)
    assert (perm[perm] == np.arange(layout.num_points)).all()
    left_hand, right_hand = layout.hand_slices()
    np.testing.assert_array_equal(perm[left_hand], np.arange(right_hand.start, right_hand.stop))
    np.testing.assert_array_equal(perm[right_hand], np.arange(left_hand.start, left_hand.stop))
    hands = {c.name for c in layout.components if layout.component_slice(c.name) in (left_hand, right_hand)}
    assert all(layout.component(h).points == layout.component(next(iter(hands))).points for h in hands)
    for comp in layout.components:
        if comp.name in hands or comp.name == _face_component(layout):
            continue
        midline = []
        for point in comp.points:
            if "LEFT" in point or "RIGHT" in point:
                partner = point.replace("LEFT", "?").replace("RIGHT", "LEFT").replace("?", "RIGHT")
            elif point[0] in "LR" and point[1].isupper():  # OpenPose: LShoulder, RBigToe
                partner = {"L": "R", "R": "L"}[point[0]] + point[1:]
            else:
                partner = point
                midline.append(point)
            assert perm[layout.index(comp.name, point)] == layout.index(comp.name, partner), point
        assert set(midline) <= {"NOSE", "Nose", "Neck", "MidHip"}


@pytest.mark.parametrize("name", LAYOUTS)
def test_face_pairs_mirror_a_real_face(name, held_out_face):
    layout = layout_by_name(name)
    face = layout.component_slice(_face_component(layout))
    perm = mirror_permutation(layout)[face] - face.start
    points = layout.component(_face_component(layout)).points
    if name.startswith("openpose"):  # placed on the real face through pose-format's map; pupils have no place there
        face_map = _pose_format_face_map()
        placed = np.array([i for i, p in enumerate(points) if p in face_map])
        assert sorted(set(range(len(points))) - set(placed)) == [68, 69] and list(perm[[68, 69]]) == [69, 68]
        local = {old: new for new, old in enumerate(placed)}
        perm = np.array([local[perm[i]] for i in placed])
        points = [points[i] for i in placed]
        shape = np.array([held_out_face[face_map[p]] for p in points])
    else:
        shape = np.array([held_out_face[p] for p in points])
    residual = _mirror_residual(shape, perm)
    assert residual.max() < 0.1  # 0.04 here; leaving one near-midline pair unswapped gives 0.2, identity 3.6
    assert (perm != np.arange(len(perm))).sum() > 0.8 * len(perm)


def test_holistic_face_pairs_equal_pose_formats_table():
    """pose-format 0.15 ships pairs from MediaPipe's canonical face model (irises: a flipped-image run)."""
    flipped = np.array(_pose_format_table("holistic", "FLIPPED_FACE_POINTS"))
    for name, size in (("holistic_586", 478), ("holistic_543", 468)):
        layout = layout_by_name(name)
        face = layout.component_slice(HOLISTIC_FACE)
        np.testing.assert_array_equal(mirror_permutation(layout)[face] - face.start, flipped[:size])


def test_openpose_face_pairs_follow_the_68_point_markup():
    layout = layout_by_name("openpose_137")
    face = layout.component_slice(OPENPOSE_FACE)
    perm = mirror_permutation(layout)[face] - face.start
    assert [perm[i] for i in range(17)] == [16 - i for i in range(17)]  # jaw
    assert [perm[i] for i in range(17, 27)] == [43 - i for i in range(17, 27)]  # eyebrows
    assert [perm[i] for i in (27, 28, 29, 30, 33, 51, 57, 62, 66)] == [27, 28, 29, 30, 33, 51, 57, 62, 66]
    assert [perm[i] for i in (31, 32, 36, 39, 40, 48, 55, 60, 65)] == [35, 34, 45, 42, 47, 54, 59, 64, 67]


def test_selected_sub_layout_keeps_the_full_pairs():
    layout = layout_by_name("holistic_586")
    for preset in ("default", "hands", "full"):
        selected, indices = layout.select(resolve_components(layout, preset))
        np.testing.assert_array_equal(indices[mirror_permutation(selected)], mirror_permutation(layout)[indices])


def test_layouts_without_derivable_pairs_are_refused():
    layout = layout_by_name("holistic_586")
    lone_hand, _ = layout.select({"POSE_LANDMARKS": None, "LEFT_HAND_LANDMARKS": None})
    with pytest.raises(LayoutError, match="RIGHT_HAND_LANDMARKS"):
        mirror_permutation(lone_hand)
    half_face, _ = layout.select({HOLISTIC_FACE: ["0", "33"]})
    with pytest.raises(LayoutError, match="'263'"):
        mirror_permutation(half_face)
    custom = KeypointLayout("custom", (Component("FACE", tuple(f"f{i}" for i in range(68)), ()),))
    with pytest.raises(LayoutError, match="'FACE'"):
        mirror_permutation(custom)


def test_left_handed_copy_is_detected_and_mirrored_back(real_clip):
    coords, mask = mirror_coords(real_clip.coords, real_clip.mask, real_clip.layout)
    left_handed = real_clip.replace(coords=coords, mask=mask)
    assert dominant_hand(real_clip.coords, real_clip.mask, real_clip.layout) == "right"
    assert dominant_hand(coords, mask, real_clip.layout) == "left"
    assert to_right_dominant(real_clip) is real_clip
    original = prepare_sample(real_clip, DataConfig())
    restored = prepare_sample(left_handed, DataConfig())
    assert (restored.mask == original.mask).all()
    np.testing.assert_allclose(restored.coords, original.coords, atol=1e-4)


def test_keep_leaves_the_left_handed_sample_mirrored(real_clip):
    coords, mask = mirror_coords(real_clip.coords, real_clip.mask, real_clip.layout)
    left_handed = real_clip.replace(coords=coords, mask=mask)
    original = prepare_sample(real_clip, DataConfig(handedness="keep"))
    kept = prepare_sample(left_handed, DataConfig(handedness="keep"))
    # normalised about the shoulders' midpoint: the mirror image of the original about x = 0
    expected, expected_mask = mirror_coords(original.coords, original.mask, original.layout, centre_x=0.0)
    assert (kept.mask == expected_mask).all()
    np.testing.assert_allclose(kept.coords, expected, atol=1e-4)
    assert not np.allclose(kept.coords, original.coords, atol=1e-2)


def test_no_hands_or_equal_hands_count_as_right():
    sample = make_sample("holistic_543")
    mask = sample.mask.copy()
    for hand in sample.layout.hand_slices():
        mask[:, hand] = False
    assert dominant_hand(np.where(mask[..., None], sample.coords, 0), mask, sample.layout) == "right"
    still = np.broadcast_to(sample.coords[:1], sample.coords.shape)  # both hands seen throughout, neither moves
    assert dominant_hand(still, sample.mask, sample.layout) == "right"
    body_only, indices = sample.layout.select({"POSE_LANDMARKS": None})
    assert dominant_hand(sample.coords[:, indices], sample.mask[:, indices], body_only) == "right"


def test_two_handed_signing_is_not_mirrored(real_clip):
    """Both hands active (a two-handed alphabet), the left somewhat more: no coin toss, kept as it is."""
    left, right = real_clip.layout.hand_slices()
    coords, mask = real_clip.coords.copy(), real_clip.mask.copy()
    active = right if mask[:, right].any() else left
    idle = left if active is right else right
    coords[:, idle], mask[:, idle] = coords[:, active], mask[:, active]  # the other hand does the same
    coords[1::2, right] = coords[:-1:2, right]  # the right hand moves half as much
    assert dominant_hand(coords, mask, real_clip.layout) == "right"
    mask[:, right] = False  # the right hand out of view: the left clearly leads
    assert dominant_hand(np.where(mask[..., None], coords, 0), mask, real_clip.layout) == "left"


def test_unmirrorable_left_dominant_sample_names_the_remedy():
    layout = KeypointLayout("custom", (Component("FACE", tuple(f"f{i}" for i in range(3)), ()),
                                       Component("LEFT_HAND", ("a", "b"), ()), Component("RIGHT_HAND", ("a", "b"), ())))
    coords = np.zeros((5, 7, 2), dtype=np.float32)
    coords[:, :3] = [[10, 10], [20, 10], [15, 20]]
    coords[:, 3:5] = np.arange(5)[:, None, None] * 10 + np.array([[30, 30], [32, 34]])  # a moving left hand
    mask = np.ones((5, 7), dtype=bool)
    mask[:, 5:] = False
    coords[~mask] = 0
    sample = PoseSample(coords, mask, 25.0, layout, None, "pixels", "custom-0", "memory")
    with pytest.raises(PoseDataError, match="handedness"):
        to_right_dominant(sample)


def test_handedness_config():
    assert DataConfig().handedness == "right"
    assert DataConfig.from_dict({}).handedness == "keep"  # a checkpoint saved before the setting existed
    assert DataConfig.from_dict(DataConfig().to_dict()).handedness == "right"
    assert DataConfig.from_dict({"handedness": "keep"}).handedness == "keep"
    with pytest.raises(ValueError, match="handedness"):
        DataConfig(handedness="left")


def _prepared(sample: PoseSample, drop_left: bool = False):
    """A sample as the cache holds it: handedness-normalised, shoulder-normalised, the model's points selected."""
    if drop_left:
        mask = sample.mask.copy()
        mask[:, sample.layout.hand_slices()[0]] = False
        sample = sample.replace(mask=mask)
    return prepare_sample(sample, DataConfig())


def test_mirror_augmentation_mirrors_only_samples_no_hand_dominates():
    """The handedness rule mirrors clear left-handers at every stage; a two-handed sample's mirror image is left as
    it is there, so training sees it mirrored half the time. A one-handed sample never needs it."""
    from signt5.data.augment import AugmentConfig, augment
    from signt5.data.mirror import dominance_is_open

    still = dict(speed=(1.0, 1.0), rotation_degrees=0, scale=(1, 1), shift=0, jitter=0, drop_hand=0, flicker=0,
                 mirror=1.0)
    two_handed = _prepared(make_sample("holistic_543", frames=20, seed=1))
    one_handed = _prepared(make_sample("holistic_543", frames=20, seed=1), drop_left=True)
    assert dominance_is_open(two_handed.coords, two_handed.mask, two_handed.layout)
    assert not dominance_is_open(one_handed.coords, one_handed.mask, one_handed.layout)
    hands = two_handed.layout.hand_slices()
    coords, mask = augment(two_handed.coords, two_handed.mask, hands, np.random.default_rng(0),
                           AugmentConfig(**still), layout=two_handed.layout)
    expected, expected_mask = mirror_coords(two_handed.coords, two_handed.mask, two_handed.layout)
    np.testing.assert_allclose(coords, expected, atol=1e-6)
    np.testing.assert_array_equal(mask, expected_mask)
    assert not np.allclose(coords, two_handed.coords)
    coords, _ = augment(one_handed.coords, one_handed.mask, hands, np.random.default_rng(0), AugmentConfig(**still),
                        layout=one_handed.layout)
    np.testing.assert_allclose(coords, one_handed.coords, atol=1e-6)
    unmirrored, _ = augment(two_handed.coords, two_handed.mask, hands, np.random.default_rng(0),
                            AugmentConfig(**{**still, "mirror": 0.0}), layout=two_handed.layout)
    np.testing.assert_allclose(unmirrored, two_handed.coords, atol=1e-6)


def test_mirror_augmentation_is_off_for_configs_saved_before_it():
    from signt5.data.augment import AugmentConfig

    assert AugmentConfig().mirror > 0
    assert AugmentConfig.from_dict({"speed": [0.75, 1.35]}).mirror == 0.0
