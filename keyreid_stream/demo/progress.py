"""The demo's progress while its workers run: frames read per camera, tracklets embedded and waiting, time left.

Read from the workers' heartbeats as the matcher's API serves them (``GET /cameras``): each camera's counters
``frames``, ``expected_frames`` (0 for a live stream), ``tracklets`` (finished, handed to the embedder) and
``published`` (embedded and sent). The time left is the larger of two estimates at the rates so far: reading the
rest of the videos, and embedding the tracklets they will yield (the count so far, scaled to the whole video).
ViT-B on a CPU embeds about one tracklet per 6 s, so the second one usually decides. Once every video is read the
embedder has the CPU to itself and runs faster: from then on its rate is measured from that moment
(:class:`ProgressTracker` remembers it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from keyreid_stream.progress import format_time_left, time_left

__all__ = ["CameraProgress", "DemoProgress", "ProgressTracker", "format_progress", "progress_from_cameras"]

SETTLE_S = 20.0  # how long after the last video ended the embedding rate since then is trusted


@dataclass(frozen=True)
class CameraProgress:
    camera_id: str
    frames: int
    expected_frames: int  # 0: unknown
    tracklets: int
    published: int
    ended: bool


@dataclass(frozen=True)
class DemoProgress:
    elapsed_s: float
    cameras: tuple[CameraProgress, ...]
    read_end_s: float | None = None  # when every camera had ended, if they have
    embedded_at_read_end: int = 0

    @property
    def embedded(self) -> int:
        return sum(camera.published for camera in self.cameras)

    @property
    def waiting(self) -> int:
        return sum(max(0, camera.tracklets - camera.published) for camera in self.cameras)

    def time_left_s(self) -> float | None:
        """None while there is no estimate (nothing embedded yet, or a live stream of unknown length)."""
        if not self.cameras or any(camera.expected_frames <= 0 for camera in self.cameras):
            return None
        frames = sum(camera.frames for camera in self.cameras)
        expected = sum(camera.expected_frames for camera in self.cameras)
        reading = time_left(frames, expected, self.elapsed_s)
        if all(camera.ended for camera in self.cameras):
            reading, frames = 0.0, expected
        tracklets = sum(camera.tracklets for camera in self.cameras)
        if reading is None or frames == 0:
            return None
        if tracklets == 0:
            return reading
        expected_tracklets = tracklets * expected / frames
        embedding = time_left(self.embedded, expected_tracklets, self.elapsed_s)
        since = None if self.read_end_s is None else self.elapsed_s - self.read_end_s
        if since is not None and since >= SETTLE_S and self.embedded > self.embedded_at_read_end:
            embedding = time_left(self.embedded - self.embedded_at_read_end,
                                  expected_tracklets - self.embedded_at_read_end, since)
        return None if embedding is None else max(reading, embedding)


def progress_from_cameras(rows: Sequence[Mapping[str, Any]], elapsed_s: float) -> DemoProgress:
    """``GET /cameras`` rows -> progress (cameras without a heartbeat yet count as nothing read)."""
    cameras = []
    for row in rows:
        counters = (row.get("last_heartbeat") or {}).get("counters") or {}

        def count(name: str, c: Mapping[str, Any] = counters) -> int:
            return int(c.get(name, 0))

        cameras.append(CameraProgress(str(row["camera_id"]), count("frames"), count("expected_frames"),
                                      count("tracklets"), count("published"), bool(count("ended"))))
    return DemoProgress(elapsed_s, tuple(sorted(cameras, key=lambda camera: camera.camera_id)))


class ProgressTracker:
    """Successive ``GET /cameras`` readings -> progress, remembering when the last video ended."""

    def __init__(self) -> None:
        self._read_end: tuple[float, int] | None = None

    def update(self, rows: Sequence[Mapping[str, Any]], elapsed_s: float) -> DemoProgress:
        progress = progress_from_cameras(rows, elapsed_s)
        if self._read_end is None and progress.cameras and all(camera.ended for camera in progress.cameras):
            self._read_end = (elapsed_s, progress.embedded)
        if self._read_end is None:
            return progress
        return DemoProgress(progress.elapsed_s, progress.cameras, *self._read_end)


def format_progress(progress: DemoProgress) -> str:
    """One line, e.g. ``[ 40 s] frames cam1 120/199, cam2 118/199 | tracklets 6 embedded, 4 waiting | about 1 min
    left``."""
    frames = ", ".join(f"{camera.camera_id} {camera.frames}/{camera.expected_frames or '?'}"
                       + (" (done)" if camera.ended else "") for camera in progress.cameras) or "waiting for the "\
        "workers' first heartbeats"
    return (f"[{progress.elapsed_s:4.0f} s] frames {frames} | tracklets {progress.embedded} embedded, "
            f"{progress.waiting} waiting | {format_time_left(progress.time_left_s())}")
