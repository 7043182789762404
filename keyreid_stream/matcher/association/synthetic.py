"""Synthetic camera-network scenes with known identities, for the matcher's tests and benchmarks.

:func:`generate_scene` walks people along a line of cameras (adjacent cameras a short walk apart, one pair with
overlapping views) and publishes a :class:`~keyreid_stream.contracts.TrackletMessage` per visit, sometimes as two
segments of one track, plus single-camera distractors. Descriptors are a person prototype (people share a
component, look-alikes a second one) plus a per-camera shift plus per-tracklet noise.

:func:`replay_scene` runs the association on a scene the way the matcher would (batches in publication order,
re-clustering at the end) and :func:`pair_precision_recall` scores the result against the ground truth.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from itertools import count
from typing import Any

import numpy as np

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.matcher.association.association import AssociationParams, associate
from keyreid_stream.matcher.association.calibration import calibrate
from keyreid_stream.matcher.association.recluster import apply_changes, recluster
from keyreid_stream.matcher.association.topology import Topology
from keyreid_stream.matcher.state.records import StoredTracklet, descriptor_space, normalize

__all__ = [
    "MODEL_NAME", "MODEL_VERSION", "SyntheticScene", "SyntheticTracklet", "generate_scene", "pair_precision_recall",
    "replay_scene", "stored_tracklet",
]

MODEL_NAME, MODEL_VERSION = "synthetic", "1"
TRANSIT_S = (5.0, 40.0)  # walking between adjacent cameras
OVERLAP_S = (-30.0, 5.0)  # the pair of cameras with overlapping views
VISIT_S = (4.0, 20.0)  # time on screen per camera
ARRIVAL_SPREAD_S = 180.0  # people enter the network within this many seconds
FPS = 10.0
SEGMENT_GAP_S = 0.1  # between the two segments of a split visit (one frame)
LOOKALIKE_GROUP = 4  # people per look-alike group (similar clothing)
LOOKALIKE_WEIGHT = 0.45  # share of a person's own appearance that comes from the group


@dataclass(frozen=True)
class SyntheticTracklet:
    """One published tracklet and the ground-truth person (distractors have their own ids)."""

    message: TrackletMessage
    person: int


@dataclass(frozen=True)
class SyntheticScene:
    """Tracklets in publication order (by end time), the network's topology and its cameras."""

    tracklets: tuple[SyntheticTracklet, ...]
    topology: Topology
    cameras: tuple[str, ...]


def _unit(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    return normalize(rng.standard_normal((rows, dim)))


def _legs(num_cameras: int) -> list[tuple[float, float]]:
    """Transit bounds between camera i and i + 1: the middle leg has overlapping views."""
    overlap = (num_cameras - 1) // 2
    return [OVERLAP_S if i == overlap else TRANSIT_S for i in range(num_cameras - 1)]


def _topology(cameras: Sequence[str], legs: Sequence[tuple[float, float]]) -> Topology:
    """Strict topology of every camera pair: the bounds of a walk along the line (visits in between included)."""
    transits = {}
    for i in range(len(cameras)):
        for j in range(i + 1, len(cameras)):
            inner = j - i - 1
            low = sum(leg[0] for leg in legs[i:j]) + inner * VISIT_S[0]
            high = sum(leg[1] for leg in legs[i:j]) + inner * VISIT_S[1]
            transits[(cameras[i], cameras[j])] = transits[(cameras[j], cameras[i])] = (low, high)
    return Topology(transits, strict=True)


def _route(rng: np.random.Generator, num_cameras: int) -> list[int]:
    length = int(rng.integers(2, num_cameras + 1))
    first = int(rng.integers(0, num_cameras - length + 1))
    route = list(range(first, first + length))
    return route[::-1] if rng.random() < 0.5 else route


def _visits(rng: np.random.Generator, route: Sequence[int], legs: Sequence[tuple[float, float]],
            arrival: float) -> list[tuple[int, float, float]]:
    """(camera, start, end) per camera of the route; a negative gap never starts before the previous visit."""
    visits, start = [], arrival
    for step, camera in enumerate(route):
        end = start + rng.uniform(*VISIT_S)
        visits.append((camera, start, end))
        if step + 1 < len(route):
            low, high = legs[min(camera, route[step + 1])]
            start = end + rng.uniform(max(low, start - end + 0.5), high)
    return visits


def _segments(rng: np.random.Generator, start: float, end: float, split_prob: float) -> list[tuple[float, float]]:
    if rng.random() >= split_prob:
        return [(start, end)]
    middle = start + (end - start) * rng.uniform(0.3, 0.7)
    return [(start, middle), (middle + SEGMENT_GAP_S, end)]


def _message_id(rng: np.random.Generator) -> str:
    return rng.bytes(16).hex()


def generate_scene(*, num_people: int = 60, num_cameras: int = 4, distractors: int = 40, dim: int = 256,
                   noise: float = 0.5, camera_shift: float = 0.3, similar_people: float = 0.35,
                   split_prob: float = 0.2, arrival_spread_s: float = ARRIVAL_SPREAD_S, start_time: float = 1.7e9,
                   seed: int = 0) -> SyntheticScene:
    """A scene of ``num_people`` people walking 2..num_cameras adjacent cameras and ``distractors`` people seen
    on one camera only, all arriving within ``arrival_spread_s``; the same seed gives the same scene (message ids
    included).

    Descriptor of a tracklet: ``normalize(prototype + camera_shift * camera + noise * u * random)`` with unit
    vectors, ``u`` uniform in [0.5, 1.5] per tracklet (quality varies); prototypes share ``similar_people`` of
    their variance with everyone and part of the rest with a look-alike group. With the defaults, one person on
    two cameras has a cosine of 0.6-0.88 (median 0.74), two people mostly 0.15-0.4 (median 0.26) with look-alikes
    up to about 0.6, so a threshold alone does not separate everyone: the constraints and the one-to-one
    assignment matter.
    """
    if num_cameras < 2 or num_people < 0 or distractors < 0 or dim < 2:
        raise ValueError(f"generate_scene: need num_cameras >= 2, num_people >= 0, distractors >= 0, dim >= 2; "
                         f"got {num_cameras}, {num_people}, {distractors}, {dim}")
    if (not 0 <= similar_people < 1 or not 0 <= split_prob <= 1 or noise < 0 or camera_shift < 0
            or arrival_spread_s < 0):
        raise ValueError("generate_scene: need 0 <= similar_people < 1, 0 <= split_prob <= 1, noise >= 0, "
                         "camera_shift >= 0, arrival_spread_s >= 0")
    rng = np.random.default_rng(seed)
    cameras = tuple(f"cam{i + 1}" for i in range(num_cameras))
    legs = _legs(num_cameras)
    total = num_people + distractors
    groups = _unit(rng, max(1, math.ceil(total / LOOKALIKE_GROUP)), dim)
    own = math.sqrt(1 - similar_people)
    prototypes = normalize(math.sqrt(similar_people) * _unit(rng, 1, dim)
                           + own * math.sqrt(LOOKALIKE_WEIGHT) * groups[rng.integers(0, len(groups), total)]
                           + own * math.sqrt(1 - LOOKALIKE_WEIGHT) * _unit(rng, total, dim))
    shifts = _unit(rng, num_cameras, dim)
    sightings: list[tuple[int, int, float, float]] = []  # (person, camera, start, end) per visit
    for person in range(total):
        arrival = rng.uniform(0.0, arrival_spread_s)
        if person < num_people:
            route = _route(rng, num_cameras)
        else:
            route = [int(rng.integers(0, num_cameras))]
        sightings += [(person, c, s, e) for c, s, e in _visits(rng, route, legs, arrival)]
    sightings.sort(key=lambda v: (v[2], v[1], v[0]))  # track ids in order of appearance per camera
    next_track = [1] * num_cameras
    out = []
    for person, camera, start, end in sightings:
        track_id, next_track[camera] = next_track[camera], next_track[camera] + 1
        for seg_start, seg_end in _segments(rng, start, end, split_prob):
            vector = prototypes[person] + camera_shift * shifts[camera]
            vector = vector + noise * rng.uniform(0.5, 1.5) * _unit(rng, 1, dim)[0]
            message = TrackletMessage(
                cameras[camera], track_id, start_time + seg_start, start_time + seg_end,
                max(1, round((seg_end - seg_start) * FPS)), normalize(vector), MODEL_NAME, MODEL_VERSION,
                _message_id(rng))
            out.append(SyntheticTracklet(message, person))
    out.sort(key=lambda t: (t.message.end_time, t.message.camera_id, t.message.track_id))
    return SyntheticScene(tuple(out), _topology(cameras, legs), cameras)


def stored_tracklet(message: TrackletMessage, identity: str | None = None) -> StoredTracklet:
    """The matcher's view of a published message (normalised descriptor, space from the model and dimension)."""
    descriptor = message.descriptor
    return StoredTracklet(
        message.message_id, message.camera_id, message.track_id, message.start_time, message.end_time,
        message.num_frames, descriptor_space(message.model_name, message.model_version, descriptor.shape[0]),
        normalize(descriptor), identity, message.end_time)


def replay_scene(scene: SyntheticScene, params: AssociationParams, *, batch_size: int = 8,
                 use_topology: bool = True, recluster_at_end: bool = True) -> dict[str, str]:
    """Associate the scene's tracklets in publication order, ``batch_size`` at a time (known = everything decided
    before; the thresholds as ``params.threshold_rule`` sets them on what each step sees), then optionally
    re-cluster once; returns tracklet id -> identity ("id1", "id2", ...)."""
    counter = count(1)

    def new_identity() -> str:
        return f"id{next(counter)}"

    topology = scene.topology if use_topology else None
    known: list[StoredTracklet] = []
    for low in range(0, len(scene.tracklets), batch_size):
        batch = [stored_tracklet(t.message) for t in scene.tracklets[low:low + batch_size]]
        decided = calibrate([*known, *batch], params, topology=topology)
        decisions = associate(batch, known, decided, topology, new_identity)
        known += [dataclasses.replace(t, identity=d.identity) for t, d in zip(batch, decisions)]
    identities = {t.tracklet_id: identity for t in known if (identity := t.identity) is not None}
    if recluster_at_end:
        decided = calibrate(known, params, topology=topology)
        identities = apply_changes(identities, recluster(known, decided, topology, new_identity))
    return identities


def pair_precision_recall(true_labels: Sequence[Hashable], predicted: Sequence[Hashable]) -> tuple[float, float]:
    """Pairwise precision and recall: over all unordered pairs of items, "predicted in one cluster" against
    "truly one cluster" (from the contingency counts). No predicted pairs: precision 1; no true pairs: recall 1."""
    if len(true_labels) != len(predicted):
        raise ValueError(f"pair_precision_recall: {len(true_labels)} true labels but {len(predicted)} predicted")

    def pairs(counts: Counter[Any]) -> int:
        return sum(n * (n - 1) // 2 for n in counts.values())

    both = pairs(Counter(zip(true_labels, predicted)))
    predicted_pairs, true_pairs = pairs(Counter(predicted)), pairs(Counter(true_labels))
    precision = both / predicted_pairs if predicted_pairs else 1.0
    recall = both / true_pairs if true_pairs else 1.0
    return precision, recall
