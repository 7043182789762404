"""The link threshold set from the data (certain negatives, mutual-best cross-camera pairs), without labels."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.association.calibration import calibrate, estimate_threshold
from keyreid_stream.matcher.association.synthetic import generate_scene, stored_tracklet


def _tracklets(scene):
    return [stored_tracklet(t.message) for t in scene.tracklets]


@pytest.mark.parametrize(("options", "low", "high"), [
    ({}, 0.57, 0.63),  # clean descriptors: the best fixed thresholds are 0.575-0.65
    ({"noise": 0.8, "similar_people": 0.5}, 0.51, 0.58),  # noisier: same people less alike, the cut moves down
])
def test_the_threshold_moves_with_the_descriptors(options, low, high):
    scene = generate_scene(num_people=40, distractors=25, seed=7, **options)
    found = estimate_threshold(_tracklets(scene), topology=scene.topology)
    assert found is not None and low < found.threshold < high, found
    assert found.negative_quantile < found.threshold < found.positive_median


def test_the_rule_sets_all_three_thresholds_and_fixed_keeps_them():
    scene = generate_scene(num_people=40, distractors=25, seed=7, noise=0.8, similar_people=0.5)
    tracklets = _tracklets(scene)
    fixed = AssociationParams()
    assert calibrate(tracklets, fixed, topology=scene.topology) is fixed
    tuned = calibrate(tracklets, AssociationParams(threshold_rule="midpoint"), topology=scene.topology)
    assert tuned.threshold < fixed.threshold  # noisy descriptors: a lower cut
    assert tuned.split_threshold < tuned.merge_threshold < tuned.threshold and tuned.threshold_rule == "midpoint"


def test_too_little_evidence_keeps_the_configured_thresholds():
    scene = generate_scene(num_people=40, distractors=25, seed=7)
    params = AssociationParams(threshold_rule="midpoint")
    assert calibrate(_tracklets(scene)[:20], params, topology=scene.topology) is params
    assert estimate_threshold([], topology=scene.topology) is None


def test_only_the_most_common_descriptor_space_is_used():
    scene = generate_scene(num_people=40, distractors=25, seed=7)
    tracklets = _tracklets(scene)
    other = [dataclasses.replace(t, space="other@1/256", descriptor=-t.descriptor) for t in tracklets[:30]]
    assert estimate_threshold(tracklets + other, topology=scene.topology) == estimate_threshold(
        tracklets, topology=scene.topology)


def test_an_unknown_rule_is_an_error():
    with pytest.raises(ValueError, match="threshold_rule"):
        AssociationParams(threshold_rule="otsu")  # type: ignore[arg-type]
    assert np.isfinite(AssociationParams(threshold_rule="midpoint").threshold)
