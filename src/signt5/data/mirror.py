"""Left-handed signing as right-handed signing: the mirror image of a pose, left and right swapped.

About one signer in ten signs with the left hand, as the mirror image of the right hand; mirrored
(x reflected about the body's midline, each point moved to its mirror partner's place), it becomes
the right-handed signing a model trained on right-handed signers knows. Partners come from the layout:

* hands: the left and right hand components swap, point by point (same point name);
* body: points whose names say left or right (``LEFT_SHOULDER``, ``MOUTH_LEFT``, OpenPose's
  ``LShoulder``, ``left_wrist``) swap with their counterpart; the others lie on the midline;
* face: derived at run time (cached with ``lru_cache``) from a canonical face, reflected about its
  own symmetry plane; each point is matched to the nearest reflected point (Hungarian assignment,
  the plane refitted to the matched pairs until the matching settles). The canonical MediaPipe face
  mesh is the median face of real recordings (the spoken-to-signed lexicon's letter clips);
  OpenPose's 70-point face takes its shape from that face through pose-format's own
  OpenPose-to-Holistic face map, and its two pupils, which that map leaves out, swap.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import LayoutError, PoseDataError
from .layout import HOLISTIC_FACE, HOLISTIC_WORLD, OPENPOSE_FACE, KeypointLayout, known_layouts, layout_by_name
from .sample import PoseSample

logger = logging.getLogger(__name__)

_SIDE_WORDS = {"LEFT": "RIGHT", "RIGHT": "LEFT", "Left": "Right", "Right": "Left", "left": "right", "right": "left"}
_SIDE_WORD = re.compile("|".join(_SIDE_WORDS))
_SIDE_PREFIX = re.compile(r"^[LR](?=[A-Z][a-z])")  # OpenPose: LShoulder, RBigToe
_FACE_CLIPS_PER_LANGUAGE = 2  # 19 sign languages: 38 real clips, about 900 frames of fully seen faces
_FIT_ROUNDS = 20
# a left hand must be this many times as active as the right to count as dominant. One-handed alphabets leave
# the other hand unseen (ratio 0 or infinite on the lexicon's 19); the two-handed ones (cse, csq, tsm) spread
# over 0.25-2.9 word by word within one signer, and mirroring them by a coin toss per word would mix both forms
DOMINANCE_RATIO = 3.0


def _swap_side(name: str) -> str | None:
    """The name with left and right swapped, or None when it names no side."""
    if _SIDE_WORD.search(name):
        return _SIDE_WORD.sub(lambda match: _SIDE_WORDS[match.group()], name)
    if _SIDE_PREFIX.match(name):
        return ("R" if name[0] == "L" else "L") + name[1:]
    return None


@lru_cache(maxsize=32)
def mirror_permutation(layout: KeypointLayout) -> np.ndarray:
    """Read-only indices ``perm`` (K,): point k's mirror image is point ``perm[k]`` (an involution)."""
    offsets = layout.offsets()
    perm = np.arange(layout.num_points)
    for comp in layout.components:
        partner_name = _swap_side(comp.name)
        if partner_name is not None:  # a hand: the other hand holds the same points
            if partner_name not in layout.component_names:
                raise LayoutError(f"layout {layout.name!r} cannot be mirrored: component {comp.name!r} "
                                  f"has no mirror partner {partner_name!r}")
            target, pairs = layout.component(partner_name), {}
        else:
            target, pairs = comp, _point_pairs(comp.name, comp.points)
        for local, point in enumerate(comp.points):
            partner = pairs.get(point, point)
            if partner not in target.points:
                raise LayoutError(f"layout {layout.name!r} cannot be mirrored: point {point!r} of {comp.name!r} "
                                  f"has its mirror image {partner!r} in {target.name!r}, which the layout lacks")
            perm[offsets[comp.name] + local] = offsets[target.name] + target.points.index(partner)
    if not (perm[perm] == np.arange(layout.num_points)).all():
        raise LayoutError(f"layout {layout.name!r}: the derived mirror pairs are not symmetric")
    perm.flags.writeable = False
    return perm


def _point_pairs(component: str, points: tuple[str, ...]) -> dict[str, str]:
    """Mirror partners within one component, by name or, for a face mesh, by geometry."""
    if component in (HOLISTIC_FACE, OPENPOSE_FACE):
        return _face_pairs(component)
    pairs = {point: partner for point in points if (partner := _swap_side(point)) is not None}
    known = {c.name for layout in known_layouts() for c in layout.components}
    if not pairs and len(points) > 1 and component not in known:
        raise LayoutError(f"cannot derive mirror pairs for component {component!r}: no point name says left or "
                          f"right and it is no known face mesh ({HOLISTIC_FACE}, {OPENPOSE_FACE})")
    return pairs


@lru_cache(maxsize=4)
def _face_pairs(component: str) -> dict[str, str]:
    """Each face point's mirror partner (midline points are their own), from the canonical face's reflection."""
    if component == HOLISTIC_FACE:
        (points, shape), unplaced = _holistic_face_shape(), ()
    else:
        points, shape, unplaced = _openpose_face_shape()
    order, residual = _reflection_matching(shape)
    pairs = {points[i]: points[j] for i, j in enumerate(order)}
    for prefix in {point.rsplit("_", 1)[0] for point in unplaced}:  # no place on the face: only a named pair works
        group = [point for point in unplaced if point.rsplit("_", 1)[0] == prefix]
        if len(group) != 2:
            raise LayoutError(f"cannot place face points {group} of {component!r} to find their mirror images")
        pairs.update({group[0]: group[1], group[1]: group[0]})
    logger.debug("%s: %d mirror pairs, %d points on the midline, max residual %.3f face radii", component,
                 sum(a != b for a, b in pairs.items()) // 2, sum(a == b for a, b in pairs.items()), residual.max())
    return pairs


def _reflection_matching(shape: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Match each point of a symmetric shape (N, D) to its mirror image; returns ``order`` (N,) and residuals (N,).

    ``shape[order[i]]`` reflected about the fitted symmetry plane lands nearest ``shape[i]``. Raises
    LayoutError when the matching is no involution or a residual exceeds the typical point spacing.
    """
    from scipy.optimize import linear_sum_assignment

    centred = np.asarray(shape, dtype=np.float64) - np.mean(shape, axis=0)  # (N, D)
    normal, offset, order = np.eye(centred.shape[1])[0], 0.0, None  # start: the image's x axis
    for _ in range(_FIT_ROUNDS):
        reflected = centred - 2 * (centred @ normal - offset)[:, None] * normal  # (N, D)
        cost = ((centred[:, None] - reflected[None]) ** 2).sum(-1)  # (N, N)
        new_order = linear_sum_assignment(cost)[1]
        if order is not None and (new_order == order).all():
            break
        order = new_order
        chords = centred - centred[order]  # a mirror pair's chord is parallel to the plane's normal
        normal = np.linalg.eigh(chords.T @ chords)[1][:, -1]
        offset = float(((centred + centred[order]) / 2 @ normal).mean())
    residual = np.linalg.norm(reflected[order] - centred, axis=-1)  # (N,)
    distances = np.linalg.norm(centred[:, None] - centred[None], axis=-1) + np.diag(np.full(len(centred), np.inf))
    spacing = float(np.median(distances.min(axis=1)))
    if not (order[order] == np.arange(len(order))).all() or residual.max() > spacing:
        raise LayoutError(f"the canonical face is not symmetric enough to pair its points (largest residual "
                          f"{residual.max():.3g}, typical point spacing {spacing:.3g})")
    return order, residual


@lru_cache(maxsize=1)
def _holistic_face_shape() -> tuple[tuple[str, ...], np.ndarray]:
    """Point names and the median MediaPipe face (N, 3) of real recordings, each frame centred and scaled."""
    from .lexicon import FingerspellingLexicon
    from .readers import read_pose_file

    names, faces = None, []
    try:
        lexicon = FingerspellingLexicon.load()
        for language in lexicon.sign_languages():
            for clip in lexicon.letters(language)[:_FACE_CLIPS_PER_LANGUAGE]:
                sample = read_pose_file(clip.path)
                names = names or sample.layout.component(HOLISTIC_FACE).points
                if sample.layout.component(HOLISTIC_FACE).points != names:
                    continue
                where = sample.layout.component_slice(HOLISTIC_FACE)
                face = sample.coords[sample.mask[:, where].all(axis=1), where].astype(np.float64)  # (F, N, C)
                face -= face.mean(axis=1, keepdims=True)
                radius = np.sqrt((face[..., :2] ** 2).sum(-1).mean(axis=1))  # (F,)
                faces.append(face[radius > 0] / radius[radius > 0, None, None])
    except (PoseDataError, LayoutError) as e:
        raise LayoutError(f"cannot derive the face mesh's mirror pairs from the lexicon's real faces: {e}") from None
    if names is None or not sum(len(f) for f in faces):
        raise LayoutError("cannot derive the face mesh's mirror pairs: no fully seen face in the lexicon's clips")
    return names, np.median(np.concatenate(faces), axis=0)


@lru_cache(maxsize=1)
def _openpose_face_shape() -> tuple[tuple[str, ...], np.ndarray, tuple[str, ...]]:
    """OpenPose's face points placed on the canonical MediaPipe face, and the points left unplaced."""
    holistic_names, holistic_shape = _holistic_face_shape()
    where, face_map = {name: i for i, name in enumerate(holistic_names)}, _pose_format_face_map()
    points = layout_by_name("openpose_137").component(OPENPOSE_FACE).points
    placed = tuple(p for p in points if face_map.get(p) in where)
    return placed, holistic_shape[[where[face_map[p]] for p in placed]], tuple(p for p in points if p not in placed)


def _pose_format_face_map() -> dict[str, str]:
    """pose-format's one-to-one OpenPose-to-Holistic face points, read from source (the module imports mediapipe)."""
    path = Path(importlib.util.find_spec("pose_format").origin).parent / "utils" / "pose_converter.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        node = next(n for n in tree.body if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "FACE_MAP" for t in n.targets))
        entries = ast.literal_eval(node.value)
    except (OSError, SyntaxError, ValueError, StopIteration) as e:
        raise LayoutError(f"cannot derive OpenPose's face mirror pairs: pose-format's FACE_MAP unreadable "
                          f"in {path} ({e!r})") from None
    return {openpose[1]: holistic[1] for openpose, holistic in (e for e in entries if isinstance(e, tuple))
            if openpose[0] == OPENPOSE_FACE and holistic[0] == HOLISTIC_FACE and isinstance(holistic[1], str)}


def mirror_coords(coords: np.ndarray, mask: np.ndarray, layout: KeypointLayout,
                  centre_x: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The mirror image of (T, K, C) coords and their (T, K) mask: x reflected about the midline, points swapped.

    The midline is the mean x of the two shoulders over frames where both are seen (``centre_x``
    overrides it); MediaPipe's world landmarks (metres) use their own shoulders. z is unchanged;
    masked points stay masked and 0.
    """
    perm = mirror_permutation(layout)
    image = layout.image_points()  # (K,)
    centres = np.zeros(layout.num_points, dtype=np.float64)  # (K,)
    centres[image] = _midline_x(coords, mask, layout.shoulders(), image) if centre_x is None else centre_x
    if not image.all():
        world = layout.component(HOLISTIC_WORLD).points
        shoulders = tuple(layout.index(HOLISTIC_WORLD, f"{side}_SHOULDER") for side in ("LEFT", "RIGHT")
                          if f"{side}_SHOULDER" in world)
        centres[~image] = _midline_x(coords, mask, shoulders if len(shoulders) == 2 else None, ~image)
    mirrored = coords[:, perm].astype(np.float64)  # (T, K, C)
    mirrored[..., 0] = 2 * centres - mirrored[..., 0]
    mirrored_mask = mask[:, perm]  # (T, K)
    mirrored[~mirrored_mask] = 0.0
    return mirrored.astype(coords.dtype), mirrored_mask


def _shoulder_pair(coords: np.ndarray, mask: np.ndarray, shoulders: tuple[int, int] | None) -> np.ndarray:
    """(2, F, C) left and right shoulder over the F frames where both are seen."""
    if shoulders is None:
        return np.zeros((2, 0, coords.shape[-1]))
    both = mask[:, shoulders[0]] & mask[:, shoulders[1]]  # (T,)
    return coords[both][:, list(shoulders)].transpose(1, 0, 2).astype(np.float64)


def _midline_x(coords: np.ndarray, mask: np.ndarray, shoulders: tuple[int, int] | None, points: np.ndarray) -> float:
    """Mean shoulder x where both shoulders are seen, else mean x of the seen ``points``, else 0."""
    left, right = _shoulder_pair(coords, mask, shoulders)
    if len(left):
        return float((left[:, 0] + right[:, 0]).mean() / 2)
    seen = mask & points  # (T, K)
    return float(coords[..., 0][seen].astype(np.float64).mean()) if seen.any() else 0.0


def dominant_hand(coords: np.ndarray, mask: np.ndarray, layout: KeypointLayout) -> str:
    """"left" when the left hand is clearly the active one (``DOMINANCE_RATIO``), else "right" (two-handed
    signing, ties and hand-less layouts included).

    A hand's score is the fraction of frames it is seen in plus the path its centre travels between
    consecutive seen frames, in shoulder widths (or, without shoulders, extents of all seen points).
    """
    scores = hand_scores(coords, mask, layout)
    if scores is None:
        return "right"
    left_score, right_score = scores
    return "left" if left_score > DOMINANCE_RATIO * right_score and left_score > 0 else "right"


def hand_scores(coords: np.ndarray, mask: np.ndarray, layout: KeypointLayout) -> tuple[float, float] | None:
    """(left, right) activity of the two hands (see :func:`dominant_hand`); None for a layout without two hands."""
    hands = layout.hand_slices()
    if len(hands) != 2:
        return None
    scale = _body_scale(coords, mask, layout.shoulders())
    left, right = (_hand_activity(coords[:, hand, :2], mask[:, hand], scale) for hand in hands)
    return left, right


def dominance_is_open(coords: np.ndarray, mask: np.ndarray, layout: KeypointLayout) -> bool:
    """Whether the handedness rule leaves this sample's mirror image unmirrored too: neither hand dominates
    (two-handed signing), so a left-handed signer of it reaches the model as the mirror image."""
    scores = hand_scores(coords, mask, layout)
    if scores is None:
        return False
    left, right = scores
    return left <= DOMINANCE_RATIO * right and right <= DOMINANCE_RATIO * left


def _body_scale(coords: np.ndarray, mask: np.ndarray, shoulders: tuple[int, int] | None) -> float:
    """Mean shoulder width, or the extent of all seen points when the shoulders are never both seen."""
    left, right = _shoulder_pair(coords, mask, shoulders)
    width = np.linalg.norm(left[:, :2] - right[:, :2], axis=-1)  # (F,)
    if width.size and width.mean() > 0:
        return float(width.mean())
    seen = coords[..., :2][mask].astype(np.float64)  # (N, 2)
    extent = float(np.ptp(seen, axis=0).max()) if len(seen) else 0.0
    return extent if extent > 0 else 1.0


def _hand_activity(xy: np.ndarray, seen: np.ndarray, scale: float) -> float:
    """Fraction of frames the hand (T, P, 2) is seen in plus its centre's path length over ``scale``."""
    counts = seen.sum(axis=1)  # (T,)
    visible = counts > 0
    centre = (xy.astype(np.float64) * seen[..., None]).sum(axis=1) / np.maximum(counts, 1)[:, None]  # (T, 2)
    steps = np.linalg.norm(np.diff(centre, axis=0), axis=-1)[visible[1:] & visible[:-1]]
    return float(visible.mean() + steps.sum() / scale)


def to_right_dominant(sample: PoseSample) -> PoseSample:
    """The sample as right-handed signing: mirrored when its left hand dominates, else unchanged."""
    if dominant_hand(sample.coords, sample.mask, sample.layout) != "left":
        return sample
    try:
        coords, mask = mirror_coords(sample.coords, sample.mask, sample.layout)
    except LayoutError as e:
        raise sample.error(f"left hand dominant but the sample cannot be mirrored: {e} "
                           f"(data.handedness 'keep' leaves such samples as they are)") from None
    logger.debug("%s: left hand dominant; mirrored into the right-dominant frame", sample.sample_id or sample.source)
    return sample.replace(coords=coords, mask=mask)
