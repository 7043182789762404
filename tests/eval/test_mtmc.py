"""Multi-camera tracking metrics: against py-motmetrics on the MOTChallenge files it ships, and on hand-built cases
whose answers are worked out in the comments (single camera, and identities across cameras)."""

from __future__ import annotations

import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from keyreid_stream.eval.mtmc import (
    box_iou_xywh,
    evaluate_camera,
    evaluate_mtmc,
    format_mtmc_table,
    identity_scores,
)
from keyreid_stream.mot import MotDataError, MotTracks, read_mot

# ------------------------------------------------------------------------------------------ py-motmetrics


def _motmetrics_data() -> Path:
    spec = importlib.util.find_spec("motmetrics")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("motmetrics is not installed (pip install motmetrics): its MOTChallenge files are the reference")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


# The numbers py-motmetrics' own test suite expects for the files it ships: cheind/py-motmetrics,
# motmetrics/tests/test_metrics.py::test_motchallenge_files (IoU 0.5, metrics.motchallenge_metrics), and
# num_detections (matches + switches) from the same computation. Its MOTP is the mean distance 1 - IoU.
MOTMETRICS_EXPECTED = {
    "TUD-Campus": dict(idf1=0.557659, idp=0.729730, idr=0.451253, recall=0.582173, precision=0.941441, gt_tracks=8,
                       mt=1, pt=6, ml=1, fp=13, fn=150, idsw=7, frag=7, mota=0.526462, motp_distance=0.277201,
                       matched=209),
    "TUD-Stadtmitte": dict(idf1=0.644619, idp=0.819760, idr=0.531142, recall=0.608997, precision=0.939920,
                           gt_tracks=10, mt=5, pt=4, ml=1, fp=45, fn=452, idsw=7, frag=6, mota=0.564014,
                           motp_distance=0.345904, matched=704),
}


@pytest.mark.parametrize("sequence", sorted(MOTMETRICS_EXPECTED))
def test_matches_the_numbers_py_motmetrics_records(sequence: str) -> None:
    folder = _motmetrics_data() / sequence
    scores = evaluate_camera(read_mot(folder / "gt.txt", gt=True), read_mot(folder / "test.txt"))
    want, clear, identity = MOTMETRICS_EXPECTED[sequence], scores.clear, scores.identity
    assert (identity.idf1, identity.idp, identity.idr) == pytest.approx((want["idf1"], want["idp"], want["idr"]),
                                                                        abs=1e-6)
    assert (clear.mota, 1 - clear.motp, clear.recall, clear.precision) == pytest.approx(
        (want["mota"], want["motp_distance"], want["recall"], want["precision"]), abs=1e-6)
    counts = (clear.false_positives, clear.misses, clear.id_switches, clear.fragmentations, clear.gt_tracks,
              clear.mostly_tracked, clear.partially_tracked, clear.mostly_lost, clear.matched)
    assert counts == tuple(want[k] for k in ("fp", "fn", "idsw", "frag", "gt_tracks", "mt", "pt", "ml", "matched"))


def _motmetrics_summary(folder: Path) -> dict[str, float]:
    """py-motmetrics itself on one sequence (skips when it does not run under the installed numpy)."""
    import motmetrics as mm

    names = ["idf1", "idp", "idr", "mota", "motp", "num_false_positives", "num_misses", "num_switches",
             "num_fragmentations", "num_detections"]
    with warnings.catch_warnings():  # its pandas deprecations are not ours
        warnings.simplefilter("ignore")
        try:
            accumulator = mm.utils.compare_to_groundtruth(mm.io.loadtxt(folder / "gt.txt"),
                                                          mm.io.loadtxt(folder / "test.txt"), "iou", distth=0.5)
        except AttributeError as exc:  # motmetrics 1.4.0 calls np.asfarray, which numpy 2 removed
            pytest.skip(f"motmetrics does not run with numpy {np.__version__}: {exc}")
        summary = mm.metrics.create().compute(accumulator, metrics=names, return_dataframe=False)
    return {name: float(summary[name]) for name in names}


@pytest.mark.parametrize("sequence", sorted(MOTMETRICS_EXPECTED))
def test_matches_py_motmetrics_computed_here(sequence: str) -> None:
    folder = _motmetrics_data() / sequence
    theirs = _motmetrics_summary(folder)
    ours = evaluate_camera(read_mot(folder / "gt.txt", gt=True), read_mot(folder / "test.txt"))
    clear, identity = ours.clear, ours.identity
    assert [identity.idf1, identity.idp, identity.idr, clear.mota, 1 - clear.motp] == pytest.approx(
        [theirs[k] for k in ("idf1", "idp", "idr", "mota", "motp")], abs=1e-6)
    assert [clear.false_positives, clear.misses, clear.id_switches, clear.fragmentations, clear.matched] == [
        theirs[k] for k in ("num_false_positives", "num_misses", "num_switches", "num_fragmentations",
                            "num_detections")]


# ------------------------------------------------------------------------------------------ hand-built cases

SLOT = 100.0  # box k sits at x = 100 k: boxes of different slots never overlap


def boxes(rows: list[tuple[int, int, float]]) -> MotTracks:
    """(frame, id, slot) rows; a fractional slot shifts the box (slot 0.1 overlaps slot 0 with IoU 0.6)."""
    if not rows:
        return MotTracks.empty()
    array = np.asarray(rows, dtype=np.float64)
    xywh = np.stack([array[:, 2] * SLOT, np.zeros(len(array)), np.full(len(array), 40.0),
                     np.full(len(array), 80.0)], axis=1)
    return MotTracks(array[:, 0], array[:, 1], xywh, np.ones(len(array)))


def person(ident: int, frames: range, slot: float = 0.0) -> list[tuple[int, int, float]]:
    return [(frame, ident, slot) for frame in frames]


TEN = range(1, 11)
NAN = math.nan
# name: (gt rows, predicted rows, expected fields). Worked answers:
# * perfect: everything matched.
# * missed box: 2 people x 10 frames, one box missing -> FN 1, MOTA 1 - 1/20, IDTP 19 -> IDF1 38/39.
# * false positive: an extra box far away -> FP 1, MOTA 0.9; IDTP 10, IDFP 1 -> IDF1 20/21, IDP 10/11.
# * id switch: id 7 for frames 1-4, then 8 -> IDSW 1, MOTA 0.9; best id 8 covers 6 -> IDF1 12/20.
# * continuity: in frame 2 a better box appears but the last match (IoU 0.6) is kept: FP 1, no switch.
# * fragmentation: tracked, missed, tracked -> 1 fragmentation; the miss after the last hit is none.
# * empty prediction: all misses, MOTA 0, IDF1 0, IDP undefined. Empty GT: all FP, MOTA undefined, IDF1 0.
CASES = {
    "perfect": (person(1, TEN) + person(2, TEN, 1), person(5, TEN) + person(6, TEN, 1),
                dict(mota=1.0, motp=1.0, idf1=1.0, idp=1.0, idr=1.0, false_positives=0, misses=0, id_switches=0,
                     matched=20, mostly_tracked=2)),
    "missed box": (person(1, TEN) + person(2, TEN, 1), person(5, TEN) + person(6, range(1, 10), 1),
                   dict(mota=0.95, misses=1, false_positives=0, idf1=38 / 39, idp=1.0, idr=19 / 20, recall=0.95)),
    "false positive": (person(1, TEN), person(5, TEN) + [(3, 9, 4)],
                       dict(mota=0.9, false_positives=1, misses=0, idf1=20 / 21, idp=10 / 11, idr=1.0,
                            precision=10 / 11)),
    "id switch": (person(1, TEN), person(7, range(1, 5)) + person(8, range(5, 11)),
                  dict(mota=0.9, id_switches=1, idf1=0.6, idp=0.6, idr=0.6, idtp=6, fragmentations=0)),
    "continuity": (person(1, range(1, 3)), [(1, 7, 0), (2, 7, 0.1), (2, 8, 0)],
                   dict(id_switches=0, false_positives=1, matched=2, motp=(1 + 0.6) / 2)),
    "fragmentation": (person(1, range(1, 7)), person(7, [1, 2, 4, 5]),
                      dict(fragmentations=1, misses=2, mota=4 / 6, mostly_tracked=0, partially_tracked=1)),
    "empty prediction": (person(1, TEN), [],
                         dict(mota=0.0, motp=NAN, misses=10, idf1=0.0, idp=NAN, idr=0.0, precision=NAN,
                              mostly_lost=1)),
    "empty ground truth": ([], person(5, range(1, 4)),
                           dict(mota=NAN, false_positives=3, idf1=0.0, idp=0.0, idr=NAN, recall=NAN, gt_tracks=0)),
    "both empty": ([], [], dict(mota=NAN, idf1=NAN, false_positives=0, misses=0)),
}


def _field(scores: object, name: str) -> float:
    clear, identity = scores.clear, scores.identity  # type: ignore[attr-defined]
    return getattr(clear, name) if hasattr(clear, name) else getattr(identity, name)


@pytest.mark.parametrize("name", list(CASES))
def test_single_camera_cases(name: str) -> None:
    gt, pred, expected = CASES[name]
    scores = evaluate_camera(boxes(gt), boxes(pred))
    for key, value in expected.items():
        got = _field(scores, key)
        assert (math.isnan(got) if math.isnan(value) else got == pytest.approx(value)), (key, got, value)


def test_iou_threshold_decides_a_match() -> None:
    gt, pred = boxes(person(1, TEN)), boxes(person(5, TEN, 0.1))  # IoU 0.6 every frame
    assert evaluate_camera(gt, pred, iou_threshold=0.6).clear.matched == 10
    assert evaluate_camera(gt, pred, iou_threshold=0.61).clear.matched == 0
    with pytest.raises(ValueError, match="iou_threshold"):
        evaluate_camera(gt, pred, iou_threshold=0.0)


def test_box_iou() -> None:
    iou = box_iou_xywh(np.array([[0, 0, 10, 10], [0, 0, 0, 0]]), np.array([[5, 0, 10, 10], [20, 20, 5, 5],
                                                                           [0, 0, 0, 0]]))
    np.testing.assert_allclose(iou, [[50 / 150, 0, 0], [0, 0, 0]])
    assert box_iou_xywh(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)


def test_identity_matching_is_global_not_greedy() -> None:
    # GT a overlaps x 5 times and y 4 times; GT b overlaps x 4 times only. Greedy (a-x) gives 5; the optimum
    # (a-y, b-x) gives 8.
    pairs_gt = np.array([1] * 5 + [1] * 4 + [2] * 4)
    pairs_pred = np.array([10] * 5 + [20] * 4 + [10] * 4)
    scores = identity_scores(np.array([1] * 9 + [2] * 4), np.array([10] * 9 + [20] * 4), pairs_gt, pairs_pred)
    assert (scores.idtp, scores.idfn, scores.idfp) == (8, 5, 5)


# ------------------------------------------------------------------------------------------ across cameras


def test_one_person_with_two_global_ids() -> None:
    # Person 1: 6 frames on cam-a (predicted id 5), 4 on cam-b (id 6). Per camera IDF1 is 1; across cameras
    # id 5 is the best match (6 of 10): IDTP 6, IDFN 4, IDFP 4 -> IDF1 = IDP = IDR = 0.6.
    gt = {"cam-a": boxes(person(1, range(1, 7))), "cam-b": boxes(person(1, range(1, 5)))}
    pred = {"cam-a": boxes(person(5, range(1, 7))), "cam-b": boxes(person(6, range(1, 5)))}
    scores = evaluate_mtmc(gt, pred)
    assert [c.identity.idf1 for c in scores.cameras] == [1.0, 1.0]
    assert [c.clear.mota for c in scores.cameras] == [1.0, 1.0]
    joint = scores.mtmc
    assert (joint.idtp, joint.idfp, joint.idfn) == (6, 4, 4)
    assert (joint.idf1, joint.idp, joint.idr) == pytest.approx((0.6, 0.6, 0.6))


def test_two_people_swapped_across_cameras() -> None:
    # cam-a: person 1 -> id 10, person 2 -> id 20 (6 frames each); cam-b: person 1 -> 20, person 2 -> 10 (4 each).
    # Overlaps: (1,10) 6, (1,20) 4, (2,20) 6, (2,10) 4 -> best 1-10, 2-20: IDTP 12 of 20 -> IDF1 0.6.
    a, b = range(1, 7), range(1, 5)
    gt = {"cam-a": boxes(person(1, a) + person(2, a, 1)), "cam-b": boxes(person(1, b) + person(2, b, 1))}
    pred = {"cam-a": boxes(person(10, a) + person(20, a, 1)), "cam-b": boxes(person(20, b) + person(10, b, 1))}
    scores = evaluate_mtmc(gt, pred)
    assert all(c.identity.idf1 == 1.0 and c.clear.id_switches == 0 for c in scores.cameras)
    assert (scores.mtmc.idtp, scores.mtmc.idf1) == (12, pytest.approx(0.6))


def test_consistent_ids_across_cameras_score_one() -> None:
    gt = {"a": boxes(person(1, TEN)), "b": boxes(person(1, TEN, 2))}
    pred = {"a": boxes(person(3, TEN)), "b": boxes(person(3, TEN, 2))}
    assert evaluate_mtmc(gt, pred).mtmc.idf1 == 1.0


def test_camera_without_predictions_counts_misses(caplog: pytest.LogCaptureFixture) -> None:
    gt = {"a": boxes(person(1, TEN)), "b": boxes(person(2, TEN))}
    scores = evaluate_mtmc(gt, {"a": boxes(person(1, TEN))})
    assert [c.clear.misses for c in scores.cameras] == [0, 10]
    assert scores.overall.mota == pytest.approx(0.5) and scores.overall.gt == 20
    assert scores.mtmc.idr == pytest.approx(0.5) and scores.mtmc.idp == 1.0
    assert "camera b has no predictions" in caplog.text


def test_camera_not_in_ground_truth_is_an_error() -> None:
    with pytest.raises(MotDataError, match="camera.s. c of the predictions are not in the ground truth"):
        evaluate_mtmc({"a": boxes(person(1, TEN))}, {"a": boxes([]), "c": boxes([])})


def test_table_and_dict() -> None:
    gt = {"entrance": boxes(person(1, TEN)), "hall": boxes(person(1, TEN))}
    pred = {"entrance": boxes(person(5, TEN)), "hall": boxes([])}
    scores = evaluate_mtmc(gt, pred)
    table = format_mtmc_table(scores).splitlines()
    assert table[0].split()[:5] == ["camera", "IDF1", "IDP", "IDR", "MOTA"]
    assert table[1].split()[:5] == ["entrance", "100.0", "100.0", "100.0", "100.0"]
    assert table[2].split()[:5] == ["hall", "0.0", "-", "0.0", "0.0"]  # IDP undefined without predictions
    assert table[3].startswith("all cameras") and table[4].startswith("MTMC")
    assert "IDF1 66.7" in table[4]  # IDTP 10, IDFN 10, IDFP 0
    data = scores.as_dict()
    assert data["cameras"][1]["identity"]["idp"] is None and data["mtmc"]["idtp"] == 10
    assert data["overall"]["misses"] == 10 and data["iou_threshold"] == 0.5
