"""Per-camera tracking on a synthetic scene: ultralytics' ByteTrack and BoT-SORT behind ``CameraTracker``.

Three people walk in straight lines: A to the right, B to the left (crossing A around frame 20), C to the
right until frame 14, then gone. B is detected with a low score for a few frames after the crossing (matched
in ByteTrack's second stage). Detections come in a shuffled order each frame, and every person's keypoints
carry a distinctive confidence, so the tests see whether keypoints follow their person through the tracker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from keyreid_stream.contracts import NUM_KEYPOINTS, Detections, Frame
from keyreid_stream.workers.hog import box_iou
from keyreid_stream.workers.tracking import CameraTracker, _source_rows, tracker_defaults

CAMERA = "cam-1"
HEIGHT, WIDTH = 480, 640
NUM_FRAMES = 40
FPS = 30.0
TRACK_BUFFER = 5  # at 30 fps: lost tracks are kept 5 updates
BOX_SIZE = (60.0, 160.0)
WEAK_SCORE = 0.2  # between ultralytics' track_low_thresh (0.1) and track_high_thresh (0.25)
KINDS = [
    pytest.param("bytetrack", {}, id="bytetrack"),
    pytest.param("botsort", {"gmc_method": "none"}, id="botsort"),
]


@dataclass(frozen=True)
class Person:
    code: float  # keypoint confidence and score: tells the people apart in the output
    start: tuple[float, float]  # top-left corner in frame 0
    velocity: tuple[float, float]  # pixels per frame
    last_frame: int
    weak_frames: range = range(0)  # frames detected with a low score (ByteTrack's second association)

    def score(self, frame: int) -> float:
        return WEAK_SCORE if frame in self.weak_frames else self.code

    def box(self, frame: int) -> np.ndarray:
        x, y = self.start[0] + self.velocity[0] * frame, self.start[1] + self.velocity[1] * frame
        return np.array([x, y, x + BOX_SIZE[0], y + BOX_SIZE[1]], np.float32)

    def keypoints(self, frame: int) -> np.ndarray:
        x1, y1, x2, y2 = self.box(frame)
        steps = np.linspace(0.0, 1.0, NUM_KEYPOINTS, dtype=np.float32)
        xs, ys = x1 + (x2 - x1) * (0.2 + 0.6 * steps), y1 + (y2 - y1) * steps
        return np.stack([xs, ys, np.full(NUM_KEYPOINTS, self.code, np.float32)], axis=1)


PEOPLE = (
    Person(0.91, (40.0, 100.0), (10.0, 0.0), NUM_FRAMES - 1),   # A
    Person(0.82, (440.0, 130.0), (-10.0, 0.0), NUM_FRAMES - 1, range(24, 30)),  # B: crosses A at frame 20
    Person(0.73, (400.0, 300.0), (8.0, 0.0), 14),                # C: leaves after frame 14
)
LEAVER = 2

IMAGE = np.zeros((HEIGHT, WIDTH, 3), np.uint8)


def _frame(index: int, camera: str = CAMERA, image: np.ndarray = IMAGE) -> Frame:
    return Frame(camera, index, 100.0 + index / FPS, image)


def _detections(frame: Frame, rng: np.random.Generator) -> Detections:
    people = [p for p in PEOPLE if frame.index <= p.last_frame]
    order = rng.permutation(len(people))  # the tracker must not depend on the detection order
    people = [people[i] for i in order]
    return Detections.create(
        frame.camera_id, frame.index, frame.timestamp, [p.box(frame.index) for p in people],
        [p.score(frame.index) for p in people], keypoints=[p.keypoints(frame.index) for p in people],
    )


def _run(tracker: CameraTracker, num_frames: int = NUM_FRAMES) -> tuple[list[Detections], list[list[int]]]:
    """The tracker's output and ``pop_finished()`` after each frame of the scene."""
    rng = np.random.default_rng(0)
    outputs, finished = [], []
    for index in range(num_frames):
        frame = _frame(index)
        outputs.append(tracker.update(frame, _detections(frame, rng)))
        finished.append(tracker.pop_finished())
    return outputs, finished


def _person_of(detections: Detections, row: int) -> int:
    """The person whose true box overlaps the output box ``row`` best (IoU > 0.5)."""
    truth = np.stack([p.box(detections.frame_index) for p in PEOPLE]).astype(np.float64)
    overlap = box_iou(detections.boxes[row].astype(np.float64), truth)
    assert overlap.max() > 0.5, f"frame {detections.frame_index}: box {detections.boxes[row]} matches nobody"
    return int(np.argmax(overlap))


def _tracker(kind: str, params: dict[str, object], id_base: int = 0) -> CameraTracker:
    return CameraTracker(
        kind, frame_rate=FPS, id_base=id_base, track_buffer=TRACK_BUFFER, **params  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_stable_ids_and_keypoints_follow_their_box(kind: str, params: dict[str, object]) -> None:
    outputs, _ = _run(_tracker(kind, params))
    ids: dict[int, set[int]] = {i: set() for i in range(len(PEOPLE))}
    for dets in outputs:
        assert dets.camera_id == CAMERA and dets.timestamp == pytest.approx(100.0 + dets.frame_index / FPS)
        seen = {_person_of(dets, row) for row in range(len(dets))}
        visible = {i for i, p in enumerate(PEOPLE) if dets.frame_index <= p.last_frame}
        assert seen == visible, f"frame {dets.frame_index}"
        for row in range(len(dets)):
            person = PEOPLE[_person_of(dets, row)]
            ids[PEOPLE.index(person)].add(int(dets.track_ids[row]))
            assert dets.scores[row] == pytest.approx(person.score(dets.frame_index))
            np.testing.assert_allclose(dets.keypoints[row], person.keypoints(dets.frame_index), atol=1e-4)
            np.testing.assert_allclose(dets.boxes[row], person.box(dets.frame_index), atol=3.0)
    assert all(len(person_ids) == 1 for person_ids in ids.values()), ids  # no switch, even at the crossing
    assert len(set.union(*ids.values())) == len(PEOPLE)


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_id_base_offsets_every_id(kind: str, params: dict[str, object]) -> None:
    plain, plain_finished = _run(_tracker(kind, params))
    based, based_finished = _run(_tracker(kind, params, id_base=1000))
    for a, b in zip(plain, based):
        np.testing.assert_array_equal(b.track_ids, a.track_ids + 1000)
        np.testing.assert_array_equal(b.boxes, a.boxes)
    assert based_finished == [[track_id + 1000 for track_id in ids] for ids in plain_finished]


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_leaver_finishes_after_the_track_buffer(kind: str, params: dict[str, object]) -> None:
    tracker = _tracker(kind, params)
    assert tracker.max_frames_lost == TRACK_BUFFER
    outputs, finished = _run(tracker)
    leaver_id = next(int(dets.track_ids[row]) for dets in outputs for row in range(len(dets))
                     if _person_of(dets, row) == LEAVER)
    reported_at = [index for index, ids in enumerate(finished) if ids]
    assert [finished[index] for index in reported_at] == [[leaver_id]]  # only the leaver, once
    last_seen = PEOPLE[LEAVER].last_frame
    assert last_seen + TRACK_BUFFER < reported_at[0] <= last_seen + TRACK_BUFFER + 2

    others = set(np.concatenate([dets.track_ids for dets in outputs]).tolist()) - {leaver_id}
    empty_finished: list[int] = []
    for index in range(NUM_FRAMES, NUM_FRAMES + TRACK_BUFFER + 3):  # everybody leaves: empty frames
        frame = _frame(index)
        dets = tracker.update(frame, Detections.empty(CAMERA, index, frame.timestamp))
        assert len(dets) == 0 and dets.frame_index == index
        empty_finished.extend(tracker.pop_finished())
    assert sorted(empty_finished) == sorted(others)
    assert tracker.pop_finished() == []


@pytest.mark.parametrize(("kind", "params"), KINDS)
def test_empty_frames_before_anybody(kind: str, params: dict[str, object]) -> None:
    tracker = _tracker(kind, params)
    for index in range(3):
        frame = _frame(index)
        dets = tracker.update(frame, Detections.empty(CAMERA, index, frame.timestamp))
        assert len(dets) == 0 and dets.boxes.shape == (0, 4) and dets.keypoints.shape == (0, NUM_KEYPOINTS, 3)
        assert tracker.pop_finished() == []
    rng = np.random.default_rng(1)
    confirmed = [len(tracker.update(_frame(i), _detections(_frame(i), rng))) for i in range(3, 6)]
    assert confirmed[-1] == len(PEOPLE)  # new tracks are confirmed on their second frame


def test_botsort_with_default_motion_compensation() -> None:
    rng = np.random.default_rng(2)
    texture = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)  # a static textured scene
    tracker = CameraTracker("botsort", frame_rate=FPS)
    assert tracker.params["gmc_method"] == tracker_defaults("botsort")["gmc_method"]
    ids: set[tuple[int, int]] = set()
    for index in range(12):
        frame = _frame(index, image=texture)
        dets = tracker.update(frame, _detections(frame, rng))
        ids.update((_person_of(dets, row), int(dets.track_ids[row])) for row in range(len(dets)))
    assert len(ids) == len(PEOPLE)  # one id per person


def test_defaults_come_from_ultralytics() -> None:
    from ultralytics.utils import ROOT, YAML

    for kind in ("bytetrack", "botsort"):
        expected = YAML.load(ROOT / "cfg" / "trackers" / f"{kind}.yaml")
        defaults = tracker_defaults(kind)
        assert {key: expected[key] for key in defaults} == defaults
        assert {"tracker_type", "with_reid", "model"}.isdisjoint(defaults)
    tracker = CameraTracker(frame_rate=25.0)
    assert tracker.params["track_buffer"] == 30 and tracker.max_frames_lost == 25  # 30 frames at 30 fps = 1 s
    assert CameraTracker("botsort", gmc_method=None).params["gmc_method"] is None


@pytest.mark.parametrize(
    ("kind", "params", "error", "message"),
    [
        ("bytetrack", {"track_bufer": 3}, TypeError,
         r"'track_bufer' \(did you mean 'track_buffer'\?\).*valid:"),
        ("bytetrack", {"gmc_method": "none"}, TypeError, "valid: fuse_score, match_thresh"),
        ("botsort", {"with_reid": True}, ValueError, "with_reid is always off"),
        ("botsort", {"gmc_method": "optflow"}, ValueError, "gmc_method must be one of"),
        ("bytetrack", {"track_buffer": 0}, ValueError, "track_buffer must be an int >= 1"),
        ("bytetrack", {"match_thresh": 1.5}, ValueError, r"match_thresh must be a number in \[0, 1\]"),
        ("bytetrak", {}, ValueError, "did you mean 'bytetrack'"),
        ("bytetrack", {"frame_rate": 0}, ValueError, "frame_rate must be > 0"),
        ("bytetrack", {"id_base": -1}, ValueError, "id_base must be an int >= 0"),
    ],
)
def test_bad_parameters(kind: str, params: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CameraTracker(kind, **params)  # type: ignore[arg-type]


def test_one_tracker_per_camera() -> None:
    tracker = CameraTracker()
    tracker.update(_frame(0), Detections.empty(CAMERA, 0, 100.0))
    other = _frame(1, camera="cam-2")
    with pytest.raises(ValueError, match="one CameraTracker per camera"):
        tracker.update(other, Detections.empty("cam-2", 1, other.timestamp))
    with pytest.raises(ValueError, match="given with frame"):
        tracker.update(_frame(2), Detections.empty(CAMERA, 3, 100.0))


def test_source_rows_repairs_an_index_that_does_not_carry_its_score() -> None:
    """ultralytics < 8.4 numbered low-score detections within their subset: the score betrays it."""
    people = [PEOPLE[0], PEOPLE[1]]
    dets = Detections.create(CAMERA, 0, 0.0, [p.box(0) for p in people], [0.9, WEAK_SCORE])
    output = np.array([
        [*people[0].box(0), 1, 0.9, 0, 0],         # right index
        [*people[1].box(0), 2, WEAK_SCORE, 0, 0],  # index 0 of the low-score subset: really detection 1
    ], dtype=np.float64)
    np.testing.assert_array_equal(_source_rows(output, dets), [0, 1])
