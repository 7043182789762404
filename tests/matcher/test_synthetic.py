"""Tests of the synthetic scenes and the pairwise metric, and the scene-level check of the association: streamed
in publication order in batches of 8, then re-clustered once, it must find the people (and a bad threshold must
not)."""

from __future__ import annotations

from collections import defaultdict
from itertools import combinations

import numpy as np
import pytest

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.synthetic import (
    MODEL_NAME,
    MODEL_VERSION,
    generate_scene,
    pair_precision_recall,
    replay_scene,
    stored_tracklet,
)


@pytest.fixture(scope="module")
def scene():
    return generate_scene(seed=0)


def units(scene):
    """(camera, track_id) -> (person, start, end) over the segments of each track."""
    spans: dict[tuple[str, int], list] = {}
    for item in scene.tracklets:
        m = item.message
        person, start, end = spans.get((m.camera_id, m.track_id), (item.person, m.start_time, m.end_time))
        assert person == item.person  # a track is one person
        spans[(m.camera_id, m.track_id)] = (person, min(start, m.start_time), max(end, m.end_time))
    return spans


# --------------------------------------------------------------------------- pair_precision_recall


@pytest.mark.parametrize(("truth", "predicted", "expected"), [
    ([1, 1, 2], ["a", "a", "b"], (1.0, 1.0)),
    ([1, 1, 2], ["a", "b", "c"], (1.0, 0.0)),  # no predicted pairs: precision 1
    ([1, 1, 2, 2], ["x"] * 4, (2 / 6, 1.0)),
    ([1, 2, 3], ["a", "a", "b"], (0.0, 1.0)),  # no true pairs: recall 1
    ([1, 1, 1, 2, 2], ["a", "a", "b", "b", "b"], (0.5, 0.5)),  # 2 of 4 predicted, 2 of 4 true pairs
    ([], [], (1.0, 1.0)),
    ([7], [None], (1.0, 1.0)),
])
def test_pair_precision_recall(truth, predicted, expected):
    assert pair_precision_recall(truth, predicted) == pytest.approx(expected)


def test_pair_precision_recall_matches_all_pairs():
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 6, 40).tolist(), rng.integers(0, 4, 40).tolist()
    pairs = list(combinations(range(40), 2))
    both = sum(truth[i] == truth[j] and predicted[i] == predicted[j] for i, j in pairs)
    expected = (both / sum(predicted[i] == predicted[j] for i, j in pairs),
                both / sum(truth[i] == truth[j] for i, j in pairs))
    assert pair_precision_recall(truth, predicted) == pytest.approx(expected)


def test_pair_precision_recall_lengths():
    with pytest.raises(ValueError, match="3 true labels but 2 predicted"):
        pair_precision_recall([1, 2, 3], [1, 2])


# --------------------------------------------------------------------------- generate_scene


def test_same_seed_same_scene():
    first, second, other = generate_scene(seed=5), generate_scene(seed=5), generate_scene(seed=6)
    assert first.tracklets == second.tracklets and first.topology == second.topology
    assert [t.message.message_id for t in first.tracklets] != [t.message.message_id for t in other.tracklets]


def test_scene_basics(scene):
    messages = [t.message for t in scene.tracklets]
    assert scene.cameras == ("cam1", "cam2", "cam3", "cam4")
    assert [m.end_time for m in messages] == sorted(m.end_time for m in messages)
    assert len({m.message_id for m in messages}) == len(messages)
    assert {(m.model_name, m.model_version, m.descriptor.shape) for m in messages} == {(MODEL_NAME, MODEL_VERSION,
                                                                                         (256,))}
    assert np.allclose([np.linalg.norm(m.descriptor) for m in messages], 1.0, atol=1e-5)
    assert min(m.start_time for m in messages) >= 1.7e9
    assert all(4.0 - 1e-6 <= end - start <= 20.0 + 1e-6 for _, start, end in units(scene).values())
    cameras_of = defaultdict(set)
    for item in scene.tracklets:
        cameras_of[item.person].add(item.message.camera_id)
    real = [p for p in cameras_of if p < 60]
    assert len(cameras_of) == 100 and len(real) == 60  # 60 people and 40 distractors
    assert all(2 <= len(cameras_of[p]) <= 4 for p in real)
    assert all(len(cameras_of[p]) == 1 for p in cameras_of if p >= 60)


def test_scene_has_split_tracks_and_same_camera_overlaps(scene):
    segments = defaultdict(list)
    for item in scene.tracklets:
        segments[(item.message.camera_id, item.message.track_id)].append(item.message)
    split = [s for s in segments.values() if len(s) == 2]
    assert 0.1 * len(segments) < len(split) < 0.3 * len(segments)
    assert all(a.end_time < b.start_time for a, b in split)
    spans = units(scene)
    overlaps = sum(1 for (ka, a), (kb, b) in combinations(spans.items(), 2)
                   if ka[0] == kb[0] and a[1] <= b[2] and b[1] <= a[2])
    assert overlaps > 20


def test_topology_of_the_scene(scene):
    transits = scene.topology.transits
    assert scene.topology.strict
    assert len(transits) == 12  # every ordered pair of 4 cameras
    assert transits[("cam2", "cam3")] == (-30.0, 5.0)  # the overlapping views
    assert transits[("cam1", "cam2")] == transits[("cam2", "cam1")] == (5.0, 40.0)


def test_people_move_as_the_topology_allows(scene):
    by_person = defaultdict(list)
    for (camera, _), (person, start, end) in units(scene).items():
        by_person[person].append((camera, start, end))
    for visits in by_person.values():
        for a, b in combinations(visits, 2):
            assert scene.topology.allows_spans(*a, *b), (a, b)
    overlapping = [(a, b) for v in by_person.values() for a, b in combinations(v, 2) if a[1] <= b[2] and b[1] <= a[2]]
    assert overlapping  # simultaneous sightings in the overlapping views


def test_descriptor_statistics(scene):
    x = np.stack([t.message.descriptor for t in scene.tracklets])
    person = np.array([t.person for t in scene.tracklets])
    camera = np.array([t.message.camera_id for t in scene.tracklets])
    sims = x @ x.T
    upper = np.triu(np.ones_like(sims, bool), 1)
    same = upper & (person[:, None] == person[None, :]) & (camera[:, None] != camera[None, :])
    different = upper & (person[:, None] != person[None, :])
    assert 0.6 < np.median(sims[same]) < 0.9 and np.quantile(sims[same], 0.1) > 0.6
    assert 0.2 < np.median(sims[different]) < 0.5 and np.quantile(sims[different], 0.99) < 0.6


def test_stored_tracklet(scene):
    message = scene.tracklets[0].message
    stored = stored_tracklet(message, "g1")
    assert (stored.tracklet_id, stored.camera_id, stored.track_id) == (message.message_id, message.camera_id,
                                                                        message.track_id)
    assert (stored.space, stored.identity) == ("synthetic@1/256", "g1")
    assert stored.descriptor.dtype == np.float32 and np.isclose(np.linalg.norm(stored.descriptor), 1.0)


@pytest.mark.parametrize("changes", [{"num_cameras": 1}, {"num_people": -1}, {"similar_people": 1.0},
                                     {"split_prob": 1.5}, {"noise": -0.1}])
def test_generate_scene_validation(changes):
    with pytest.raises(ValueError, match="generate_scene"):
        generate_scene(**changes)


# --------------------------------------------------------------------------- the scene-level check


def one_camera_overlaps(scene, identities):
    """Pairs of tracklets of one identity on one camera, of different tracks, that overlap in time."""
    groups = defaultdict(list)
    for item in scene.tracklets:
        m = item.message
        groups[(identities[m.message_id], m.camera_id)].append(m)
    return [(a.message_id, b.message_id) for group in groups.values() for a, b in combinations(group, 2)
            if a.track_id != b.track_id and a.start_time <= b.end_time and b.start_time <= a.end_time]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streamed_association_finds_the_people(seed):
    scene = generate_scene(seed=seed)
    identities = replay_scene(scene, AssociationParams(), batch_size=8)
    truth = [t.person for t in scene.tracklets]
    precision, recall = pair_precision_recall(truth, [identities[t.message.message_id] for t in scene.tracklets])
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    assert one_camera_overlaps(scene, identities) == []


def test_a_bad_threshold_fails_the_check(scene):
    params = AssociationParams(threshold=0.05, split_threshold=0.0)
    identities = replay_scene(scene, params, batch_size=8)
    truth = [t.person for t in scene.tracklets]
    precision, _ = pair_precision_recall(truth, [identities[t.message.message_id] for t in scene.tracklets])
    assert precision < 0.95
    assert one_camera_overlaps(scene, identities) == []  # the constraint holds whatever the threshold


def test_recluster_repairs_missed_links(scene):
    params = AssociationParams(threshold=0.8)  # too strict: many people are cut into pieces
    truth = [t.person for t in scene.tracklets]

    def recall(identities):
        return pair_precision_recall(truth, [identities[t.message.message_id] for t in scene.tracklets])[1]

    before = recall(replay_scene(scene, params, recluster_at_end=False))
    after = recall(replay_scene(scene, params))
    assert before < 0.5 and after > 0.8
