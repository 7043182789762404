"""Person detectors of the camera worker: one interface over a YOLO network, public detections and HOG.

The worker hands a batch of frames (from one or several cameras, of any sizes) to ``detect`` and gets one
untracked :class:`Detections` per frame (``track_ids`` -1); the per-camera tracker then assigns ids. Keeping
the detector behind :class:`PersonDetector` lets a deployment pick speed (YOLO on a GPU), reproducibility
(the MOTChallenge ``det.txt`` files every paper uses) or zero downloads (OpenCV's HOG) by configuration.

* :class:`YoloDetector` (``yolo``) -- an ultralytics YOLO model restricted to persons (class 0), all frames
  in one model call. A pose model (``*-pose``) gives the keypoints too, in the same pass.
* :class:`YoloPoseDetector` (``yolo-pose``) -- the same, but refuses a model without keypoints.
* :class:`PublicDetections` (``public``) -- MOTChallenge ``det.txt`` files, one per camera, read at start.
* :class:`HogDetector` (``hog``) -- OpenCV's HOG people detector (see :mod:`.hog`), frame by frame.

:func:`create_detector` builds any of them by kind with keyword options, and names the options it accepts.
"""

from __future__ import annotations

import abc
import difflib
import importlib.util
import inspect
import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from keyreid_stream.contracts import Detections, Frame
from keyreid_stream.inference.device import device_name
from keyreid_stream.inference.model_source import check_model_source
from keyreid_stream.keypoints.yolo_pose import YoloPose
from keyreid_stream.workers.hog import HogPersonDetector

__all__ = [
    "DETECTORS", "DetectorError", "DetectorOptionError", "HogDetector", "PersonDetector", "PublicDetections",
    "YoloDetector", "YoloPoseDetector", "create_detector", "read_det_file",
]

logger = logging.getLogger(__name__)

DETECTORS: tuple[str, ...] = ("yolo", "yolo-pose", "public", "hog")
PERSON_CLASS = 0
# Official ultralytics detection and pose weights: a bare name is downloaded by ultralytics on first use.
OFFICIAL_WEIGHTS = re.compile(
    r"^(yolo(v8|11|26)[nsmlx](-pose)?|yolo12[nsmlx]|yolov9[tsmce]|yolov10[nsmblx])\.pt$"
)
MOT_FIELDS = 10  # frame, id, bb_left, bb_top, bb_width, bb_height, conf, x, y, z

_LOCAL_HINT = (
    "download the weights where there is internet and pass the local file (model=/path/to/yolo11n.pt with "
    "allow_pickle=True), or an exported .onnx / .engine / *_openvino_model folder"
)


class DetectorError(RuntimeError):
    """A detector cannot be built or run (unknown kind, missing model or file, unknown camera)."""


class DetectorOptionError(DetectorError, TypeError):
    """``create_detector`` got an option the detector does not take, or lacks a required one."""


class PersonDetector(abc.ABC):
    """Finds people in camera frames; ``detect`` returns one untracked :class:`Detections` per frame."""

    name: str
    gives_keypoints: bool = False  # True only for pose models; otherwise the keypoints are zeros

    @abc.abstractmethod
    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        """The people in each frame (frames may come from several cameras and differ in size)."""

    def close(self) -> None:  # noqa: B027  (optional: a detector without resources keeps this)
        """Release the model or files; the detector cannot be used afterwards."""

    def __enter__(self) -> PersonDetector:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()


# --------------------------------------------------------------------------- YOLO


def _check_downloadable(name: str) -> None:
    """An official name that is neither here nor in ultralytics' weights folder needs the internet."""
    from ultralytics import utils

    weights_dir = Path(str(utils.SETTINGS.get("weights_dir", ".")))
    if Path(name).exists() or (weights_dir / name).exists():
        return
    if not utils.is_online():
        raise DetectorError(
            f"YOLO weights {name!r} are not on this machine and ultralytics cannot download them (no "
            f"internet connection, or YOLO_OFFLINE is set): {_LOCAL_HINT}"
        )


def _runtime_packages(model: str) -> tuple[str, ...]:
    """Python packages an exported model needs (ultralytics would try to pip-install them while loading)."""
    if model.rstrip("/\\").endswith("_openvino_model"):
        return ("openvino",)
    return {".onnx": ("onnx", "onnxruntime"), ".engine": ("tensorrt",)}.get(Path(model).suffix, ())


def _check_runtime(model: str) -> None:
    missing = [name for name in _runtime_packages(model) if importlib.util.find_spec(name) is None]
    if missing:
        raise DetectorError(
            f"YOLO model {model!r} needs the Python package(s) {', '.join(missing)}, which are not "
            f"installed: pip install {' '.join(missing)}"
        )


def _load_yolo(model: str, allow_pickle: bool) -> Any:
    check_model_source(
        model, allow_pickle, official=OFFICIAL_WEIGHTS, what="YOLO", error=DetectorError,
        examples="an ultralytics *.yaml (random weights) or an official name such as 'yolo11n.pt' "
        "(downloaded by ultralytics)",
    )
    _check_runtime(model)
    official = OFFICIAL_WEIGHTS.match(model) is not None
    if official:
        _check_downloadable(model)
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise DetectorError(
            "the yolo detector needs ultralytics: pip install 'keyreid-stream[stream]'"
        ) from exc
    try:
        return YOLO(model)
    except Exception as exc:  # ultralytics raises many types for a bad, corrupt or unreachable model
        hint = f"; {_LOCAL_HINT}" if official else ""
        raise DetectorError(f"could not load YOLO model {model!r}: {exc}{hint}") from exc


def _check_person_class(model: str, names: Mapping[int, str] | Sequence[str] | None) -> None:
    """Class 0 must be 'person'; placeholder names ('0', 'class0': random weights, no metadata) pass."""
    table = dict(enumerate(names)) if isinstance(names, Sequence) else dict(names or {})
    first = str(table.get(PERSON_CLASS, ""))
    if first.lower() == "person":
        return
    if all(str(value) in (str(key), f"class{key}") for key, value in table.items()):
        logger.info("YOLO model %s has no class names: class %d is taken as 'person'", model, PERSON_CLASS)
        return
    shown = ", ".join(f"{key}: {value!r}" for key, value in list(table.items())[:5])
    raise DetectorError(
        f"YOLO model {model!r} does not detect people: its class {PERSON_CLASS} is {first!r}, not 'person' "
        f"(classes {shown}, ...). Use a COCO model such as yolo11n.pt or one trained with person as class 0"
    )


def _check_keypoint_shape(model: str, yolo: Any) -> None:
    kpt_shape = (getattr(getattr(yolo, "model", None), "yaml", None) or {}).get("kpt_shape")
    if kpt_shape is not None and list(kpt_shape) not in ([17, 3], [17, 2]):
        raise DetectorError(
            f"{model} predicts keypoints of shape {kpt_shape}, not the 17 COCO points (17, 3)"
        )


class YoloDetector(PersonDetector):
    """An ultralytics YOLO model (detect or pose task) restricted to persons; see the module docstring."""

    name = "yolo"

    def __init__(
        self, model: str | os.PathLike[str] = "yolo11n.pt", *, allow_pickle: bool = False,
        device: str = "auto", image_size: int = 640, confidence: float = 0.25, iou: float = 0.7,
        max_people: int = 300, half: bool = False, batch_size: int = 16,
    ) -> None:
        if not 0.0 <= confidence <= 1.0 or not 0.0 <= iou <= 1.0:
            raise ValueError(f"confidence and iou must be in [0, 1], got {confidence} and {iou}")
        if max_people < 1 or batch_size < 1 or image_size < 32:
            raise ValueError(
                "max_people and batch_size must be >= 1 and image_size >= 32, got "
                f"{max_people}, {batch_size}, {image_size}"
            )
        self.model_name = os.fspath(model)
        self.model = _load_yolo(self.model_name, allow_pickle)
        self.task = str(getattr(self.model, "task", "detect"))
        self.gives_keypoints = self.task == "pose"
        if self.gives_keypoints:
            _check_keypoint_shape(self.model_name, self.model)
            self.name = "yolo-pose"
        self.batch_size = batch_size
        self.device = device_name(device)
        self.predict_options: dict[str, Any] = {
            "conf": confidence, "iou": iou, "imgsz": image_size, "max_det": max_people,
            "classes": [PERSON_CLASS], "device": self.device, "verbose": False,
        }
        if half and self.device.startswith("cuda"):
            self.predict_options["half"] = True
        # One warm-up call sets the predictor up on our device; an exported model's class names come from it
        # (asking for them before would load the model a second time, on ultralytics' default device).
        self.model.predict([np.zeros((64, 64, 3), np.uint8)], **self.predict_options)
        _check_person_class(self.model_name, getattr(self.model, "names", None))
        logger.info("yolo detector: %s (%s) on %s, image size %d", self.model_name, self.task, self.device,
                    image_size)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        if self.model is None:
            raise DetectorError("the YOLO detector is closed")
        found: list[Detections] = []
        for start in range(0, len(frames), self.batch_size):
            chunk = frames[start:start + self.batch_size]
            results = self.model.predict([frame.image for frame in chunk], **self.predict_options)
            found.extend(self._to_detections(frame, result) for frame, result in zip(chunk, results))
        return found

    def _to_detections(self, frame: Frame, result: Any) -> Detections:
        if self.gives_keypoints:
            poses = YoloPose._to_poses(result)  # the pose backend's conversion: boxes, scores, keypoints
            return Detections.create(frame.camera_id, frame.index, frame.timestamp, poses.boxes, poses.scores,
                                     keypoints=poses.keypoints)
        boxes = result.boxes
        if boxes is None or len(boxes) == 0:
            return Detections.empty(frame.camera_id, frame.index, frame.timestamp)
        return Detections.create(frame.camera_id, frame.index, frame.timestamp,
                                 boxes.xyxy.float().cpu().numpy(), boxes.conf.float().cpu().numpy())

    def close(self) -> None:
        self.model = None


class YoloPoseDetector(YoloDetector):
    """``yolo-pose``: a YOLO pose model, boxes and keypoints in one pass; a plain detector is refused."""

    def __init__(self, model: str | os.PathLike[str] = "yolo11n-pose.pt", **options: Any) -> None:
        super().__init__(model, **options)
        if not self.gives_keypoints:
            self.close()
            raise DetectorError(
                f"{os.fspath(model)} is a {self.task!r} model, not a pose model: use the 'yolo' detector "
                "with it, or a pose model such as yolo11n-pose.pt"
            )


# --------------------------------------------------------------------------- MOTChallenge det.txt


_FrameTable = dict[int, tuple[np.ndarray, np.ndarray]]  # frame index -> boxes (K, 4) xyxy, scores (K,)
_EMPTY = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))


def _parse_row(line: str, frame_offset: int) -> tuple[int, float, float, float, float, float] | None:
    """``(frame index, x1, y1, x2, y2, raw conf)`` of one det.txt line, or None when it is malformed."""
    fields = line.split(",")
    if len(fields) != MOT_FIELDS:
        return None
    try:
        values = [float(field) for field in fields]
    except ValueError:
        return None
    if not all(math.isfinite(value) for value in values):
        return None
    frame, _, left, top, width, height, conf = values[:7]
    index = int(frame) - frame_offset
    if frame != int(frame) or index < 0 or width <= 0 or height <= 0:
        return None
    return index, left, top, left + width, top + height, conf


def _group_by_frame(rows: list[tuple[int, float, float, float, float, float]]) -> _FrameTable:
    if not rows:
        return {}
    table = np.asarray(rows, dtype=np.float64)
    table = table[np.argsort(table[:, 0], kind="stable")]
    frames, starts = np.unique(table[:, 0].astype(np.int64), return_index=True)
    groups = np.split(table, starts[1:])
    return {int(frame): (group[:, 1:5].astype(np.float32), group[:, 5].astype(np.float32))
            for frame, group in zip(frames, groups)}


def read_det_file(path: Path, *, min_confidence: float = 0.0, frame_offset: int = 1) -> _FrameTable:
    """One MOTChallenge ``det.txt`` as per-frame arrays; bad lines and clipped scores are logged once each."""
    rows: list[tuple[int, float, float, float, float, float]] = []
    bad: list[int] = []
    clipped = 0
    try:
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                row = _parse_row(line, frame_offset)
                if row is None:
                    bad.append(number)
                    continue
                conf = 1.0 if row[5] == -1 else min(max(row[5], 0.0), 1.0)
                if row[5] != -1 and conf != row[5]:
                    clipped += 1
                if conf >= min_confidence:
                    rows.append((*row[:5], conf))
    except (OSError, UnicodeDecodeError) as exc:
        raise DetectorError(f"cannot read detections file {path}: {exc}") from exc
    if bad:
        logger.warning(
            "%s: %d malformed line(s) skipped, the first is line %d (expected %d numbers: frame, id, left, "
            "top, width > 0, height > 0, conf, x, y, z)", path, len(bad), bad[0], MOT_FIELDS,
        )
    if clipped:
        logger.warning("%s: %d confidence value(s) outside [0, 1] clipped to it", path, clipped)
    return _group_by_frame(rows)


def _clip_to_frame(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Boxes clipped to the image; those left without area (entirely outside) are dropped."""
    clipped = boxes.copy()
    clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0.0, float(width))
    clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0.0, float(height))
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    return clipped[keep], scores[keep]


class PublicDetections(PersonDetector):
    """Precomputed MOTChallenge detections, one ``det.txt`` per camera id; ``Frame.index == frame - offset``.

    Confidence -1 ("not given") reads as 1.0; other values outside [0, 1] are clipped. Rows below
    ``min_confidence`` are dropped. Boxes are clipped to each frame when it is detected.
    """

    name = "public"

    def __init__(
        self, sources: Mapping[str, str | os.PathLike[str]], *, min_confidence: float = 0.0,
        frame_offset: int = 1,
    ) -> None:
        if not isinstance(sources, Mapping) or not sources:
            raise DetectorError("public detections need a mapping of camera id -> det.txt path, got none")
        self.tables: dict[str, _FrameTable] = {}
        for camera_id, source in sources.items():
            path = Path(source)
            if not path.is_file():
                raise DetectorError(f"detections file of camera {camera_id!r} not found: {path}")
            self.tables[camera_id] = read_det_file(
                path, min_confidence=min_confidence, frame_offset=frame_offset
            )
            logger.info("public detections of camera %s: %d frames from %s", camera_id,
                        len(self.tables[camera_id]), path)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: Frame) -> Detections:
        table = self.tables.get(frame.camera_id)
        if table is None:
            raise DetectorError(
                f"no detections file for camera {frame.camera_id!r}; known cameras: "
                f"{', '.join(sorted(self.tables))}"
            )
        height, width = frame.image.shape[:2]
        boxes, scores = _clip_to_frame(*table.get(frame.index, _EMPTY), width, height)
        return Detections.create(frame.camera_id, frame.index, frame.timestamp, boxes, scores)

    def close(self) -> None:
        self.tables = {}


# --------------------------------------------------------------------------- HOG and the factory


class HogDetector(PersonDetector):
    """OpenCV's HOG people detector, frame by frame; options as :class:`HogPersonDetector`."""

    name = "hog"

    def __init__(self, **hog_options: Any) -> None:
        self.detector = HogPersonDetector(**hog_options)

    def detect(self, frames: Sequence[Frame]) -> list[Detections]:
        return [self.detector.detect(frame) for frame in frames]


_FACTORIES: dict[str, Callable[..., PersonDetector]] = {
    "yolo": YoloDetector, "yolo-pose": YoloPoseDetector, "public": PublicDetections, "hog": HogDetector,
}
# Where the accepted option names of a kind are declared (its factory takes **options).
_SIGNATURES: dict[str, Callable[..., Any]] = {"yolo-pose": YoloDetector, "hog": HogPersonDetector}
_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _check_options(kind: str, options: Mapping[str, Any]) -> None:
    parameters = inspect.signature(_SIGNATURES.get(kind, _FACTORIES[kind])).parameters
    accepted = [name for name, parameter in parameters.items() if parameter.kind in _NAMED]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        hints = [f"{name!r}" + "".join(f" (did you mean {close!r}?)" for close in
                                       difflib.get_close_matches(name, accepted, n=1)) for name in unknown]
        raise DetectorOptionError(
            f"detector {kind!r} got unknown option(s) {', '.join(hints)}; it accepts: {', '.join(accepted)}"
        )
    required = [name for name in accepted if parameters[name].default is inspect.Parameter.empty]
    missing = [name for name in required if name not in options]
    if missing:
        raise DetectorOptionError(f"detector {kind!r} needs the option(s): {', '.join(missing)}")


def create_detector(kind: str, **options: Any) -> PersonDetector:
    """A person detector by kind (``yolo``, ``yolo-pose``, ``public``, ``hog``) with its keyword options."""
    if kind not in _FACTORIES:
        close = difflib.get_close_matches(kind, DETECTORS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise DetectorError(f"unknown detector {kind!r}{hint}; known: {', '.join(DETECTORS)}")
    _check_options(kind, options)
    return _FACTORIES[kind](**options)
