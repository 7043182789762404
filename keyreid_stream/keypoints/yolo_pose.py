"""YOLO-pose keypoints (ultralytics): people boxes and their 17 COCO keypoints in one pass.

For the stream this is the cheapest route: one network gives the detector's boxes and the keypoints KPS needs.
For dataset crops it is an alternative to PifPaf (the paper's estimator).

Models, by what ``model`` names:

* ``yolo11n-pose.yaml`` (any ultralytics ``*.yaml``): the architecture with random weights, built offline (tests).
* ``yolo11n-pose.pt`` (an official ultralytics asset name, no directory): ultralytics downloads it from its release
  page into its weights folder the first time.
* a local file: ``.onnx``, ``.engine``, ``.torchscript``, ``.mlpackage`` ... load without pickle; a local ``.pt`` is a
  pickled Python object that runs code when loaded, so it needs ``allow_pickle=True`` (a file you trust).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from keyreid_stream.inference.device import device_name
from keyreid_stream.inference.model_source import check_model_source
from keyreid_stream.keypoints.pose import PersonPoses, PoseBackend, PoseError

__all__ = ["YoloPose", "check_pose_model_source"]

logger = logging.getLogger(__name__)

PERSON_CLASS = 0
OFFICIAL_POSE_WEIGHTS = re.compile(r"^yolo(v8|11|12|26)[nsmlx]-pose\.pt$")


def check_pose_model_source(model: str, allow_pickle: bool) -> None:
    check_model_source(
        model, allow_pickle, official=OFFICIAL_POSE_WEIGHTS, what="YOLO-pose", error=PoseError,
        examples="an ultralytics *-pose.yaml (random weights) or an official name such as 'yolo11n-pose.pt' "
        "(downloaded by ultralytics)",
    )


class YoloPose(PoseBackend):
    """Ultralytics pose model; ``detect`` returns people (class 0) with boxes, scores and keypoints."""

    name = "yolo-pose"

    def __init__(
        self, model: str = "yolo11n-pose.pt", *, allow_pickle: bool = False, device: str = "auto",
        batch_size: int = 16, image_size: int = 640, confidence: float = 0.25, iou: float = 0.7,
        max_people: int = 100, half: bool = False,
    ) -> None:
        super().__init__(batch_size)
        check_pose_model_source(str(model), allow_pickle)
        try:
            from ultralytics import YOLO
        except ImportError as exc:
            raise PoseError("the yolo-pose backend needs ultralytics: pip install 'keyreid-stream[stream]'") from exc
        try:
            self.model = YOLO(str(model), task="pose")
        except Exception as exc:  # ultralytics raises many types for a bad or unreachable model
            raise PoseError(f"could not load YOLO-pose model {model!r}: {exc}") from exc
        kpt_shape = getattr(self.model.model, "yaml", {}).get("kpt_shape") if hasattr(self.model, "model") else None
        if kpt_shape is not None and list(kpt_shape) != [17, 3]:
            raise PoseError(f"{model} predicts keypoints of shape {kpt_shape}, not the 17 COCO points (17, 3)")
        self.device = device_name(device)
        self.predict_options: dict[str, Any] = {
            "conf": confidence, "iou": iou, "imgsz": image_size, "max_det": max_people, "classes": [PERSON_CLASS],
            "device": self.device, "verbose": False,
        }
        if half and self.device.startswith("cuda"):
            self.predict_options["half"] = True
        logger.info("yolo-pose: %s on %s (image size %d)", model, self.device, image_size)

    def _detect_batch(self, images: Sequence[np.ndarray]) -> list[PersonPoses]:
        results = self.model.predict(list(images), **self.predict_options)
        return [self._to_poses(result) for result in results]

    @staticmethod
    def _to_poses(result: Any) -> PersonPoses:
        boxes = result.boxes
        if boxes is None or len(boxes) == 0 or result.keypoints is None:
            return PersonPoses.empty()
        keypoints = result.keypoints.data.float().cpu().numpy()
        if keypoints.shape[-1] == 2:  # a model trained without visibility: every returned joint is seen
            keypoints = np.concatenate([keypoints, np.ones_like(keypoints[..., :1])], axis=-1)
        keypoints[..., 2] = np.clip(np.nan_to_num(keypoints[..., 2]), 0.0, 1.0)
        keypoints[..., :2] = np.nan_to_num(keypoints[..., :2]) * (keypoints[..., 2:] > 0)
        return PersonPoses(
            boxes.xyxy.float().cpu().numpy(), boxes.conf.float().cpu().numpy(), keypoints,
        )

    def close(self) -> None:
        self.model = None
