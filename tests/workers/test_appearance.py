"""The part-histogram descriptor (``embedding.kind: part-histogram``): its contract, robustness to bad crops and
keypoints, what it tells apart on generated people, and a real worker (HOG detector, prior keypoints) publishing
it over ZeroMQ."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from keyreid_stream.contracts import Tracklet, TrackletMessage
from keyreid_stream.keypoints.pose import PriorPose
from keyreid_stream.workers.appearance import (
    DESCRIPTOR_DIM,
    MODEL_NAME,
    MODEL_VERSION,
    PartHistogramEmbedder,
    describe,
    observation_histograms,
)
from keyreid_stream.workers.config import (
    CameraConfig,
    DetectorConfig,
    EmbeddingConfig,
    MetricsConfig,
    PoseConfig,
    PublishConfig,
    TrackletConfig,
    WorkerConfig,
)
from keyreid_stream.workers.service import run_worker

from worker_harness import Matcher

PRIOR = PriorPose()


def _tracklet(crops: list[np.ndarray], keypoints: np.ndarray | None = None, *, track_id: int = 1,
              origin: tuple[int, int] = (10, 20)) -> Tracklet:
    """A tracklet whose boxes are the crops placed at ``origin``; keypoints (frame pixels) default to the prior."""
    boxes = np.array([[origin[0], origin[1], origin[0] + c.shape[1], origin[1] + c.shape[0]] for c in crops],
                     np.float32)
    points = PRIOR.layout(boxes) if keypoints is None else keypoints
    count = len(crops)
    return Tracklet.create("cam1", track_id, np.arange(count), np.arange(count) / 10.0, boxes, points, crops=crops)


def _similarity(a: Tracklet, b: Tracklet) -> float:
    first, second = PartHistogramEmbedder().embed([a, b])
    return float(first @ second)


# -- generated people ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    """A drawn pedestrian: shirt and trousers colours (BGR), optionally a striped shirt."""

    shirt: tuple[int, int, int]
    trousers: tuple[int, int, int]
    stripes: int = 0  # stripe period in pixels of a 128 px tall person (0: plain)

    def swapped(self) -> Person:
        return replace(self, shirt=self.trousers, trousers=self.shirt)


def _figure(person: Person, height: int, width: int, top: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The person drawn on black in a ``height x width`` canvas, its body starting at ``top`` (fraction of the
    height), and the mask of the figure. Proportions follow the prior pose layout."""
    canvas, mask = np.zeros((height, width, 3), np.uint8), np.zeros((height, width), np.uint8)
    body = height * (1.0 - top)

    def y(fraction: float) -> int:
        return round(height * top + fraction * body)

    def x(fraction: float) -> int:
        return round(fraction * width)

    parts = [((x(0.5), y(0.09)), None, (150, 180, 220)), ((x(0.28), y(0.17)), (x(0.72), y(0.52)), person.shirt),
             ((x(0.35), y(0.50)), (x(0.49), y(0.93)), person.trousers),
             ((x(0.51), y(0.50)), (x(0.65), y(0.93)), person.trousers),
             ((x(0.33), y(0.93)), (x(0.67), y(0.97)), (30, 30, 30))]
    for start, end, colour in parts:
        for target, value in ((canvas, colour), (mask, 255)):
            if end is None:
                cv2.circle(target, start, max(2, int(0.075 * body)), value, -1)
            else:
                cv2.rectangle(target, start, end, value, -1)
    if person.stripes:
        period = max(2, round(person.stripes * body / 128))
        rows = np.arange(height)[:, None]
        band = (rows // (period // 2 or 1)) % 2 == 1
        shirt = np.all(canvas == person.shirt, axis=2) & band
        canvas[shirt] = (np.array(person.shirt) * 0.45).astype(np.uint8)
    return canvas, mask


def render(person: Person, *, height: int = 128, width: int = 64, brightness: float = 1.0,
           shift: tuple[int, int] = (0, 0), top: float = 0.0, seed: int = 0) -> np.ndarray:
    """A crop of ``person`` on a noisy background (``seed``), lit by ``brightness``, moved by ``shift`` pixels."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(70, 140, (height, width, 3)).astype(np.uint8), (0, 0), 2)
    figure, mask = _figure(person, height, width, top)
    move = np.float32([[1, 0, shift[0]], [0, 1, shift[1]]])
    figure = cv2.warpAffine(figure, move, (width, height))
    mask = cv2.warpAffine(mask, move, (width, height))
    image = np.where(mask[..., None] > 0, figure, background).astype(np.float32)
    noise = rng.normal(0.0, 3.0, image.shape)
    return np.clip(image * brightness + noise, 0, 255).astype(np.uint8)


def _views(person: Person, *, seed: int, brightness: float = 1.0, count: int = 4, **options: object) -> Tracklet:
    """A tracklet of ``count`` renderings of ``person`` with small shifts, like one walk past a camera."""
    shifts = np.random.default_rng(seed).integers(-3, 4, (count, 2))
    crops = [render(person, brightness=brightness, shift=(int(dx), int(dy)), seed=seed * 100 + i, **options)
             for i, (dx, dy) in enumerate(shifts)]
    return _tracklet(crops)


PEOPLE = {
    "red shirt, blue trousers": Person((40, 40, 200), (150, 70, 30)),
    "green shirt, grey trousers": Person((50, 160, 50), (110, 110, 110)),
    "white shirt, black trousers": Person((225, 225, 225), (25, 25, 25)),
    "yellow shirt, brown trousers": Person((40, 200, 220), (40, 70, 110)),
    "striped red shirt, blue trousers": Person((40, 40, 200), (150, 70, 30), stripes=8),
    "blue shirt, red trousers": Person((150, 70, 30), (40, 40, 200)),
}


# -- contract -----------------------------------------------------------------------------------------------------


def _mixed_tracklets() -> list[Tracklet]:
    rng = np.random.default_rng(0)
    sizes = [(128, 64), (256, 128), (90, 40), (48, 20)]
    tracklets = []
    for index, (count, (height, width)) in enumerate(zip((1, 5, 16, 40), sizes)):
        crops = [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]
        tracklets.append(_tracklet(crops, track_id=index + 1))
    return tracklets


def test_descriptors_are_unit_float32_rows_one_per_tracklet() -> None:
    embedder = PartHistogramEmbedder()
    descriptors = embedder.embed(_mixed_tracklets())
    assert descriptors.shape == (4, DESCRIPTOR_DIM) and descriptors.dtype == np.float32
    assert np.isfinite(descriptors).all() and (descriptors >= 0).all()
    np.testing.assert_allclose(np.linalg.norm(descriptors, axis=1), 1.0, atol=1e-5)
    assert (embedder.model_name, embedder.model_version, embedder.descriptor_dim) == (MODEL_NAME, MODEL_VERSION,
                                                                                      DESCRIPTOR_DIM)
    assert embedder.embed([]).shape == (0, DESCRIPTOR_DIM)


def test_descriptors_are_deterministic_and_independent_of_the_batch() -> None:
    tracklets = _mixed_tracklets()
    batch = PartHistogramEmbedder().embed(tracklets)
    np.testing.assert_array_equal(batch, PartHistogramEmbedder().embed(tracklets))
    alone = np.concatenate([PartHistogramEmbedder().embed([tracklet]) for tracklet in tracklets])
    np.testing.assert_allclose(batch, alone, atol=1e-6)
    reordered = PartHistogramEmbedder().embed(tracklets[::-1])[::-1]
    np.testing.assert_allclose(batch, reordered, atol=1e-6)


def test_at_most_clip_length_times_max_clips_observations_evenly_spread() -> None:
    long = _mixed_tracklets()[3]  # 40 observations
    embedder = PartHistogramEmbedder(max_clips=2, clip_length=4)
    used = np.round(np.linspace(0, 39, 8)).astype(int)
    subset = _tracklet([long.crops[i] for i in used])
    np.testing.assert_allclose(embedder.embed([long]), embedder.embed([subset]), atol=1e-6)
    assert embedder.max_observations == 8 and (embedder.clip_length, embedder.max_clips) == (4, 2)


@pytest.mark.parametrize("options", [{"max_clips": 0}, {"clip_length": 0}])
def test_bad_settings_and_tracklets_without_crops_are_refused(options: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="must be >= 1"):
        PartHistogramEmbedder(**options)
    tracklet = _mixed_tracklets()[0]
    bare = Tracklet.create("cam1", 1, tracklet.frame_indices, tracklet.timestamps, tracklet.boxes,
                           tracklet.keypoints)
    with pytest.raises(ValueError, match="no crops"):
        PartHistogramEmbedder().embed([bare])


def test_keypoints_are_read_in_the_pixels_of_downscaled_crops() -> None:
    """The worker downscales tall crops (max_crop_height) but keeps frame boxes and keypoints."""
    person = PEOPLE["red shirt, blue trousers"]
    big = render(person, height=256, width=128, seed=3)
    small = cv2.resize(big, (64, 128), interpolation=cv2.INTER_AREA)
    boxes = np.array([[100, 50, 228, 306]], np.float32)
    keypoints = PRIOR.layout(boxes)
    keypoints[0, 11:13, 1] -= 40  # hips 40 frame pixels higher: the torso part must shrink in both crops
    one = Tracklet.create("c", 1, [0], [0.0], boxes, keypoints, crops=[big])
    other = Tracklet.create("c", 1, [0], [0.0], boxes, keypoints, crops=[small])
    assert _similarity(one, other) > 0.995


# -- robustness ---------------------------------------------------------------------------------------------------


def _crops(height: int, width: int, count: int = 3, fill: int | None = None) -> list[np.ndarray]:
    if fill is not None:
        return [np.full((height, width, 3), fill, np.uint8) for _ in range(count)]
    return [render(PEOPLE["green shirt, grey trousers"], height=height, width=width, seed=i) if height >= 8 else
            np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8) for i in range(count)]


def _zero_confidence(tracklet: Tracklet) -> np.ndarray:
    return np.zeros_like(tracklet.keypoints)


def _far_outside(tracklet: Tracklet) -> np.ndarray:
    points = tracklet.keypoints.copy()
    points[..., 0], points[..., 1], points[..., 2] = -5000.0, 1e6, 1.0
    return points


def _absurd(tracklet: Tracklet) -> np.ndarray:
    points = tracklet.keypoints.copy()
    points[..., 0], points[..., 1] = 3e38, -3e38  # finite float32, overflows when scaled
    return points


def _upside_down(tracklet: Tracklet) -> np.ndarray:
    points = tracklet.keypoints.copy()
    points[:, 15:17, 1], points[:, 5:7, 1] = points[:, 5:7, 1].copy(), points[:, 15:17, 1].copy()
    return points


ROBUSTNESS: dict[str, tuple[list[np.ndarray], Callable[[Tracklet], np.ndarray] | None]] = {
    "tiny crops": (_crops(3, 2) + _crops(1, 1, 1), None),
    "one observation": (_crops(128, 64, 1), None),
    "keypoints all zero-confidence": (_crops(128, 64), _zero_confidence),
    "keypoints far outside the crop": (_crops(128, 64), _far_outside),
    "keypoints upside down": (_crops(128, 64), _upside_down),
    "keypoints at +-3e38": (_crops(128, 64), _absurd),
    "black image": (_crops(100, 40, fill=0), None),
    "grey image": (_crops(100, 40, fill=128), None),
    "white image": (_crops(100, 40, fill=255), None),
    "very wide crop": (_crops(20, 400), None),
    "very tall crop": (_crops(600, 12), None),
}


@pytest.mark.filterwarnings("error")  # no overflow or invalid-value warnings either
@pytest.mark.parametrize("case", list(ROBUSTNESS))
def test_odd_crops_and_keypoints_give_finite_unit_descriptors(case: str) -> None:
    crops, keypoints = ROBUSTNESS[case]
    tracklet = _tracklet(crops)
    if keypoints is not None:
        tracklet = _tracklet(crops, keypoints(tracklet))
    descriptor = PartHistogramEmbedder().embed([tracklet])[0]
    assert np.isfinite(descriptor).all() and abs(float(np.linalg.norm(descriptor)) - 1.0) < 1e-5


@pytest.mark.parametrize("bad", ["nan", "inf", "zero confidence", "upside down", "prior layout"])
def test_unusable_keypoints_fall_back_to_the_prior_layout(bad: str) -> None:
    """NaN or infinite joints (the contract forbids them, the descriptor still copes), unknown joints and an
    implausible pose all give the descriptor of the prior pose layout; so does the prior layout itself."""
    crops = _crops(128, 64)
    boxes = np.array([[0, 0, 64, 128]] * len(crops), np.float32)
    prior = PRIOR.layout(boxes)  # box = crop: frame pixels are crop pixels
    points = {"nan": np.full_like(prior, np.nan), "inf": np.where(prior > 0, np.inf, prior),
              "zero confidence": np.zeros_like(prior), "prior layout": prior.copy(),
              "upside down": _upside_down(_tracklet(crops, prior, origin=(0, 0)))}[bad]
    expected = describe(observation_histograms(crops, np.zeros_like(prior)).mean(axis=0))
    got = describe(observation_histograms(crops, points).mean(axis=0))
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=1e-5)


# -- what it tells apart ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("brightness", [0.6, 0.8, 1.25, 1.5])
@pytest.mark.parametrize("name", [n for n in PEOPLE if not PEOPLE[n].stripes])
def test_the_same_person_in_other_light_and_position_beats_every_other_person(name: str, brightness: float) -> None:
    """Camera 2 sees everybody at another exposure, shifted a few pixels, on another background."""
    names = [n for n in PEOPLE if not PEOPLE[n].stripes]
    first = PartHistogramEmbedder().embed([_views(PEOPLE[name], seed=1)])[0]
    second = PartHistogramEmbedder().embed([_views(PEOPLE[n], seed=2, brightness=brightness) for n in names])
    scores = dict(zip(names, second @ first))
    best_other = max(score for other, score in scores.items() if other != name)
    assert scores[name] > best_other + 0.03, scores


@pytest.mark.parametrize("name", ["red shirt, blue trousers", "green shirt, grey trousers",
                                  "white shirt, black trousers", "yellow shirt, brown trousers"])
def test_swapping_shirt_and_trousers_colours_makes_another_person(name: str) -> None:
    """The same colours in other places are another person: the part structure matters (a histogram of the
    whole crop could not tell these apart)."""
    person = PEOPLE[name]
    same = _similarity(_views(person, seed=1), _views(person, seed=2))
    swapped = _similarity(_views(person, seed=1), _views(person.swapped(), seed=2))
    assert swapped < same - 0.1, (same, swapped)


def test_texture_tells_a_striped_shirt_from_a_plain_one_of_the_same_colour() -> None:
    striped, plain = PEOPLE["striped red shirt, blue trousers"], PEOPLE["red shirt, blue trousers"]
    same = _similarity(_views(striped, seed=1), _views(striped, seed=2))
    other = _similarity(_views(striped, seed=1), _views(plain, seed=2))
    assert same > other, (same, other)


def test_keypoints_place_the_parts_in_a_loose_box() -> None:
    """A box with room above the head (a loose detection): with the person's keypoints the parts fit the body
    and the descriptor stays close to that of a tight box; fixed stripes mix head, shirt and trousers."""
    person = PEOPLE["red shirt, blue trousers"]
    tight = _views(person, seed=1)
    top = 0.3
    crops = [render(person, top=top, seed=200 + i) for i in range(4)]
    boxes = np.array([[0, 0, 64, 128]] * len(crops), np.float32)
    body = np.array([[0, 128 * top, 64, 128]] * len(crops), np.float32)
    guided = _similarity(tight, _tracklet(crops, PRIOR.layout(body), origin=(0, 0)))
    fixed = _similarity(tight, _tracklet(crops, PRIOR.layout(boxes), origin=(0, 0)))
    assert guided > fixed + 0.05, (guided, fixed)


# -- the worker -----------------------------------------------------------------------------------------------------

BUS_WIDTH, VIEW_WIDTH, FPS, FRAMES = 360, 320, 10.0, 40


@pytest.fixture(scope="module")
def bus_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A camera panning slowly over ultralytics' bus.jpg (real people, which OpenCV's HOG detector finds)."""
    ultralytics = pytest.importorskip("ultralytics")
    photo = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    if not photo.is_file():
        pytest.skip(f"this ultralytics wheel ships no {photo.name}")
    image = cv2.imread(str(photo))
    image = cv2.resize(image, (BUS_WIDTH, round(image.shape[0] * BUS_WIDTH / image.shape[1])),
                       interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("bus") / "pan.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (VIEW_WIDTH, image.shape[0]))
    assert writer.isOpened()
    try:
        for index in range(FRAMES):
            writer.write(np.ascontiguousarray(image[:, index:index + VIEW_WIDTH]))
    finally:
        writer.release()
    return path


@pytest.mark.video
def test_a_hog_worker_publishes_part_histograms(bus_video: Path, matcher: Matcher, zmq_context: zmq.Context,
                                               caplog: pytest.LogCaptureFixture) -> None:
    """Two cameras showing the same video, HOG people, prior keypoints, part histograms: what the worker of a
    machine without weights runs. Both cameras must publish the same tracklets with the same descriptors."""
    config = WorkerConfig(
        cameras=tuple(CameraConfig(id=name, source=str(bus_video)) for name in ("north", "south")),
        detector=DetectorConfig(kind="hog"), pose=PoseConfig(backend="prior"),
        tracklets=TrackletConfig(min_frames=4, lost_after_s=0.5, min_box_height=40),
        embedding=EmbeddingConfig(kind="part-histogram", max_wait_s=0.05),
        publish=PublishConfig(matcher=matcher.endpoint, ack_timeout_s=1.0, heartbeat_s=0.2, flush_timeout_s=10.0),
        metrics=MetricsConfig(log_every_s=0),
    )
    with caplog.at_level(logging.WARNING, logger="keyreid_stream.workers.service"):
        report = run_worker(config, context=zmq_context)
    warnings = [r for r in caplog.records if "re-ID quality is limited" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    messages = list(matcher.messages)
    assert report.publisher.acked == len(messages) and report.publisher.dropped == 0
    assert report.counters.get("embed_errors", 0) == 0 and report.counters.get("embed_nonfinite", 0) == 0
    by_camera: dict[str, list[TrackletMessage]] = {"north": [], "south": []}
    for message in messages:
        assert (message.model_name, message.model_version) == (MODEL_NAME, MODEL_VERSION)
        assert message.descriptor.shape == (DESCRIPTOR_DIM,) and message.descriptor.dtype == np.float32
        assert abs(float(np.linalg.norm(message.descriptor)) - 1.0) < 1e-5
        by_camera[message.camera_id].append(message)
    assert len(by_camera["north"]) >= 1 and len(by_camera["north"]) == len(by_camera["south"])

    def key(message: TrackletMessage) -> tuple[float, int]:
        return round(message.end_time - message.start_time, 1), message.num_frames

    north, south = (sorted(by_camera[name], key=key) for name in ("north", "south"))
    for one, other in zip(north, south):
        assert key(one) == key(other)
        assert float(one.descriptor @ other.descriptor) > 0.999  # the same people seen by both cameras
