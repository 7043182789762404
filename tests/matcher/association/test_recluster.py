"""Tests of re-clustering (merge and split) and of applying its changes. Descriptors are unit vectors at an angle
in a plane, so the cosine similarity of two of them is the cosine of the difference of their angles."""

from __future__ import annotations

import math

import pytest

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.recluster import apply_changes, recluster
from keyreid_stream.matcher.association.topology import Topology
from keyreid_stream.matcher.state.records import Change

from matcher_harness import counter, trk  # beside these tests (see conftest.py)


def recl(tracklets, params=None, topology=None, new_identity=None):
    return recluster(tracklets, params or AssociationParams(), topology, new_identity or counter("s"))


def test_merge_into_the_identity_that_starts_first():
    tracklets = [trk("a1", "cam1", 1, 0, 10, 0, "B"), trk("b1", "cam2", 1, 30, 40, 10, "A"),
                 trk("b2", "cam2", 1, 40.1, 50, 15, "A")]
    (change,) = recl(tracklets)
    assert (change.kind, change.source, change.target) == ("merge", "A", "B")
    assert change.score == pytest.approx((math.cos(math.radians(10)) + math.cos(math.radians(15))) / 2, abs=0.01)
    assert set(change.tracklets) == {"b1", "b2"}


def test_merge_tie_on_start_goes_to_the_smaller_name():
    (change,) = recl([trk("a", "cam1", 1, 0, 10, 0, "Y"), trk("b", "cam2", 1, 0, 10, 5, "X")])
    assert (change.source, change.target) == ("Y", "X")


@pytest.mark.parametrize(("tracklets", "topology"), [
    ([trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 30, 40, 60, "B")], None),  # below 0.7
    ([trk("a", "cam1", 1, 0, 10, 0, "A"), trk("a2", "cam2", 1, 0, 10, 0, "A"),
      trk("b", "cam1", 2, 5, 15, 0, "B")], None),  # B overlaps A on cam1
    ([trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 100, 110, 0, "B")],
     Topology({("cam1", "cam2"): (5.0, 40.0)})),  # transit
    ([trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 1000, 1010, 0, "B")], None),  # beyond window_s
    ([trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam1", 2, 30, 40, 0, "B")], None),  # one camera only
])
def test_no_merge(tracklets, topology):
    assert recl(tracklets, topology=topology) == []


def test_agglomerative_merges_apply_in_sequence():
    tracklets = [trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 20, 30, 5, "B"),
                 trk("c", "cam3", 1, 40, 50, 12, "C")]
    changes = recl(tracklets)
    assert [(c.kind, c.source, c.target) for c in changes] == [("merge", "B", "A"), ("merge", "C", "A")]
    assert changes[1].tracklets == ("c",)
    result = apply_changes({t.tracklet_id: t.identity for t in tracklets}, changes)
    assert set(result.values()) == {"A"}


def test_merge_moves_everything_merged_before():
    tracklets = [trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 20, 30, 5, "B"),
                 trk("c", "cam3", 1, 40, 50, 3, "C")]
    changes = recl(tracklets)  # B and C are closest: C joins B first, then B (with c) joins A
    assert [(c.source, c.target) for c in changes] == [("C", "B"), ("B", "A")]
    assert set(changes[1].tracklets) == {"b", "c"}


def test_split_off_a_unit_that_does_not_fit():
    tracklets = [trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 20, 30, 5, "A"),
                 trk("c", "cam3", 1, 40, 50, 10, "A"), trk("d1", "cam4", 7, 60, 65, 90, "A"),
                 trk("d2", "cam4", 7, 65.1, 70, 95, "A")]
    (change,) = recl(tracklets)
    assert (change.kind, change.source, change.target) == ("split", "A", "s1")
    assert set(change.tracklets) == {"d1", "d2"}  # the whole unit (camera, track)
    assert change.score < 0.35
    result = apply_changes({t.tracklet_id: t.identity for t in tracklets}, [change])
    assert result == {"a": "A", "b": "A", "c": "A", "d1": "s1", "d2": "s1"}


def test_never_split_the_oldest_unit():
    tracklets = [trk("odd", "cam4", 1, 0, 10, 90, "A"), trk("a", "cam1", 1, 20, 30, 0, "A"),
                 trk("b", "cam2", 1, 40, 50, 5, "A"), trk("c", "cam3", 1, 60, 70, 10, "A")]
    assert recl(tracklets) == []


def test_no_split_of_two_units():
    assert recl([trk("a", "cam1", 1, 0, 10, 0, "A"), trk("b", "cam2", 1, 20, 30, 90, "A")]) == []


def test_recluster_needs_identities():
    with pytest.raises(ValueError, match="needs an identity"):
        recl([trk("a", "cam1", 1, 0, 10)])


def test_apply_changes_rejects_a_split_of_foreign_tracklets():
    with pytest.raises(ValueError, match="not in it"):
        apply_changes({"a": "A"}, [Change("split", "B", "C", 0.1, ("a",))])
