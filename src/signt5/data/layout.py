"""Named keypoint layouts: which point is which, and the skeleton's limbs.

A layout is read from a ``.pose`` header when there is one, and recognised from
the keypoint count when there is none (``.npy``, the seed's ``data.pkl``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Iterable, Mapping, Sequence

import numpy as np

from ..errors import LayoutError

logger = logging.getLogger(__name__)

HOLISTIC_BODY = "POSE_LANDMARKS"
HOLISTIC_FACE = "FACE_LANDMARKS"
HOLISTIC_LEFT_HAND = "LEFT_HAND_LANDMARKS"
HOLISTIC_RIGHT_HAND = "RIGHT_HAND_LANDMARKS"
HOLISTIC_WORLD = "POSE_WORLD_LANDMARKS"
OPENPOSE_BODY = "pose_keypoints_2d"
OPENPOSE_FACE = "face_keypoints_2d"
OPENPOSE_LEFT_HAND = "hand_left_keypoints_2d"
OPENPOSE_RIGHT_HAND = "hand_right_keypoints_2d"

# (component, left point, right point) pairs tried in order to find the shoulders.
_SHOULDER_NAMES = (
    (HOLISTIC_BODY, "LEFT_SHOULDER", "RIGHT_SHOULDER"),
    (OPENPOSE_BODY, "LShoulder", "RShoulder"),
    ("BODY", "left_shoulder", "right_shoulder"),
)
_LEFT_HAND_NAMES = (HOLISTIC_LEFT_HAND, OPENPOSE_LEFT_HAND, "LEFT_HAND")
_RIGHT_HAND_NAMES = (HOLISTIC_RIGHT_HAND, OPENPOSE_RIGHT_HAND, "RIGHT_HAND")
PARTS = ("body", "left_hand", "right_hand", "face", "world", "other")


def component_part(name: str) -> str:
    """Which part of the signer a component is, one of ``PARTS``: the one rule the pose encoder, the hand
    lookups (gap filling, mirroring, augmentation) and the player share. Known names first, then the name's
    words, so a custom ``.pose`` skeleton's ``left_hand`` or ``face_contour`` is recognised too."""
    if name in _LEFT_HAND_NAMES:
        return "left_hand"
    if name in _RIGHT_HAND_NAMES:
        return "right_hand"
    lowered = name.lower()
    if "world" in lowered:
        return "world"  # MediaPipe's metric landmarks: a body, not in image coordinates
    if "hand" in lowered and "left" in lowered:
        return "left_hand"
    if "hand" in lowered and "right" in lowered:
        return "right_hand"
    if "face" in lowered:
        return "face"
    if "pose" in lowered or "body" in lowered:
        return "body"
    return "other"


@dataclass(frozen=True)
class Component:
    """One named group of points (body, a hand, the face) with its limbs as local index pairs."""

    name: str
    points: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]

    def __post_init__(self) -> None:
        n = len(self.points)
        for a, b in self.limbs:
            if not (0 <= a < n and 0 <= b < n):
                raise LayoutError(f"component {self.name!r}: limb ({a}, {b}) outside its {n} points")


@dataclass(frozen=True)
class KeypointLayout:
    """An ordered list of components; point ``k`` of a sample is found through ``offsets``."""

    name: str
    components: tuple[Component, ...]

    @property
    def num_points(self) -> int:
        return sum(len(c.points) for c in self.components)

    @property
    def component_names(self) -> list[str]:
        return [c.name for c in self.components]

    def offsets(self) -> dict[str, int]:
        out, start = {}, 0
        for c in self.components:
            out[c.name] = start
            start += len(c.points)
        return out

    def component(self, name: str) -> Component:
        for c in self.components:
            if c.name == name:
                return c
        raise LayoutError(f"layout {self.name!r} has no component {name!r}; it has {self.component_names}")

    def component_slice(self, name: str) -> slice:
        start = self.offsets()[self.component(name).name]
        return slice(start, start + len(self.component(name).points))

    def index(self, component: str, point: str) -> int:
        comp = self.component(component)
        try:
            return self.offsets()[component] + comp.points.index(point)
        except ValueError:
            raise LayoutError(f"component {component!r} of layout {self.name!r} has no point {point!r}") from None

    def edges(self) -> np.ndarray:
        """All limbs as global point indices, shape (E, 2)."""
        offsets = self.offsets()
        pairs = [(offsets[c.name] + a, offsets[c.name] + b) for c in self.components for a, b in c.limbs]
        return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)

    def shoulders(self) -> tuple[int, int] | None:
        """Global indices of (left, right) shoulder, or None when the layout has no shoulders."""
        for comp, left, right in _SHOULDER_NAMES:
            if comp in self.component_names:
                points = self.component(comp).points
                if left in points and right in points:
                    return self.index(comp, left), self.index(comp, right)
        return None

    def image_points(self) -> np.ndarray:
        """Boolean (K,): points in image coordinates (MediaPipe's world landmarks are metres, not pixels)."""
        keep = np.ones(self.num_points, dtype=bool)
        if HOLISTIC_WORLD in self.component_names:
            keep[self.component_slice(HOLISTIC_WORLD)] = False
        return keep

    def hand_slices(self) -> list[slice]:
        """Slices of the hand components present (left first); used to spot undetected hands."""
        parts = [component_part(n) for n in self.component_names]
        return [self.component_slice(n) for side in ("left_hand", "right_hand")
                for n, part in zip(self.component_names, parts) if part == side]

    def select(self, spec: Mapping[str, Sequence[str] | None]) -> tuple["KeypointLayout", np.ndarray]:
        """Keep the named components (and, where a list is given, only those points).

        Returns the reduced layout and the global indices of the kept points, so
        ``coords[:, indices]`` gives data in the reduced layout. Limbs whose ends
        are both kept survive, re-indexed.
        """
        offsets = self.offsets()
        kept_components, indices = [], []
        for name, wanted in spec.items():
            comp = self.component(name)
            if wanted is None:
                local = list(range(len(comp.points)))
            else:
                missing = [p for p in wanted if p not in comp.points]
                if missing:
                    raise LayoutError(f"component {name!r} has no points {missing[:5]}")
                local = [comp.points.index(p) for p in wanted]
            remap = {old: new for new, old in enumerate(local)}
            limbs = tuple((remap[a], remap[b]) for a, b in comp.limbs if a in remap and b in remap)
            kept_components.append(Component(name, tuple(comp.points[i] for i in local), limbs))
            indices.extend(offsets[name] + i for i in local)
        layout = KeypointLayout(f"{self.name}/selected", tuple(kept_components))
        return layout, np.asarray(indices, dtype=np.int64)

    # --- pose-format interop -------------------------------------------------------------
    @classmethod
    def from_pose_header(cls, header) -> "KeypointLayout":
        """Build from a ``pose_format.PoseHeader`` (its components and limbs)."""
        components = tuple(
            Component(c.name, tuple(c.points), tuple((int(a), int(b)) for a, b in c.limbs))
            for c in header.components
        )
        layout = cls("custom", components)
        for known in known_layouts():
            if known.same_points(layout):
                return cls(known.name, components)
        return layout

    def to_pose_header(self, width: int = 1, height: int = 1, depth: int = 0, dims: int = 2):
        """A ``pose_format.PoseHeader`` for writing data in this layout to a ``.pose`` file."""
        from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

        point_format = "XYZC" if dims == 3 else "XYC"
        components = [
            PoseHeaderComponent(c.name, list(c.points), [tuple(l) for l in c.limbs],
                                [(255, 255, 255)] * max(1, len(c.limbs)), point_format)
            for c in self.components
        ]
        return PoseHeader(0.2, PoseHeaderDimensions(width, height, depth), components)

    def same_points(self, other: "KeypointLayout") -> bool:
        return [(c.name, c.points) for c in self.components] == [(c.name, c.points) for c in other.components]

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "components": [
                {"name": c.name, "points": list(c.points), "limbs": [list(l) for l in c.limbs]}
                for c in self.components
            ],
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "KeypointLayout":
        return cls(
            d["name"],
            tuple(Component(c["name"], tuple(c["points"]), tuple(tuple(l) for l in c["limbs"])) for c in d["components"]),
        )


def _holistic_variants(full: KeypointLayout) -> list[KeypointLayout]:
    """The MediaPipe Holistic variants: 468 or 478 face points, with or without world landmarks."""
    body, face, left, right, world = (full.component(n) for n in
                                      (HOLISTIC_BODY, HOLISTIC_FACE, HOLISTIC_LEFT_HAND, HOLISTIC_RIGHT_HAND, HOLISTIC_WORLD))
    face468 = Component(face.name, face.points[:468], tuple(l for l in face.limbs if max(l) < 468))
    variants = []
    for f in (face468, face):
        for with_world in (False, True):
            comps = (body, f, left, right) + ((world,) if with_world else ())
            n = sum(len(c.points) for c in comps)
            variants.append(KeypointLayout(f"holistic_{n}", comps))
    return variants


def _reduced_holistic(full: KeypointLayout, reduced_spec: Mapping) -> KeypointLayout:
    layout, _ = full.select(reduced_spec)
    return KeypointLayout(f"holistic_reduced_{layout.num_points}", layout.components)


def _openpose_137() -> KeypointLayout:
    from pose_format.utils.openpose import OpenPose_Components

    comps = tuple(Component(c.name, tuple(c.points), tuple((int(a), int(b)) for a, b in c.limbs))
                  for c in OpenPose_Components)
    return KeypointLayout("openpose_137", comps)


@lru_cache(maxsize=1)
def known_layouts() -> tuple[KeypointLayout, ...]:
    """Layouts recognised without a header, from their keypoint count."""
    raw = json.loads(resources.files("signt5.data").joinpath("layouts/holistic_586.json").read_text())
    full = KeypointLayout.from_dict(raw["layout"])
    return tuple(_holistic_variants(full) + [_reduced_holistic(full, raw["reduced"]), _openpose_137()])


def layout_by_name(name: str) -> KeypointLayout:
    for layout in known_layouts():
        if layout.name == name:
            return layout
    raise LayoutError(f"unknown layout {name!r}; known: {[l.name for l in known_layouts()]}")


def layout_for_count(num_points: int, source: str = "") -> KeypointLayout:
    """Recognise a header-less layout from its keypoint count, or raise naming the source."""
    for layout in known_layouts():
        if layout.num_points == num_points:
            return layout
    known = ", ".join(f"{l.num_points} ({l.name})" for l in known_layouts())
    where = f"{source}: " if source else ""
    raise LayoutError(f"{where}{num_points} keypoints per frame match no known layout; known counts: {known}")


def face_subset(layout: KeypointLayout, names: Iterable[str]) -> list[str]:
    """Points of the face component kept from ``names`` (keeps the layout's own order)."""
    wanted = set(names)
    face = next((c for c in layout.components if c.name in (HOLISTIC_FACE, OPENPOSE_FACE)), None)
    return [] if face is None else [p for p in face.points if p in wanted]
