"""Dataset keypoint extraction: every frame of every tracklet through a pose backend, into a keypoint store.

``extract_keypoints(tracklets, root, store, backend)`` reads the frames of the tracklets the store does not hold
yet, estimates one person per frame (the crop's person, see :func:`~.pose.select_person`) in batches, and
appends whole tracklets to the store every ``flush_frames`` frames. Interrupting it (Ctrl-C, a crash, a killed
job) loses at most the tracklets since the last flush; running it again skips every tracklet already stored.

A frame that cannot be read or decoded is logged, stored with status ``unreadable`` (no joints) and counted in
the summary; it never stops the run. A frame where the backend finds nobody is stored as ``no_person``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS
from keyreid_stream.data.layouts import TrackletFiles, list_tracklets
from keyreid_stream.keypoints.backends import create_backend
from keyreid_stream.keypoints.pose import PoseBackend
from keyreid_stream.keypoints.store import STATUS_FOUND, STATUS_NO_PERSON, STATUS_UNREADABLE, KeypointStore

__all__ = ["ExtractionSummary", "default_store_folder", "extract_dataset", "extract_keypoints"]

logger = logging.getLogger(__name__)

MAX_LISTED_UNREADABLE = 20


@dataclass
class ExtractionSummary:
    """What one extraction run did (frames counted are the ones processed in this run)."""

    tracklets_total: int
    tracklets_skipped: int = 0
    tracklets_done: int = 0
    frames: int = 0
    frames_no_person: int = 0
    frames_unreadable: int = 0
    confidence_sum: float = 0.0
    seconds: float = 0.0
    unreadable: list[str] = field(default_factory=list)

    @property
    def mean_confidence(self) -> float:
        """Mean joint confidence over the frames where a person was found."""
        found = self.frames - self.frames_no_person - self.frames_unreadable
        return self.confidence_sum / found if found else 0.0

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "tracklets_total": self.tracklets_total, "tracklets_skipped": self.tracklets_skipped,
            "tracklets_done": self.tracklets_done, "frames": self.frames, "frames_no_person": self.frames_no_person,
            "frames_unreadable": self.frames_unreadable, "mean_confidence": round(self.mean_confidence, 4),
            "seconds": round(self.seconds, 2), "frames_per_second": round(self.frames_per_second, 1),
            "unreadable_examples": self.unreadable[:MAX_LISTED_UNREADABLE],
        }


def _read_image(path: Path) -> np.ndarray | None:
    """The image as (H, W, 3) uint8 BGR, or None (logged) when it cannot be read or decoded."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (OSError, ValueError, cv2.error) as exc:
        logger.warning("skipping unreadable frame %s: %s", path, exc)
        return None
    if image is None or image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        logger.warning("skipping frame %s: not a decodable image", path)
        return None
    return image


@dataclass
class _Pending:
    """Finished tracklets waiting to be flushed to the store."""

    keys: list[str] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    keypoints: list[np.ndarray] = field(default_factory=list)
    status: list[np.ndarray] = field(default_factory=list)

    def add(self, tracklet: TrackletFiles, keypoints: np.ndarray, status: np.ndarray) -> None:
        self.keys.extend([tracklet.key] * len(tracklet))
        self.paths.extend(tracklet.paths)
        self.keypoints.append(keypoints)
        self.status.append(status)

    def flush(self, store: KeypointStore) -> None:
        if self.paths:
            store.append(self.keys, self.paths, np.concatenate(self.keypoints), np.concatenate(self.status))
            self.keys, self.paths, self.keypoints, self.status = [], [], [], []


def _frame_batches(
    tracklets: Sequence[TrackletFiles], root: Path, batch_size: int, pool: ThreadPoolExecutor,
) -> Iterator[tuple[list[tuple[int, int]], list[np.ndarray | None]]]:
    """Batches of (tracklet index, frame index) and the decoded images, in order, reading one batch ahead."""
    slots = [(t, f) for t, tracklet in enumerate(tracklets) for f in range(len(tracklet))]
    batches = [slots[start:start + batch_size] for start in range(0, len(slots), batch_size)]

    def read(batch: list[tuple[int, int]]) -> list[np.ndarray | None]:
        return list(pool.map(lambda slot: _read_image(root / tracklets[slot[0]].paths[slot[1]]), batch))

    ahead = pool.submit(read, batches[0]) if batches else None
    for index, batch in enumerate(batches):
        images = ahead.result()  # type: ignore[union-attr]
        ahead = pool.submit(read, batches[index + 1]) if index + 1 < len(batches) else None
        yield batch, images


def _estimate(backend: PoseBackend, images: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (N, 17, 3) and status (N,) for a batch where some images may be None (unreadable)."""
    keypoints = np.zeros((len(images), NUM_KEYPOINTS, 3), np.float32)
    status = np.full(len(images), STATUS_UNREADABLE, np.uint8)
    readable = [i for i, image in enumerate(images) if image is not None]
    if readable:
        estimated = backend.estimate_crops([images[i] for i in readable])  # type: ignore[misc]
        keypoints[readable] = estimated
        found = (estimated[..., 2] > 0).any(axis=-1)
        status[readable] = np.where(found, STATUS_FOUND, STATUS_NO_PERSON)
    return keypoints, status


def extract_keypoints(
    tracklets: Sequence[TrackletFiles], root: str | Path, store: KeypointStore, backend: PoseBackend, *,
    batch_size: int = 32, flush_frames: int = 2048, read_threads: int = 4,
    progress: Callable[[int], None] | None = None,
) -> ExtractionSummary:
    """Estimate and store the keypoints of every frame of ``tracklets`` (paths relative to ``root``) not yet stored.

    ``progress(n)`` is called after each batch with the number of frames it held (e.g. a progress bar's update).
    """
    if batch_size < 1 or flush_frames < 1:
        raise ValueError("batch_size and flush_frames must be >= 1")
    root = Path(root)
    done = store.tracklet_keys()
    todo = [tracklet for tracklet in tracklets if tracklet.key not in done and len(tracklet)]
    summary = ExtractionSummary(tracklets_total=len(tracklets), tracklets_skipped=len(tracklets) - len(todo))
    if summary.tracklets_skipped:
        logger.info("resuming: %d of %d tracklets are already in %s", summary.tracklets_skipped,
                    len(tracklets), store.folder)
    started = time.perf_counter()
    partial: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # tracklets being filled: keypoints, status
    remaining = [len(t) for t in todo]
    pending = _Pending()
    with ThreadPoolExecutor(max_workers=max(1, read_threads)) as pool:
        for slots, images in _frame_batches(todo, root, batch_size, pool):
            batch_keypoints, batch_status = _estimate(backend, images)
            for (t, f), points, state in zip(slots, batch_keypoints, batch_status):
                if t not in partial:
                    partial[t] = (np.zeros((len(todo[t]), NUM_KEYPOINTS, 3), np.float32),
                                  np.zeros(len(todo[t]), np.uint8))
                partial[t][0][f], partial[t][1][f] = points, state
                _count(summary, todo[t], f, points, state)
                remaining[t] -= 1
                if remaining[t] == 0:
                    pending.add(todo[t], *partial.pop(t))
                    summary.tracklets_done += 1
            if len(pending.paths) >= flush_frames:
                pending.flush(store)
            if progress is not None:
                progress(len(slots))
    pending.flush(store)
    summary.seconds = time.perf_counter() - started
    return summary


def _count(summary: ExtractionSummary, tracklet: TrackletFiles, frame: int, points: np.ndarray, state: int) -> None:
    summary.frames += 1
    if state == STATUS_UNREADABLE:
        summary.frames_unreadable += 1
        if len(summary.unreadable) < MAX_LISTED_UNREADABLE:
            summary.unreadable.append(tracklet.paths[frame])
    elif state == STATUS_NO_PERSON:
        summary.frames_no_person += 1
    else:
        summary.confidence_sum += float(points[:, 2].mean())


def default_store_folder(root: str | os.PathLike[str], backend: str) -> Path:
    """Where ``keypoints extract`` writes when no output folder is given: ``ROOT/keypoints-BACKEND``."""
    return Path(root) / f"keypoints-{backend}"


def extract_dataset(
    dataset: str, root: str | Path, backend_name: str, *, out: str | Path | None = None,
    backend_options: dict[str, object] | None = None, batch_size: int = 32, flush_frames: int = 2048,
    progress_factory: Callable[[int, int], Callable[[int], None]] | None = None,
) -> tuple[ExtractionSummary, KeypointStore]:
    """List the tracklets of a dataset tree, open (or resume) its store and extract what is missing.

    ``progress_factory(total_frames, done_frames)`` may return a per-batch progress callback (a progress bar).
    Every run is appended to ``runs.jsonl`` in the store.
    """
    options = dict(backend_options or {})
    tracklets = list_tracklets(dataset, root)
    store = KeypointStore.create(out or default_store_folder(root, backend_name), dataset=dataset,
                                 backend=backend_name, backend_options={k: str(v) for k, v in options.items()})
    done = store.tracklet_keys()
    total = sum(len(t) for t in tracklets)
    finished = sum(len(t) for t in tracklets if t.key in done)
    logger.info("%s: %d tracklets, %d frames; %d frames already stored", dataset, len(tracklets), total, finished)
    progress = progress_factory(total, finished) if progress_factory else None
    backend = create_backend(backend_name, **options) if finished < total else None
    try:
        summary = (extract_keypoints(tracklets, root, store, backend, batch_size=batch_size,
                                     flush_frames=flush_frames, progress=progress)
                   if backend is not None else ExtractionSummary(len(tracklets), tracklets_skipped=len(tracklets)))
    finally:
        if backend is not None:
            backend.close()
    with open(store.folder / "runs.jsonl", "a", encoding="utf-8") as runs:
        runs.write(json.dumps({"time": time.time(), **summary.as_dict()}) + "\n")
    return summary, store
