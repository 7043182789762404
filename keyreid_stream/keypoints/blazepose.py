"""BlazePose keypoints offline: Google's MediaPipe pose landmark models (Apache-2.0) run with LiteRT.

A landmark model sees ONE person in a square 256 x 256 RGB crop and answers 33 landmarks; it needs the
detector's box (it does not find people). This backend:

1. squares every box around its centre: side = the longer side of the box grown by ``margin`` of its size on
   each side (``estimate_boxes``; a crop passed to ``estimate_crops`` is used whole, side = its longer side).
   The shorter side is padded symmetrically, and whatever lies outside the image is black;
2. resizes that square to 256 x 256 (area interpolation when shrinking), converts BGR to RGB, scales to [0, 1];
3. keeps the 17 COCO joints of the 33 landmarks (BlazePose indices :data:`COCO_FROM_BLAZEPOSE`) and maps them back
   to the image: ``x = square_left + x_crop * side / 256`` (same for y);
4. gives every joint the confidence ``pose presence x sigmoid(visibility logit) x sigmoid(presence logit)``:
   the probability that a person is there at all (the model's second output, already a probability), that the
   joint is not occluded, and that it lies inside the crop. A crop whose pose presence is below
   ``min_presence`` (0.5, MediaPipe's own threshold) shows nobody: all its joints are ``(0, 0, 0)``.

Models, by what ``model`` names: ``blazepose-lite``, ``blazepose-full`` (default) or ``blazepose-heavy`` -- the
files ``pose_landmark_{lite,full,heavy}.tflite`` in the project's weights cache, installed by
``keyreid-stream weights fetch blazepose-full`` -- or the path of such a ``.tflite`` file. The model's outputs
(``Identity`` (1, 195): 39 x (x, y, z, visibility logit, presence logit) in crop pixels, the first 33 are the
body; ``Identity_1`` (1, 1): pose presence) are checked when it loads. LiteRT runs on the CPU.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS
from keyreid_stream.keypoints.pose import PersonPoses, PoseBackend, PoseError, check_images
from keyreid_stream.weights import WeightsNotFound, resolve_weights

__all__ = ["COCO_FROM_BLAZEPOSE", "INPUT_SIZE", "VARIANTS", "BlazePose", "resolve_model", "square_boxes"]

logger = logging.getLogger(__name__)

VARIANTS: tuple[str, ...] = ("lite", "full", "heavy")
INPUT_SIZE = 256
NUM_LANDMARKS = 33  # body landmarks; the model answers 39, the last 6 are auxiliary (ROI) points
VALUES_PER_LANDMARK = 5  # x, y, z, visibility logit, presence logit
# BlazePose's 33 landmarks -> COCO's 17 joints (nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles).
COCO_FROM_BLAZEPOSE: np.ndarray = np.array([0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28])
DEFAULT_MIN_PRESENCE = 0.5  # MediaPipe's threshold on the pose presence score


def resolve_model(model: str) -> Path:
    """The ``.tflite`` file ``model`` names: an existing file as is, ``blazepose-VARIANT`` from the weights
    catalogue's cache (:func:`keyreid_stream.weights.resolve_weights`; the error says how to fetch or import it)."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    match = re.fullmatch(r"blazepose-(\w+)", model)
    if match is None or match.group(1) not in VARIANTS:
        names = ", ".join(f"blazepose-{variant}" for variant in VARIANTS)
        raise PoseError(f"BlazePose model {model!r} is neither a file nor a known name ({names})")
    try:
        return resolve_weights(model)
    except WeightsNotFound as exc:
        raise PoseError(str(exc)) from None


def square_boxes(boxes: np.ndarray, margin: float) -> np.ndarray:
    """Boxes (N, 4) xyxy grown by ``margin`` of their size per side, then squared on their longer side around
    their centre: ``(N, 3)`` rows of (left, top, side)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    sizes = boxes[:, 2:] - boxes[:, :2]
    side = np.maximum(sizes.max(axis=1) * (1.0 + 2.0 * margin), 1.0)
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    return np.concatenate([centres - side[:, None] / 2.0, side[:, None]], axis=1).astype(np.float32)


def _crop_square(image: np.ndarray, left: float, top: float, side: float) -> np.ndarray:
    """The square (left, top, side) of ``image`` resized to INPUT_SIZE, black outside the image; RGB float [0, 1]."""
    height, width = image.shape[:2]
    x1, y1 = int(np.floor(left)), int(np.floor(top))
    size = max(int(np.ceil(side)), 1)
    x2, y2 = x1 + size, y1 + size
    inside = image[max(y1, 0):max(min(y2, height), 0), max(x1, 0):max(min(x2, width), 0)]
    square = np.zeros((size, size, 3), np.uint8)
    if inside.size:
        oy, ox = max(-y1, 0), max(-x1, 0)
        square[oy:oy + inside.shape[0], ox:ox + inside.shape[1]] = inside
    interpolation = cv2.INTER_AREA if size > INPUT_SIZE else cv2.INTER_LINEAR
    resized = cv2.resize(square, (INPUT_SIZE, INPUT_SIZE), interpolation=interpolation)
    return cv2.cvtColor(resized, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    result: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(logits, -60.0, 60.0)))
    return result


class BlazePose(PoseBackend):
    """MediaPipe's BlazePose landmark model through LiteRT, one person per box or crop; see the module docstring.

    One interpreter, one crop at a time (batching gains nothing on a CPU): use an instance from one thread.
    """

    name = "blazepose"

    def __init__(
        self, model: str = "blazepose-full", *, min_presence: float = DEFAULT_MIN_PRESENCE,
        threads: int | None = None, batch_size: int = 16,
    ) -> None:
        super().__init__(batch_size)
        if not 0.0 <= min_presence < 1.0:
            raise ValueError(f"min_presence must be in [0, 1), got {min_presence}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 (or None for LiteRT's default), got {threads}")
        path = resolve_model(str(model))
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise PoseError("the blazepose backend needs ai-edge-litert: pip install 'keyreid-stream[stream]'") from exc
        try:
            self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise PoseError(f"{path} is not a TFLite model LiteRT can load: {exc}") from exc
        self._input, self._landmarks, self._presence = self._check_signature(path)
        self.model_path = path
        self.min_presence = float(min_presence)
        logger.info("blazepose: %s (%d threads)", path, threads or 1)

    def _check_signature(self, path: Path) -> tuple[int, int, int]:
        inputs = self.interpreter.get_input_details()
        outputs = {detail["name"]: detail for detail in self.interpreter.get_output_details()}
        landmarks, presence = outputs.get("Identity"), outputs.get("Identity_1")
        expected_landmarks = (1, (NUM_LANDMARKS + 6) * VALUES_PER_LANDMARK)
        if (
            len(inputs) != 1 or tuple(inputs[0]["shape"]) != (1, INPUT_SIZE, INPUT_SIZE, 3)
            or inputs[0]["dtype"] != np.float32 or landmarks is None or presence is None
            or tuple(landmarks["shape"]) != expected_landmarks or tuple(presence["shape"]) != (1, 1)
        ):
            got = [tuple(d["shape"]) for d in inputs], {k: tuple(v["shape"]) for k, v in outputs.items()}
            raise PoseError(
                f"{path} is not a BlazePose landmark model: expected one float input (1, 256, 256, 3) and outputs "
                f"Identity {expected_landmarks} and Identity_1 (1, 1); got inputs {got[0]}, outputs {got[1]}"
            )
        return int(inputs[0]["index"]), int(landmarks["index"]), int(presence["index"])

    def _run(self, square: np.ndarray) -> tuple[np.ndarray, float]:
        """One RGB [0, 1] square: the 17 COCO joints (x, y in crop pixels, confidence) and the pose presence."""
        self.interpreter.set_tensor(self._input, square[None])
        self.interpreter.invoke()
        values = self.interpreter.get_tensor(self._landmarks).reshape(-1, VALUES_PER_LANDMARK)[:NUM_LANDMARKS]
        presence = float(np.nan_to_num(self.interpreter.get_tensor(self._presence).reshape(-1)[0]))
        joints = values[COCO_FROM_BLAZEPOSE]
        confidence = presence * _sigmoid(joints[:, 3]) * _sigmoid(joints[:, 4])
        keypoints = np.concatenate([joints[:, :2], confidence[:, None]], axis=1).astype(np.float32)
        keypoints = np.nan_to_num(keypoints)
        if presence < self.min_presence:
            keypoints[:] = 0.0
        return keypoints, presence

    def _estimate_squares(self, image: np.ndarray, squares: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joints (N, 17, 3) in ``image`` pixels and pose presences (N,) for squares (N, 3) of ``image``."""
        keypoints = np.zeros((len(squares), NUM_KEYPOINTS, 3), np.float32)
        presences = np.zeros(len(squares), np.float32)
        for index, (left, top, side) in enumerate(squares):
            joints, presences[index] = self._run(_crop_square(image, left, top, side))
            seen = joints[:, 2:] > 0
            joints[:, :2] = (joints[:, :2] * (side / INPUT_SIZE) + np.array([left, top])) * seen
            keypoints[index] = joints
        return keypoints, presences

    def _detect_batch(self, images: Sequence[np.ndarray]) -> list[PersonPoses]:
        """At most one person per image (the landmark model finds no others): the whole image is its box."""
        found = []
        for image in images:
            box = np.array([[0, 0, image.shape[1], image.shape[0]]], np.float32)
            keypoints, presence = self._estimate_squares(image, square_boxes(box, 0.0))
            if presence[0] < self.min_presence:
                found.append(PersonPoses.empty())
            else:
                found.append(PersonPoses(box, presence, keypoints))
        return found

    def estimate_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        check_images(crops)
        keypoints = [
            self._estimate_squares(crop, square_boxes(np.array([0, 0, crop.shape[1], crop.shape[0]]), 0.0))[0]
            for crop in crops
        ]
        return np.concatenate(keypoints) if keypoints else np.zeros((0, NUM_KEYPOINTS, 3), np.float32)

    def estimate_boxes(self, frame: np.ndarray, boxes: np.ndarray, margin: float = 0.1) -> np.ndarray:
        """One person per box, each squared as the module docstring says: ``(N, 17, 3)`` in frame pixels."""
        check_images([frame])
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if not np.isfinite(boxes).all():
            raise ValueError(f"boxes must be finite, got {boxes[~np.isfinite(boxes).all(axis=1)].tolist()}")
        return self._estimate_squares(frame, square_boxes(boxes, margin))[0]

    def close(self) -> None:
        self.interpreter = None
