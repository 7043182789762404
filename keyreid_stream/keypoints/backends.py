"""Pose backends by name: :func:`create_backend` builds ``pifpaf``, ``yolo-pose``, ``blazepose`` or ``prior``.

The interface they share lives in :mod:`.pose`; this module sits above the backends, so that none of them
imports the factory that builds it. Their heavy dependencies (openpifpaf, ultralytics, mediapipe) are loaded
by the backends themselves when one is built.
"""

from __future__ import annotations

import difflib
from typing import Any

from keyreid_stream.keypoints.blazepose import BlazePose
from keyreid_stream.keypoints.pifpaf import PifPafPose
from keyreid_stream.keypoints.pose import PoseBackend, PoseError, PriorPose
from keyreid_stream.keypoints.yolo_pose import YoloPose

__all__ = ["BACKENDS", "create_backend"]

BACKENDS: tuple[str, ...] = ("pifpaf", "yolo-pose", "blazepose", "prior")

_CLASSES: dict[str, type[PoseBackend]] = {
    "pifpaf": PifPafPose, "yolo-pose": YoloPose, "blazepose": BlazePose, "prior": PriorPose,
}


def create_backend(name: str, **options: Any) -> PoseBackend:
    """A pose backend by name (``pifpaf``, ``yolo-pose``, ``blazepose``, ``prior``) with its keyword options."""
    backend_class = _CLASSES.get(name)
    if backend_class is None:
        close = difflib.get_close_matches(name, BACKENDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise PoseError(f"unknown pose backend {name!r}{hint}; known: {', '.join(BACKENDS)}")
    return backend_class(**options)
