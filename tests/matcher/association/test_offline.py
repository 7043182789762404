"""The offline reference (average-linkage clustering at its best threshold) and the online association held
against it on a synthetic scene: a bound that a broken association cannot pass."""

from __future__ import annotations

import numpy as np
import pytest

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.offline import f1_score, offline_identities, offline_optimum
from keyreid_stream.matcher.association.synthetic import (
    generate_scene,
    pair_precision_recall,
    replay_scene,
    stored_tracklet,
)
from keyreid_stream.matcher.state.records import StoredTracklet, normalize

THRESHOLDS = np.round(np.arange(0.3, 0.95, 0.02), 2)
MIN_RATIO = 0.9  # online F1 / offline optimum F1


@pytest.fixture(scope="module")
def scene():
    return generate_scene(num_people=40, distractors=25, seed=3)


def _scorer(scene):
    ids = [t.message.message_id for t in scene.tracklets]
    truth = [t.person for t in scene.tracklets]
    return lambda identities: pair_precision_recall(truth, [identities[i] for i in ids])


@pytest.fixture(scope="module")
def optimum(scene):
    return offline_optimum([stored_tracklet(t.message) for t in scene.tracklets], _scorer(scene),
                           topology=scene.topology, thresholds=THRESHOLDS)


def test_the_offline_optimum_finds_the_people(optimum):
    assert optimum.f1 > 0.95 and 0.3 < optimum.threshold < 0.9


# name: (params, batch size, re-clustering). A broken association: every tracklet its own identity (a threshold
# nothing reaches, no re-clustering), everyone merged (a threshold everything reaches), or decisions taken one
# tracklet at a time with no correction but a threshold too strict for the descriptors.
BROKEN = {
    "never links": (AssociationParams(threshold=1.0, merge_threshold=1.0), 8, False),
    "links everything": (AssociationParams(threshold=0.01, merge_threshold=0.01, split_threshold=-1.0), 8, True),
    "too strict, no correction": (AssociationParams(threshold=0.85), 1, False),
}


def test_online_association_is_within_the_bound_of_the_offline_optimum(scene, optimum):
    online = f1_score(*_scorer(scene)(replay_scene(scene, AssociationParams(), batch_size=8)))
    assert online / optimum.f1 >= MIN_RATIO, (online, optimum.f1)


@pytest.mark.parametrize("name", list(BROKEN))
def test_a_broken_association_fails_the_bound(scene, optimum, name):
    params, batch, correct = BROKEN[name]
    online = f1_score(*_scorer(scene)(replay_scene(scene, params, batch_size=batch, recluster_at_end=correct)))
    assert online / optimum.f1 < MIN_RATIO, (name, online, optimum.f1)


def _tracklet(name: str, camera: str, track: int, start: float, vector: list[float]) -> StoredTracklet:
    return StoredTracklet(name, camera, track, start, start + 5.0, 10, "s@1/3", normalize(np.asarray(vector)))


def test_offline_clustering_keeps_the_constraints_and_uses_average_linkage():
    # a and b overlap on cam1 (two people); c on cam2 looks like both: it may join one of them, never both.
    # d on cam2 is like e on cam3 (0.96); f on cam1 is like e (0.86) but not d (0.67): the average, 0.77, keeps
    # f apart from {d, e} at 0.8, where the maximum would have joined it.
    tracklets = [_tracklet("a", "cam1", 1, 0.0, [1, 0, 0]), _tracklet("b", "cam1", 2, 1.0, [1, 0.05, 0]),
                 _tracklet("c", "cam2", 1, 2.0, [1, 0.02, 0]),
                 _tracklet("d", "cam2", 2, 100.0, [0, 1, 0]), _tracklet("e", "cam3", 1, 100.0, [0, 1, 0.3]),
                 _tracklet("f", "cam1", 3, 100.0, [0, 1, 1.1])]
    ids = offline_identities(tracklets, 0.8)
    assert ids["a"] != ids["b"] and ids["c"] in (ids["a"], ids["b"])
    assert ids["d"] == ids["e"] and ids["f"] != ids["d"]
    assert len(set(offline_identities(tracklets, 0.99999).values())) == 6  # nothing that alike: no merges


@pytest.fixture(scope="module")
def harder():
    """Noisier descriptors and more alike people: the fixed threshold 0.6 is too strict for them."""
    scene = generate_scene(num_people=40, distractors=25, seed=3, noise=0.8, similar_people=0.5)
    optimum = offline_optimum([stored_tracklet(t.message) for t in scene.tracklets], _scorer(scene),
                              topology=scene.topology, thresholds=THRESHOLDS)
    return scene, optimum


@pytest.mark.parametrize(("rule", "within"), [("midpoint", True), ("fixed", False)])
def test_on_a_harder_scene_the_threshold_rule_keeps_the_bound(harder, rule, within):
    # measured: midpoint 0.93 of the optimum, fixed 0.76 (recall lost: 0.6 is above many same-person pairs)
    scene, optimum = harder
    online = f1_score(*_scorer(scene)(replay_scene(scene, AssociationParams(threshold_rule=rule), batch_size=8)))
    assert (online / optimum.f1 >= MIN_RATIO) is within, (rule, online, optimum.f1)
