"""Keypoint layouts: recognised from headers and counts, selection keeps limbs consistent."""

from __future__ import annotations

import numpy as np
import pytest

from signt5.data.dataset import OPENPOSE_UPPER_BODY, DataConfig, prepare_sample, resolve_components
from signt5.errors import LayoutError
from signt5.data.layout import KeypointLayout, known_layouts, layout_by_name, layout_for_count

from ..conftest import make_sample


def test_holistic_variants_and_openpose_counts():
    counts = {l.name: l.num_points for l in known_layouts()}
    assert counts == {"holistic_543": 543, "holistic_553": 553, "holistic_576": 576, "holistic_586": 586,
                      "holistic_reduced_178": 178, "openpose_137": 137}
    for name, n in counts.items():
        assert layout_for_count(n).name == name


def test_unknown_count_is_a_clear_error():
    with pytest.raises(LayoutError, match=r"clip.npy: 99 keypoints .* 137 \(openpose_137\)"):
        layout_for_count(99, source="clip.npy")


def test_header_layout_keeps_file_limbs(real_clip_path):
    from pose_format import Pose

    header = Pose.read(real_clip_path.read_bytes()).header
    layout = KeypointLayout.from_pose_header(header)
    assert layout.name == "holistic_586"
    hand = header.components[3]
    offset = layout.offsets()[hand.name]
    edges = {tuple(e) for e in layout.edges()}
    assert all((offset + a, offset + b) in edges for a, b in hand.limbs)


def test_face_468_variant_drops_iris_limbs():
    face = layout_by_name("holistic_543").component("FACE_LANDMARKS")
    assert len(face.points) == 468 and all(max(l) < 468 for l in face.limbs)


def test_select_remaps_limbs():
    layout = layout_by_name("holistic_586")
    sel, idx = layout.select({"RIGHT_HAND_LANDMARKS": None, "POSE_LANDMARKS": ["LEFT_SHOULDER", "RIGHT_SHOULDER"]})
    assert sel.num_points == 23 and len(idx) == 23
    assert idx[0] == layout.index("RIGHT_HAND_LANDMARKS", "WRIST")
    assert len(sel.component("RIGHT_HAND_LANDMARKS").limbs) == len(layout.component("RIGHT_HAND_LANDMARKS").limbs)
    assert sel.edges().max() < 23
    with pytest.raises(LayoutError, match="no points"):
        layout.select({"POSE_LANDMARKS": ["TAIL"]})


@pytest.mark.parametrize("name", ["holistic_543", "holistic_586", "holistic_reduced_178"])
def test_default_preset_gives_the_same_points_for_every_holistic_variant(name):
    ref = resolve_components(layout_by_name("holistic_586"), "default")
    assert resolve_components(layout_by_name(name), "default") == ref
    out = prepare_sample(make_sample(name), DataConfig())
    assert out.coords.shape[1] == 8 + 34 + 42


def test_openpose_presets():
    out = prepare_sample(make_sample("openpose_137"), DataConfig(components="hands"))
    assert out.coords.shape[1] == len(OPENPOSE_UPPER_BODY) + 2 * 21


def test_one_rule_says_which_part_a_component_is():
    """The encoder, the hand lookups and the player all ask ``component_part``: known names and name words."""
    from signt5.data.layout import component_part
    from signt5.models.pose_encoder import BODY, FACE, LEFT_HAND, RIGHT_HAND, SkeletonGraph
    from signt5.visualize import component_group

    expected = {"LEFT_HAND_LANDMARKS": "left_hand", "hand_right_keypoints_2d": "right_hand",
                "FACE_LANDMARKS": "face", "face_keypoints_2d": "face", "POSE_LANDMARKS": "body",
                "pose_keypoints_2d": "body", "POSE_WORLD_LANDMARKS": "world", "left_hand_custom": "left_hand",
                "TAIL": "other"}
    assert {name: component_part(name) for name in expected} == expected
    layout = layout_by_name("holistic_586")
    graph = SkeletonGraph(layout)
    ids = {"body": BODY, "left_hand": LEFT_HAND, "right_hand": RIGHT_HAND, "face": FACE, "world": BODY}
    for comp in layout.components:
        part = component_part(comp.name)
        assert set(graph.part_ids[layout.component_slice(comp.name)].tolist()) == {ids[part]}
        assert component_group(comp.name) == (None if part == "world" else part)
    left, right = layout.hand_slices()
    assert (left, right) == (layout.component_slice("LEFT_HAND_LANDMARKS"),
                             layout.component_slice("RIGHT_HAND_LANDMARKS"))
