"""Tests of the pure association logic: continuation, threshold, the same-camera and transit constraints, the
window, the assignment methods, the decision's explanation, descriptor spaces and parameter validation.
Descriptors are unit vectors at an angle in a plane, so the cosine similarity of two of them is the cosine of the
difference of their angles."""

from __future__ import annotations

import math

import pytest

from keyreid_stream.matcher.association.association import MAX_CANDIDATES, AssociationParams, associate
from keyreid_stream.matcher.association.topology import Topology

from matcher_harness import counter, trk, vec  # beside these tests (see conftest.py)


def run(new, known=(), params=None, topology=None, new_identity=None):
    return associate(list(new), list(known), params or AssociationParams(), topology, new_identity or counter())


def by_id(decisions):
    return {d.tracklet_id: d for d in decisions}


# --------------------------------------------------------------------------- associate


def test_continuation_of_a_known_track_and_of_a_segment_in_the_same_batch():
    known = [trk("k1", "cam1", 5, 0, 10, identity="A")]
    new = [trk("n1", "cam1", 5, 10.1, 20, degrees=-90), trk("n2", "cam2", 7, 30, 40, degrees=80),
           trk("n3", "cam2", 7, 40.1, 50, degrees=10)]
    decisions = by_id(run(new, known))
    assert (decisions["n1"].identity, decisions["n1"].kind, decisions["n1"].score) == ("A", "continuation", 1.0)
    assert decisions["n1"].matched_tracklet == "k1"
    assert decisions["n2"].kind == "new"  # 80 degrees from everything of A
    assert decisions["n3"].kind == "continuation"  # despite its descriptor: same camera and track
    assert (decisions["n3"].identity, decisions["n3"].matched_tracklet) == (decisions["n2"].identity, "n2")


def test_decisions_come_in_the_order_of_new():
    new = [trk("b", "cam2", 1, 50, 60), trk("a", "cam1", 1, 0, 10), trk("c", "cam3", 1, 100, 110)]
    assert [d.tracklet_id for d in run(new)] == ["b", "a", "c"]


@pytest.mark.parametrize(("degrees", "kind", "identity"), [
    (10, "appearance", "A"),  # cos 10 = 0.98
    (50, "appearance", "A"),  # cos 50 = 0.64
    (55, "new", "n1"),  # cos 55 = 0.57 < 0.6
    (90, "new", "n1"),
])
def test_threshold_joins_or_creates(degrees, kind, identity):
    known = [trk("k1", "cam1", 1, 0, 10, identity="A")]
    (decision,) = run([trk("t", "cam2", 1, 30, 40, degrees)], known)
    assert (decision.kind, decision.identity) == (kind, identity)
    assert decision.score == pytest.approx(math.cos(math.radians(degrees)), abs=1e-6)
    assert decision.candidates[0][0] == "A" and decision.candidates[0][2] == "k1"  # kept even below threshold
    assert decision.matched_tracklet == ("k1" if kind == "appearance" else None)


def test_new_without_candidates_scores_zero():
    (decision,) = run([trk("t", "cam2", 1, 30, 40)])
    assert (decision.kind, decision.identity, decision.score, decision.candidates) == ("new", "n1", 0.0, ())


def test_same_camera_overlap_makes_an_identity_infeasible():
    known = [trk("k1", "cam2", 1, 0, 20, identity="A"), trk("k2", "cam1", 3, 5, 25, identity="A")]
    (decision,) = run([trk("t", "cam1", 4, 10, 30)], known)  # overlaps k2 on cam1: another person
    assert decision.kind == "new"
    assert decision.rejected == (("A", "same_camera_overlap"),)
    assert decision.candidates == ()


def test_overlapping_tracks_of_one_camera_in_one_batch_never_share_an_identity():
    known = [trk("k1", "cam1", 1, 0, 10, identity="A")]
    new = [trk("x", "cam2", 1, 30, 40, degrees=5), trk("y", "cam2", 2, 35, 45, degrees=-8)]
    decisions = by_id(run(new, known))
    assert decisions["x"].identity == "A" and decisions["y"].kind == "new"
    assert decisions["y"].candidates[0][0] == "A"  # the feasible candidate it lost to x


def test_non_overlapping_tracks_of_one_camera_may_both_join():
    known = [trk("k1", "cam1", 1, 0, 10, identity="A")]
    new = [trk("x", "cam2", 1, 30, 40), trk("y", "cam2", 2, 50, 60)]
    assert {d.identity for d in run(new, known)} == {"A"}


@pytest.mark.parametrize(("transits", "strict", "kind", "rejected"), [
    ({("cam1", "cam2"): (5.0, 40.0)}, False, "appearance", ()),  # gap 20 s: inside
    ({("cam1", "cam2"): (30.0, 40.0)}, False, "new", (("A", "transit"),)),  # too fast
    ({("cam1", "cam2"): (0.0, 10.0)}, False, "new", (("A", "transit"),)),  # too slow
    ({("cam2", "cam1"): (30.0, 40.0)}, False, "appearance", ()),  # only the other direction listed
    ({}, False, "appearance", ()),  # not listed: allowed
    ({}, True, "new", (("A", "transit"),)),  # not listed, strict: forbidden
    ({("cam1", "cam2"): (5.0, 40.0)}, True, "appearance", ()),
])
def test_topology_transit(transits, strict, kind, rejected):
    known = [trk("k1", "cam1", 1, 0, 10, identity="A")]
    (decision,) = run([trk("t", "cam2", 1, 30, 40)], known, topology=Topology(transits, strict))
    assert (decision.kind, decision.rejected) == (kind, rejected)


@pytest.mark.parametrize(("bounds", "kind"), [((-30.0, 5.0), "appearance"), ((5.0, 40.0), "new")])
def test_overlapping_views_need_a_negative_min(bounds, kind):
    known = [trk("k1", "cam1", 1, 0, 20, identity="A")]
    topology = Topology({("cam1", "cam2"): bounds, ("cam2", "cam1"): bounds})
    (decision,) = run([trk("t", "cam2", 1, 10, 30)], known, topology=topology)  # gap 10 - 20 = -10 s
    assert decision.kind == kind


def test_transit_uses_the_span_of_the_whole_known_track():
    known = [trk("k1", "cam1", 1, 0, 10, identity="A"), trk("k2", "cam1", 1, 10.1, 50, degrees=60, identity="A")]
    topology = Topology({("cam1", "cam2"): (5.0, 40.0)})
    (decision,) = run([trk("t", "cam2", 1, 60, 70)], known, topology=topology)  # 50 s after k1, 10 s after k2
    assert (decision.kind, decision.matched_tracklet) == ("appearance", "k1")


@pytest.mark.parametrize(("window_s", "kind"), [(600.0, "new"), (1000.0, "appearance")])
def test_window(window_s, kind):
    known = [trk("k1", "cam1", 1, 0, 10, identity="A")]
    (decision,) = run([trk("t", "cam2", 1, 700, 710)], known, AssociationParams(window_s=window_s))
    assert decision.kind == kind
    assert bool(decision.candidates) == (kind == "appearance")  # outside the window: not even a candidate


# A at 0 and B at 40 degrees; x (15) and y (-25) overlap on cam3: x-A 0.97, x-B 0.91, y-A 0.91, y-B 0.42.
# Greedy and mutual best give A to x and leave y alone; Hungarian gives x B and y A (total 1.81 > 0.97).
@pytest.mark.parametrize(("assignment", "expected"), [
    ("hungarian", {"x": "B", "y": "A"}),
    ("greedy", {"x": "A", "y": "n1"}),
    ("mutual_best", {"x": "A", "y": "n1"}),
])
def test_assignment_methods(assignment, expected):
    known = [trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 0, 10, 40, "B")]
    new = [trk("x", "cam3", 1, 30, 40, 15), trk("y", "cam3", 2, 32, 42, -25)]
    decisions = run(new, known, AssociationParams(assignment=assignment))
    assert {d.tracklet_id: d.identity for d in decisions} == expected


@pytest.mark.parametrize("assignment", ["hungarian", "greedy", "mutual_best"])
def test_each_method_assigns_clear_pairs(assignment):
    known = [trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 0, 10, 40, "B"),
             trk("c", "cam4", 1, 0, 10, 80, "C")]
    new = [trk("x", "cam3", 1, 30, 40, 38), trk("y", "cam3", 2, 32, 42, 5), trk("z", "cam3", 3, 33, 43, 75)]
    decisions = run(new, known, AssociationParams(assignment=assignment))
    assert {d.tracklet_id: d.identity for d in decisions} == {"x": "B", "y": "A", "z": "C"}


def test_mutual_best_resolves_in_rounds():
    # x's best is A but A prefers y; y-A is mutual, then x-B in the next round.
    known = [trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 0, 10, 30, "B")]
    new = [trk("x", "cam3", 1, 30, 40, 12), trk("y", "cam3", 2, 32, 42, 2)]
    decisions = run(new, known, AssociationParams(assignment="mutual_best"))
    assert {d.tracklet_id: d.identity for d in decisions} == {"x": "B", "y": "A"}


def test_new_tracklets_of_two_cameras_link_in_one_call():
    new_identity = counter()
    new = [trk("second", "cam2", 4, 30, 40, 5), trk("first", "cam1", 9, 0, 10)]
    decisions = by_id(run(new, new_identity=new_identity))
    assert (decisions["first"].kind, decisions["first"].identity) == ("new", "n1")
    assert (decisions["second"].kind, decisions["second"].identity) == ("appearance", "n1")
    assert decisions["second"].matched_tracklet == "first"
    assert new_identity() == "n2"  # called once


def test_candidates_are_the_best_three_feasible_and_rejected_are_listed():
    known = [trk(f"k{i}", f"cam{i + 2}", 1, 0, 10, deg, name)
             for i, (deg, name) in enumerate([(70, "A"), (20, "B"), (60, "C"), (40, "D"), (10, "E")])]
    known.append(trk("k9", "cam1", 2, 25, 35, 0, "E"))  # E overlaps t on its camera
    (decision,) = run([trk("t", "cam1", 1, 30, 40)], known)
    assert len(decision.candidates) == MAX_CANDIDATES
    assert [c[0] for c in decision.candidates] == ["B", "D", "C"]
    assert [c[1] for c in decision.candidates] == pytest.approx([math.cos(math.radians(d)) for d in (20, 40, 60)])
    assert [c[2] for c in decision.candidates] == ["k1", "k3", "k2"]
    assert decision.rejected == (("E", "same_camera_overlap"),)
    assert (decision.identity, decision.matched_tracklet) == ("B", "k1")


@pytest.mark.parametrize(("linkage", "kind", "score"), [("max", "appearance", 0.94), ("mean", "new", 0.55)])
def test_linkage(linkage, kind, score):
    known = [trk("k1", "cam1", 1, 0, 10, 20, "A"), trk("k2", "cam2", 1, 0, 10, 80, "A")]
    (decision,) = run([trk("t", "cam3", 1, 30, 40)], known, AssociationParams(linkage=linkage))
    assert decision.kind == kind
    assert decision.score == pytest.approx(score, abs=0.01)  # max: cos 20; mean: (cos 20 + cos 80) / 2


@pytest.mark.parametrize(("same_camera", "start", "kind"), [
    (False, 50, "new"),  # re-entry on one camera is not a candidate by default
    (True, 50, "appearance"),
    (True, 5, "new"),  # overlapping: another person even with same_camera
])
def test_same_camera_reentry(same_camera, start, kind):
    known = [trk("k1", "cam1", 1, 0, 10, identity="A")]
    params = AssociationParams(same_camera=same_camera)
    (decision,) = run([trk("t", "cam1", 2, start, start + 10)], known, params)
    assert decision.kind == kind


def test_descriptor_spaces_are_never_mixed():
    known = [trk("k1", "cam1", 1, 0, 10, identity="A", space="a@1/4")]
    new = [trk("t", "cam2", 1, 30, 40, space="b@1/4"), trk("u", "cam3", 1, 30, 40, space="a@1/4")]
    decisions = by_id(run(new, known))
    assert (decisions["t"].kind, decisions["t"].candidates) == ("new", ())
    assert decisions["u"].identity == "A"


def test_descriptor_spaces_of_other_dimensions():
    known = [trk("k1", "cam1", 1, 0, 10, identity="A", space="a@1/8", descriptor=vec(0, 8))]
    (decision,) = run([trk("t", "cam2", 1, 30, 40)], known)
    assert decision.kind == "new"


@pytest.mark.parametrize(("known", "new_identity", "message"), [
    ([trk("k1", "cam1", 1, 0, 10)], counter(), "needs an identity"),
    ([trk("k1", "cam1", 1, 0, 10, 90, identity="A")], lambda: "A", "new non-empty identity"),
    ([], lambda: "", "new non-empty identity"),
])
def test_associate_errors(known, new_identity, message):
    with pytest.raises(ValueError, match=message):
        run([trk("t", "cam2", 1, 30, 40)], known, new_identity=new_identity)


def test_empty_batch():
    assert run([], [trk("k1", "cam1", 1, 0, 10, identity="A")]) == []


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize(("changes", "message"), [
    ({"window_s": 0}, "window_s"),
    ({"window_s": float("nan")}, "window_s"),
    ({"threshold": 0.0}, "threshold"),
    ({"threshold": 1.5}, "threshold"),
    ({"threshold": "0.6"}, "threshold"),
    ({"threshold": True}, "threshold"),
    ({"merge_threshold": 0.0}, "merge_threshold"),
    ({"split_threshold": 0.6}, "split_threshold"),  # must be below threshold
    ({"split_threshold": 0.5, "merge_threshold": 0.45}, "split_threshold"),  # and below merge_threshold
    ({"split_threshold": -1.5}, "split_threshold"),
    ({"assignment": "auction"}, "assignment"),
    ({"linkage": "min"}, "linkage"),
    ({"same_camera": "yes"}, "same_camera"),
])
def test_params_validation(changes, message):
    with pytest.raises(ValueError, match=f"AssociationParams.{message}"):
        AssociationParams(**changes)


def test_params_defaults_and_ints():
    params = AssociationParams(window_s=60, threshold=1)
    assert (params.window_s, params.threshold, params.assignment, params.linkage) == (60.0, 1.0, "hungarian", "max")
