"""HOTA: hand-computed cases (answers worked out in the comments), TrackEval's numbers on the TUD files that
py-motmetrics ships, and HOTA across cameras with global ids."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from keyreid_stream.eval.hota import ALPHAS, HotaFrame, combine_hota, hota_scores
from keyreid_stream.eval.mtmc import evaluate_camera, evaluate_mtmc, format_mtmc_table
from keyreid_stream.mot import MotTracks, read_mot


def frames(gt: dict[int, list[int]], pred: dict[int, list[int]], iou: float = 1.0,
           same: dict[int, int] | None = None, last: int = 10) -> list[HotaFrame]:
    """Frames 1..last: ``gt[id]`` and ``pred[id]`` list the frames each id is in; a predicted id overlaps the GT
    id ``same[pred id]`` (in every frame both are present) with ``iou``, nothing else overlaps."""
    same = same or {}
    out = []
    for t in range(1, last + 1):
        g = [i for i, ts in gt.items() if t in ts]
        p = [j for j, ts in pred.items() if t in ts]
        sim = np.asarray([[iou if same.get(j) == i else 0.0 for j in p] for i in g], float).reshape(len(g), len(p))
        out.append(HotaFrame(np.asarray(g, np.int64), np.asarray(p, np.int64), sim))
    return out


TEN = list(range(1, 11))
LOW = float(np.count_nonzero(ALPHAS <= 0.7778)) / len(ALPHAS)  # IoU 7/9 passes 15 of the 19 thresholds
# name: (frames, expected). Worked answers (DetA, AssA at every alpha unless said otherwise):
# * perfect: two people tracked exactly -> everything 1.
# * one swap: two people, predicted ids exchange at frame 6. Every box is a TP (DetA 1). Each (GT, predicted) id
#   pair has 5 matches of 10 + 10 detections: A = 5 / (10 + 10 - 5) = 1/3, so AssA 1/3, AssRe = AssPr = 5/10;
#   HOTA sqrt(1/3).
# * fragmentation: GT 1 in frames 1-6, predicted 7 in 1-2, 8 in 4-6 (frame 3 missed). TP 5, FN 1: DetA = DetRe
#   5/6, DetPr 1. A(1,7) = 2 / (6 + 2 - 2) = 1/3 for 2 TPs, A(1,8) = 3 / (6 + 3 - 3) = 1/2 for 3 TPs:
#   AssA = (2/3 + 3/2) / 5 = 13/30, AssRe 13/30, AssPr 1; HOTA sqrt(5/6 * 13/30) = sqrt(13)/6.
# * false track: GT 1 tracked exactly, plus predicted 9 in frames 1-5 on nothing: TP 10, FP 5: DetA = DetPr 2/3,
#   DetRe 1, AssA 1, HOTA sqrt(2/3).
# * loose boxes: IoU 7/9 everywhere: TP only for alpha <= 0.75 (15 of 19): DetA = AssA = HOTA 15/19; LocA 7/9 at
#   those, 1 (no TP) at the others.
# * empty prediction / empty GT / both: DetA, AssA, HOTA 0; LocA 1 (TrackEval's convention).
CASES = {
    "perfect": (frames({1: TEN, 2: TEN}, {5: TEN, 6: TEN}, same={5: 1, 6: 2}),
                dict(hota=1, deta=1, assa=1, detre=1, detpr=1, assre=1, asspr=1, loca=1)),
    "one swap": (frames({1: TEN, 2: TEN}, {5: TEN, 6: TEN}, same={5: 1, 6: 2}, last=5)
                 + frames({1: TEN, 2: TEN}, {5: TEN, 6: TEN}, same={5: 2, 6: 1}, last=5),
                 dict(hota=math.sqrt(1 / 3), deta=1, assa=1 / 3, assre=0.5, asspr=0.5, loca=1)),
    "fragmentation": (frames({1: [1, 2, 3, 4, 5, 6]}, {7: [1, 2], 8: [4, 5, 6]}, same={7: 1, 8: 1}, last=6),
                      dict(hota=math.sqrt(13) / 6, deta=5 / 6, detre=5 / 6, detpr=1, assa=13 / 30, assre=13 / 30,
                           asspr=1, tp=5, fn=1, fp=0)),
    "false track": (frames({1: TEN}, {5: TEN, 9: [1, 2, 3, 4, 5]}, same={5: 1}),
                    dict(hota=math.sqrt(2 / 3), deta=2 / 3, detpr=2 / 3, detre=1, assa=1, tp=10, fp=5, fn=0)),
    "loose boxes": (frames({1: TEN}, {5: TEN}, iou=7 / 9, same={5: 1}),
                    dict(hota=LOW, deta=LOW, assa=LOW, loca=LOW * 7 / 9 + (1 - LOW))),
    "empty prediction": (frames({1: TEN}, {}), dict(hota=0, deta=0, assa=0, loca=1, tp=0, fn=10, fp=0)),
    "empty ground truth": (frames({}, {5: TEN}), dict(hota=0, deta=0, assa=0, loca=1, tp=0, fn=0, fp=10)),
    "both empty": (frames({}, {}), dict(hota=0, deta=0, assa=0, loca=1, tp=0, fn=0, fp=0)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_hand_computed_cases(name: str) -> None:
    case, expected = CASES[name]
    scores = hota_scores(case)
    for key, value in expected.items():
        got = getattr(scores, key)
        got = got[0] if isinstance(got, tuple) else got  # tp/fn/fp: at alpha 0.05
        assert got == pytest.approx(value, abs=1e-12), (key, got, value)


def test_matching_prefers_the_id_pair_that_agrees_over_time() -> None:
    # GT 1 is followed by predicted 5 in frames 1-9. In frame 10 a predicted 6 overlaps GT 1 better (IoU 0.9 against
    # 5's 0.6). TrackEval's score A(g, p) * IoU keeps 5: A(1, 5) ~ 0.96 * 0.6 > A(1, 6) ~ 0.09 * 0.9.
    case = frames({1: TEN}, {5: TEN}, same={5: 1}, last=9)
    case.append(HotaFrame(np.array([1]), np.array([5, 6]), np.array([[0.6, 0.9]])))
    scores = hota_scores(case)
    assert scores.fp[0] == 1 and scores.assa_alpha[0] == pytest.approx(1.0)


def test_combining_sequences_weights_association_by_true_positives() -> None:
    perfect, swap = hota_scores(CASES["perfect"][0]), hota_scores(CASES["one swap"][0])
    both = combine_hota([perfect, swap])  # 20 TPs of AssA 1 and 20 of AssA 1/3
    assert both.assa == pytest.approx(2 / 3) and both.deta == 1 and both.tp[0] == 40


# ------------------------------------------------------------------------------------------ TUD (TrackEval)

# TrackEval's HOTA class itself (TrackEval 1.3.0 from PyPI, trackeval/metrics/hota.py, HOTA().eval_sequence) on
# the same frames (GT rows with consider 0 dropped, IoU of x, y, w, h boxes), run once here: every field.
TRACKEVAL = {
    "TUD-Campus": dict(hota=0.391397, deta=0.418047, assa=0.369121, detre=0.441577, detpr=0.714083,
                       assre=0.383225, asspr=0.754050, loca=0.770052),
    "TUD-Stadtmitte": dict(hota=0.397849, deta=0.392268, assa=0.408841, detre=0.413131, detpr=0.637622,
                           assre=0.449219, asspr=0.631203, loca=0.737521),
}
# The same, as recorded (4 decimals) by the integration tests of EvalDeT (tadejsv/EvalDeT), which compares itself
# with TrackEval: they agree with the above except TUD-Stadtmitte's AssA (0.4085 there).
EVALDET = {
    "TUD-Campus": dict(hota=0.3914, deta=0.4181, assa=0.3691, loca=0.7701),
    "TUD-Stadtmitte": dict(hota=0.3979, deta=0.3923, loca=0.7375),
}


def _tud(sequence: str) -> Path:
    spec = importlib.util.find_spec("motmetrics")
    if spec is None or spec.origin is None:
        pytest.skip("motmetrics is not installed (pip install motmetrics): its MOTChallenge files are the reference")
    return Path(spec.origin).parent / "data" / sequence


@pytest.mark.parametrize("sequence", list(TRACKEVAL))
def test_tud_against_trackeval(sequence: str) -> None:
    folder = _tud(sequence)
    scores = evaluate_camera(read_mot(folder / "gt.txt", gt=True), read_mot(folder / "test.txt")).hota
    for key, value in TRACKEVAL[sequence].items():
        assert getattr(scores, key) == pytest.approx(value, abs=1e-6), key
    for key, value in EVALDET[sequence].items():
        assert getattr(scores, key) == pytest.approx(value, abs=1e-4), key
    assert scores.hota == pytest.approx(float(np.mean(scores.hota_alpha)))


# ------------------------------------------------------------------------------------------ across cameras

def _boxes(ids: list[int], frames_: range, x: float = 0.0) -> MotTracks:
    n = len(frames_) * len(ids)
    rows = [(t, i) for t in frames_ for i in ids]
    xywh = [[x + 100.0 * k, 0.0, 40.0, 80.0] for _ in frames_ for k in range(len(ids))]
    return MotTracks([r[0] for r in rows], [r[1] for r in rows], xywh, np.ones(n))


def test_one_person_with_two_global_ids_across_cameras() -> None:
    # Person 1 on two cameras, 10 frames each, predicted 5 on cam-a and 6 on cam-b. Each camera: HOTA 1. Across
    # cameras GT 1 has 20 detections, each predicted id 10 matches: A = 10 / (20 + 10 - 10) = 1/2 -> AssA 1/2,
    # AssRe 1/2, AssPr 1, HOTA sqrt(1/2).
    gt = {"cam-a": _boxes([1], range(1, 11)), "cam-b": _boxes([1], range(1, 11))}
    pred = {"cam-a": _boxes([5], range(1, 11)), "cam-b": _boxes([6], range(1, 11))}
    scores = evaluate_mtmc(gt, pred)
    assert [c.hota.hota for c in scores.cameras] == [1.0, 1.0] and scores.overall_hota.hota == 1.0
    joint = scores.mtmc_hota
    assert (joint.hota, joint.assa, joint.assre, joint.asspr, joint.deta) == pytest.approx(
        (math.sqrt(0.5), 0.5, 0.5, 1.0, 1.0))
    table = format_mtmc_table(scores)
    assert "MTMC HOTA" in table and "HOTA 70.7" in table
    assert scores.as_dict()["mtmc_hota"]["assa"] == pytest.approx(0.5)


def test_one_global_id_on_two_people_across_cameras() -> None:
    # Two people, each on its own camera, both predicted as id 5: per camera HOTA 1; across cameras predicted 5 has
    # 20 detections, 10 per person: A = 10 / (10 + 20 - 10) = 1/2 -> AssA 1/2, AssPr 1/2, AssRe 1.
    gt = {"cam-a": _boxes([1], range(1, 11)), "cam-b": _boxes([2], range(1, 11))}
    pred = {"cam-a": _boxes([5], range(1, 11)), "cam-b": _boxes([5], range(1, 11))}
    joint = evaluate_mtmc(gt, pred).mtmc_hota
    assert (joint.assa, joint.asspr, joint.assre) == pytest.approx((0.5, 0.5, 1.0))
