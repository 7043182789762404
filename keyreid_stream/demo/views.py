"""Two overlapping camera views cut from one video: the demo's stand-in for a pair of cameras.

The sample video is a single fixed camera. Cutting a left and a right window out of every frame, with a band of
columns in common, gives two "cameras" that see the middle of the scene at the same moment: a person walking
through the shared band is visible in both, one walking at the far left or right in one only. The views are
pixel crops of one recording, not two cameras: same time base, same lens, same colours. Cross-camera re-ID is
easier here than between real cameras, and the demo says so.

The views are written once to the cache (Motion-JPEG ``.avi``, which every OpenCV build can write and read) and
reused while the source file and the geometry are unchanged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CameraView", "cut_overlapping_views", "plan_views"]

logger = logging.getLogger(__name__)

VIEWS_VERSION = 1
_JPEG_QUALITY = 90


@dataclass(frozen=True)
class CameraView:
    """One view: the camera id, its video file, and the columns ``[x0, x1)`` of the source frame it shows."""

    camera_id: str
    path: Path
    x0: int
    x1: int
    source_width: int

    def describe(self, other: CameraView | None = None) -> str:
        text = f"columns {self.x0}-{self.x1 - 1} of the {self.source_width}-px sample frame"
        if other is not None:
            shared = min(self.x1, other.x1) - max(self.x0, other.x0)
            if shared > 0:
                text += f" ({shared} px shared with {other.camera_id})"
        return text


def plan_views(source_width: int, view_width: int, camera_ids: tuple[str, str] = ("cam-left", "cam-right")
               ) -> tuple[tuple[str, int, int], tuple[str, int, int]]:
    """The left and right windows ``(camera_id, x0, x1)``: ``view_width`` columns each, flush with the edges."""
    if not 0 < view_width <= source_width:
        raise ValueError(f"view width {view_width} must be in (0, {source_width}] (the video's width)")
    if 2 * view_width <= source_width:
        raise ValueError(f"view width {view_width} leaves no overlap in a {source_width}-px frame: use more than "
                         f"{source_width // 2}")
    left, right = camera_ids
    return (left, 0, view_width), (right, source_width - view_width, source_width)


def cut_overlapping_views(video: Path, out_dir: Path, *, view_width: int = 480, max_frames: int = 0,
                          camera_ids: tuple[str, str] = ("cam-left", "cam-right")) -> tuple[CameraView, CameraView]:
    """Write (or reuse) the left and right views of ``video`` under ``out_dir``; ``max_frames`` 0 = all."""
    capture = cv2.VideoCapture(str(video))
    try:
        if not capture.isOpened():
            raise FileNotFoundError(f"cannot open video {video}")
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        plan = plan_views(width, view_width, camera_ids)
        stamp = _stamp(video, plan, max_frames)
        folder = out_dir / f"views-{stamp}"
        views = tuple(CameraView(camera_id, folder / f"{camera_id}.avi", x0, x1, width)
                      for camera_id, x0, x1 in plan)
        if (folder / "done.json").is_file() and all(view.path.is_file() for view in views):
            logger.info("reusing the camera views in %s", folder)
            return views  # type: ignore[return-value]
        folder.mkdir(parents=True, exist_ok=True)
        frames = _write_views(capture, views, (height, fps), max_frames)
    finally:
        capture.release()
    (folder / "done.json").write_text(json.dumps({"source": str(video), "frames": frames,
                                                  "views": [[v.camera_id, v.x0, v.x1] for v in views]}))
    logger.info("cut %d frames of %s into %s", frames, video.name, ", ".join(v.camera_id for v in views))
    return views  # type: ignore[return-value]


def _stamp(video: Path, plan: tuple[tuple[str, int, int], tuple[str, int, int]], max_frames: int) -> str:
    status = video.stat()
    key = json.dumps([VIEWS_VERSION, os.fspath(video.resolve()), status.st_size, int(status.st_mtime), plan,
                      max_frames])
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def _write_views(capture: cv2.VideoCapture, views: tuple[CameraView, ...], geometry: tuple[int, float],
                 max_frames: int) -> int:
    height, fps = geometry
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")  # type: ignore[attr-defined]  # missing from opencv's stubs
    writers = []
    try:
        for view in views:
            partial = view.path.with_suffix(".partial.avi")
            writer = cv2.VideoWriter(str(partial), fourcc, fps, (view.x1 - view.x0, height))
            if not writer.isOpened():
                raise OSError(f"OpenCV cannot write {partial} (Motion-JPEG)")
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, _JPEG_QUALITY)
            writers.append((view, partial, writer))
        frames = 0
        while not max_frames or frames < max_frames:
            ok, image = capture.read()
            if not ok or image is None:
                break
            for view, _partial, writer in writers:
                writer.write(np.ascontiguousarray(image[:, view.x0:view.x1]))
            frames += 1
    finally:
        for _view, _partial, writer in writers:
            writer.release()
    if frames == 0:
        raise ValueError("the video has no readable frame")
    for view, partial, _writer in writers:
        os.replace(partial, view.path)  # complete files only: a crash leaves .partial files, never a short view
    return frames
