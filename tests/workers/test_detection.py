"""Person detectors: MOTChallenge det.txt parsing, YOLO (random weights, built offline), HOG and the factory.

The YOLO models are built from ultralytics' yaml files: random weights give meaningless but valid boxes once
the confidence threshold is 0. Nothing is downloaded: official weight names are tested with the download
function replaced by one that fails at once.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from keyreid_stream.contracts import NUM_KEYPOINTS, Detections, Frame
from keyreid_stream.workers.detection import (
    DetectorError,
    DetectorOptionError,
    HogDetector,
    PublicDetections,
    YoloDetector,
    create_detector,
)

IMAGE_SIZE = 320
MAX_PEOPLE = 5
LOGGER = "keyreid_stream.workers.detection"
GOOD = "1,-1,10,20,30,40,0.9,-1,-1,-1\n1,-1,50,60,10,20,0.5,-1,-1,-1\n2,-1,0,0,5,5,0.7,-1,-1,-1\n"


def _frame(camera: str = "cam-a", index: int = 0, size: tuple[int, int] = (100, 200), seed: int = 0) -> Frame:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return Frame(camera, index, 1000.0 + index, image)


# --------------------------------------------------------------------------- public detections (det.txt)


@pytest.mark.parametrize(
    ("text", "options", "index", "boxes", "scores", "warnings"),
    [
        pytest.param(GOOD, {}, 0, [[10, 20, 40, 60], [50, 60, 60, 80]], [0.9, 0.5], [], id="good-rows"),
        pytest.param(GOOD, {}, 1, [[0, 0, 5, 5]], [0.7], [], id="second-frame"),
        pytest.param(GOOD, {}, 5, [], [], [], id="frame-without-rows"),
        pytest.param("1,3,10,20,30,40,-1,-1,-1,-1\n", {}, 0, [[10, 20, 40, 60]], [1.0], [],
                     id="conf-minus-1"),
        pytest.param("1,-1,10,20,30,40,1.7,-1,-1,-1\n1,-1,0,0,9,9,-0.3,-1,-1,-1\n", {}, 0,
                     [[10, 20, 40, 60], [0, 0, 9, 9]], [1.0, 0.0], ["2 confidence value(s) outside [0, 1]"],
                     id="conf-clipped"),
        pytest.param(
            "1,-1,10,20,30,40,0.9,-1,-1,-1\n"
            "1,-1,10,20,30,40,0.9,-1,-1\n"        # 9 fields
            "\n"                                  # blank: skipped silently
            "1,-1,x,20,30,40,0.9,-1,-1,-1\n"      # not a number
            "1,-1,nan,20,30,40,0.9,-1,-1,-1\n"    # NaN
            "1,-1,10,20,0,40,0.9,-1,-1,-1\n"      # width 0
            "1,-1,10,20,30,-4,0.9,-1,-1,-1\n"     # negative height
            "1.5,-1,10,20,30,40,0.9,-1,-1,-1\n"   # fractional frame
            "0,-1,10,20,30,40,0.9,-1,-1,-1\n"     # frame 0 before the 1-based first frame
            "1,-1,1,2,3,4,0.8,-1,-1,-1\n",
            {}, 0, [[10, 20, 40, 60], [1, 2, 4, 6]], [0.9, 0.8],
            ["7 malformed line(s) skipped, the first is line 2"], id="malformed-lines",
        ),
        pytest.param("0,-1,10,20,30,40,0.9,-1,-1,-1\n1,-1,1,1,2,2,0.4,-1,-1,-1\n", {"frame_offset": 0}, 0,
                     [[10, 20, 40, 60]], [0.9], [], id="frame-offset-0"),
        pytest.param("5,-1,10,20,30,40,0.9,-1,-1,-1\n", {"frame_offset": 5}, 0, [[10, 20, 40, 60]], [0.9], [],
                     id="frame-offset-5"),
        pytest.param(GOOD, {"min_confidence": 0.6}, 0, [[10, 20, 40, 60]], [0.9], [], id="min-confidence"),
        pytest.param(
            "1,-1,-10,-10,30,30,0.9,-1,-1,-1\n"   # top-left corner outside: clipped
            "1,-1,180,90,50,50,0.8,-1,-1,-1\n"    # bottom-right corner outside: clipped
            "1,-1,300,10,20,20,0.7,-1,-1,-1\n"    # entirely right of the frame: dropped
            "1,-1,10,-50,20,50,0.6,-1,-1,-1\n",   # ends on the top edge: no area left, dropped
            {}, 0, [[0, 0, 20, 20], [180, 90, 200, 100]], [0.9, 0.8], [], id="clipping",
        ),
    ],
)
def test_det_txt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str, options: dict[str, float], index: int,
    boxes: list[list[float]], scores: list[float], warnings: list[str],
) -> None:
    path = tmp_path / "det.txt"
    path.write_text(text, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        detector = PublicDetections({"cam-a": path}, **options)  # type: ignore[arg-type]
    logged = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    assert len(logged) == len(warnings)
    for message, expected in zip(logged, warnings):
        assert expected in message and str(path) in message
    frame = _frame(index=index, size=(100, 200))
    (dets,) = detector.detect([frame])
    assert (dets.camera_id, dets.frame_index, dets.timestamp) == ("cam-a", index, frame.timestamp)
    np.testing.assert_allclose(dets.boxes, np.asarray(boxes, np.float32).reshape(-1, 4))
    np.testing.assert_allclose(dets.scores, scores)
    assert (dets.track_ids == -1).all() and (dets.keypoints == 0).all()


def test_public_detections_several_cameras_in_one_call(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text(GOOD, encoding="utf-8")
    (tmp_path / "b.txt").write_text("1,-1,1,1,300,300,0.5,-1,-1,-1\n", encoding="utf-8")
    sources = {"cam-a": tmp_path / "a.txt", "cam-b": str(tmp_path / "b.txt")}
    detector = create_detector("public", sources=sources)
    found = detector.detect([_frame("cam-b", size=(50, 60)), _frame("cam-a", size=(100, 200))])
    assert [d.camera_id for d in found] == ["cam-b", "cam-a"] and [len(d) for d in found] == [1, 2]
    np.testing.assert_allclose(found[0].boxes, [[1, 1, 60, 50]])  # clipped to that camera's frame
    with pytest.raises(DetectorError, match="camera 'cam-c'; known cameras: cam-a, cam-b$"):
        detector.detect([_frame("cam-c")])


def test_public_detections_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="detections file of camera 'cam-a' not found: .*nope.txt"):
        PublicDetections({"cam-a": tmp_path / "nope.txt"})
    with pytest.raises(DetectorError, match="mapping of camera id"):
        PublicDetections({})


# --------------------------------------------------------------------------- YOLO


def _yolo(model: str) -> YoloDetector:
    import torch

    torch.manual_seed(0)
    return YoloDetector(model, device="cpu", confidence=0.0, image_size=IMAGE_SIZE, max_people=MAX_PEOPLE)


@pytest.fixture(scope="module")
def yolo(yolo_settings: None) -> YoloDetector:
    return _yolo("yolo11n.yaml")


@pytest.fixture(scope="module")
def yolo_pose(yolo_settings: None) -> YoloDetector:
    return _yolo("yolo11n-pose.yaml")


FRAMES = [_frame("cam-a", 7, (240, 320), seed=1), _frame("cam-b", 3, (200, 150), seed=2)]


def _assert_inside(dets: Detections, frame: Frame) -> None:
    height, width = frame.image.shape[:2]
    assert (dets.camera_id, dets.frame_index) == (frame.camera_id, frame.index)
    assert dets.timestamp == frame.timestamp
    assert 1 <= len(dets) <= MAX_PEOPLE and (dets.track_ids == -1).all()
    assert (dets.boxes[:, :2] >= 0).all() and (dets.boxes[:, 2] <= width).all()
    assert (dets.boxes[:, 3] <= height).all()
    assert ((dets.scores >= 0) & (dets.scores <= 1)).all()


def test_yolo_batches_frames_of_several_cameras(yolo: YoloDetector, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    predict = yolo.model.predict

    def counting_predict(images: list[np.ndarray], **options: object) -> object:
        calls.append(len(images))
        return predict(images, **options)

    monkeypatch.setattr(yolo.model, "predict", counting_predict)
    found = yolo.detect(FRAMES)
    assert calls == [2]  # one model call for both cameras
    assert yolo.name == "yolo" and not yolo.gives_keypoints
    for dets, frame in zip(found, FRAMES):
        _assert_inside(dets, frame)
        assert dets.keypoints.shape == (len(dets), NUM_KEYPOINTS, 3) and (dets.keypoints == 0).all()
    assert yolo.detect([]) == []


def test_an_onnx_export_detects_like_the_pytorch_model(yolo: YoloDetector, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The user's own export: the same network exported to ONNX here (offline) and loaded from its file."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    monkeypatch.chdir(tmp_path)  # ultralytics writes the export next to the working directory's model name
    exported = Path(yolo.model.export(format="onnx", imgsz=IMAGE_SIZE, simplify=False, dynamic=False))
    onnx = YoloDetector(str(exported), device="cpu", confidence=0.0, image_size=IMAGE_SIZE, max_people=MAX_PEOPLE)
    try:
        expected, found = yolo.detect(FRAMES), onnx.detect(FRAMES)  # a batch-1 export: ultralytics splits
    finally:
        onnx.close()
    for ours, theirs, frame in zip(found, expected, FRAMES):
        _assert_inside(ours, frame)
        best, reference = int(np.argmax(ours.scores)), int(np.argmax(theirs.scores))
        np.testing.assert_allclose(ours.boxes[best], theirs.boxes[reference], atol=1.0)
        assert ours.scores[best] == pytest.approx(theirs.scores[reference], abs=1e-3)


def test_yolo_pose_model_gives_keypoints(yolo_pose: YoloDetector) -> None:
    assert yolo_pose.gives_keypoints and yolo_pose.name == "yolo-pose" and yolo_pose.task == "pose"
    found = yolo_pose.detect(FRAMES)
    for dets, frame in zip(found, FRAMES):
        _assert_inside(dets, frame)
        assert (dets.keypoints[..., 2] > 0).any()


def test_yolo_pose_kind_refuses_a_plain_detector(yolo_settings: None) -> None:
    with pytest.raises(DetectorError, match="'detect' model, not a pose model"):
        create_detector("yolo-pose", model="yolo11n.yaml", device="cpu")


@pytest.mark.parametrize(
    ("name", "allow_pickle", "message"),
    [
        ("weights.pt", False, "pickled PyTorch file: loading it runs code"),
        ("missing.onnx", False, "YOLO model '.*missing.onnx' not found"),
        ("missing.pt", True, "not found"),
        ("sub/yolo11n.pt", True, "not found"),  # with a folder it is a local file, not the asset name
        ("yolo11n-cls.pt", False, "not found"),  # not a detection model name
    ],
)
def test_yolo_model_sources_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, allow_pickle: bool, message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "weights.pt").write_bytes(b"not even a pickle")  # refused before anything reads it
    with pytest.raises(DetectorError, match=message):
        YoloDetector(name, allow_pickle=allow_pickle, device="cpu")


@pytest.mark.parametrize(
    ("name", "packages"),
    [
        ("model.onnx", "onnx, onnxruntime"),
        ("model.engine", "tensorrt"),
        ("yolo11n_openvino_model", "openvino"),
    ],
)
def test_exported_model_without_its_runtime(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, packages: str
) -> None:
    import importlib.util

    path = tmp_path / name
    path.mkdir() if name.endswith("_model") else path.write_bytes(b"")
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *args: None)  # nothing installed
    with pytest.raises(DetectorError, match=f"needs the Python package.s. {packages}, which are not"):
        YoloDetector(str(path), device="cpu")


@pytest.fixture
def no_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """No cached weights anywhere and a download that fails at once; the urls asked for are recorded."""
    from ultralytics import utils
    from ultralytics.utils import downloads

    asked: list[str] = []

    def fail(url: str, *args: object, **kwargs: object) -> None:
        asked.append(url)
        raise ConnectionError("download refused by the test")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(utils, "SETTINGS", {**utils.SETTINGS, "weights_dir": str(tmp_path / "weights")})
    monkeypatch.setattr(downloads, "safe_download", fail)
    return asked


@pytest.mark.parametrize("name", ["yolo11n.pt", "yolov8s.pt", "yolo26n.pt", "yolo11s-pose.pt"])
def test_official_name_offline_is_one_readable_error(
    no_download: list[str], monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    with pytest.raises(DetectorError, match=f"YOLO weights '{name}' are not on this machine") as caught:
        YoloDetector(name, device="cpu")
    assert "pass the local file" in str(caught.value) and no_download == []


def test_official_name_failed_download_is_one_readable_error(
    no_download: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ultralytics import utils

    monkeypatch.setattr(utils, "is_online", lambda: True)  # claims internet; the download still fails
    with pytest.raises(DetectorError, match="could not load YOLO model 'yolo11n.pt': .*pass the local file"):
        YoloDetector("yolo11n.pt", device="cpu")
    assert len(no_download) == 1 and no_download[0].endswith("/yolo11n.pt")


def test_model_without_person_class_is_refused(yolo_settings: None, monkeypatch: pytest.MonkeyPatch) -> None:
    import ultralytics

    real_yolo = ultralytics.YOLO

    def vehicles_model(model: str) -> object:  # as if trained on other classes
        built = real_yolo(model)
        built.model.names = {0: "car", 1: "truck"}  # type: ignore[union-attr]
        return built

    monkeypatch.setattr(ultralytics, "YOLO", vehicles_model)
    with pytest.raises(DetectorError, match="does not detect people: its class 0 is 'car', not 'person'"):
        YoloDetector("yolo11n.yaml", device="cpu")


@pytest.mark.parametrize(
    ("names", "accepted"),
    [
        ({0: "person", 1: "bicycle"}, True),
        ({0: "Person"}, True),
        (["person", "car"], True),
        ({0: "0", 1: "1"}, True),  # an untrained yaml model: placeholder names
        ({0: "class0", 1: "class1"}, True),  # an export without metadata
        ({0: "car", 1: "person"}, False),
        (["car"], False),
    ],
)
def test_person_class_check(names: object, accepted: bool) -> None:
    from keyreid_stream.workers.detection import _check_person_class

    if accepted:
        _check_person_class("model", names)  # type: ignore[arg-type]
    else:
        with pytest.raises(DetectorError, match="not 'person'"):
            _check_person_class("model", names)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- HOG and the factory


def test_hog_detector() -> None:
    detector = create_detector("hog", max_width=160)
    assert isinstance(detector, HogDetector) and detector.name == "hog" and not detector.gives_keypoints
    blank = Frame("cam-a", 4, 5.0, np.zeros((120, 160, 3), np.uint8))
    (dets,) = detector.detect([blank])
    assert len(dets) == 0 and (dets.camera_id, dets.frame_index) == ("cam-a", 4)


@pytest.mark.parametrize(
    ("kind", "options", "error", "message"),
    [
        ("yolov8", {}, DetectorError, r"unknown detector 'yolov8' \(did you mean 'yolo'\?\); known: yolo, "),
        ("hgo", {}, DetectorError, "did you mean 'hog'"),
        ("yolo", {"confidance": 0.5}, DetectorOptionError,
         r"'confidance' \(did you mean 'confidence'\?\); it accepts: model, allow_pickle, device"),
        ("yolo-pose", {"weights": "x"}, DetectorOptionError, "it accepts: model, allow_pickle"),
        ("hog", {"stride": 4}, DetectorOptionError, "it accepts: win_stride, padding, scale"),
        ("public", {}, DetectorOptionError, "needs the option.s.: sources"),
        ("public", {"sources": {}, "offset": 1}, DetectorOptionError, "did you mean 'frame_offset'"),
    ],
)
def test_create_detector_errors(
    kind: str, options: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        create_detector(kind, **options)
    assert issubclass(DetectorOptionError, TypeError)
