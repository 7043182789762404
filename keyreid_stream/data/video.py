"""PyTorch datasets over video re-ID tracklets: training clips and whole test tracklets.

Both read frames with OpenCV from the dataset root and keypoints from a :class:`KeypointSource` (a keypoint store
written by ``keyreid-stream keypoints extract``, the fixed layout of the keypoint prior, or nothing for models that
do not use keypoints), then apply a :class:`~keyreid_stream.data.transforms.ClipTransform`.

A frame that cannot be read is replaced by the nearest readable frame of the same tracklet, with one warning per
file; only a tracklet with no readable frame at all is an error. Training items are addressed by
:class:`~keyreid_stream.data.sampling.SampledItem` so that clip sampling and augmentation follow the item's seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from keyreid_stream.data.datasets import VideoTracklet
from keyreid_stream.data.sampling import SampledItem, dense_clips, restricted_random_clip
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.keypoints.extract import default_store_folder
from keyreid_stream.keypoints.pose import PRIOR_LAYOUT
from keyreid_stream.keypoints.store import KeypointStore, StoreError

__all__ = ["FrameReadError", "KeypointSource", "TestBatch", "TestClips", "TrainBatch", "TrainClips",
           "collate_test", "collate_train", "dense_clip_tensors", "dense_frame_selection"]

logger = logging.getLogger(__name__)
_warned: set[str] = set()


class FrameReadError(OSError):
    """No frame of a tracklet could be read."""


class KeypointSource:
    """Keypoints per frame path: from a store, from the prior layout, or none (all zero)."""

    def __init__(self, kind: str, store: KeypointStore | None = None, *, missing: str = "error",
                 prior_confidence: float = 0.5) -> None:
        if kind not in ("store", "prior", "none"):
            raise ValueError(f"kind must be 'store', 'prior' or 'none', got {kind!r}")
        if (kind == "store") != (store is not None):
            raise ValueError("a store is needed exactly when kind is 'store'")
        self.kind, self.store, self.missing = kind, store, missing
        self.prior_confidence = prior_confidence

    @classmethod
    def open(cls, spec: str, root: str | os.PathLike[str], *, missing: str = "error") -> KeypointSource:
        """``spec``: ``"none"``, ``"prior"``, a backend name (its store in the default folder under ``root``)
        or the path of a store folder."""
        if spec in ("none", "prior"):
            return cls(spec)
        folder = Path(spec)
        if not (folder / "store.json").exists():
            folder = default_store_folder(root, spec)
        if not (folder / "store.json").exists():
            raise StoreError(f"no keypoint store {spec!r}: neither {spec} nor {folder} holds one; run "
                             f"'keyreid-stream keypoints extract --root {root} --backend {spec} ...' first, or set "
                             "data.keypoints to a store folder, 'prior' or 'none'")
        return cls("store", KeypointStore.open(folder), missing=missing)

    def get(self, paths: Sequence[str], shapes: Sequence[tuple[int, int]]) -> np.ndarray:
        """``(len(paths), 17, 3)`` keypoints in pixels of the original frames of ``shapes`` (height, width)."""
        if self.kind == "store":
            return self.store.get_many(paths, missing=self.missing)  # type: ignore[union-attr]
        points = np.zeros((len(paths), 17, 3), np.float32)
        if self.kind == "prior":
            sizes = np.array([(w - 1, h - 1) for h, w in shapes], np.float32)[:, None, :]
            points[..., :2] = PRIOR_LAYOUT[None] * sizes
            points[..., 2] = self.prior_confidence
        return points


def _read_frames(root: Path, paths: Sequence[str]) -> list[np.ndarray]:
    """BGR frames of ``paths``; unreadable ones replaced by the nearest readable frame of the list."""
    images: list[np.ndarray | None] = []
    for path in paths:
        image = cv2.imread(str(root / path), cv2.IMREAD_COLOR)
        if image is None and path not in _warned:
            _warned.add(path)
            logger.warning("cannot read frame %s; using the nearest readable frame of its tracklet", root / path)
        images.append(image)
    readable = [i for i, image in enumerate(images) if image is not None]
    if not readable:
        raise FrameReadError(f"none of the {len(paths)} frames could be read, e.g. {root / paths[0]}")
    nearest = np.array(readable)
    return [image if image is not None else images[int(nearest[np.abs(nearest - i).argmin()])]  # type: ignore[misc]
            for i, image in enumerate(images)]


@dataclass
class TrainBatch:
    frames: torch.Tensor  # (B, T, 3, H, W)
    keypoints: torch.Tensor  # (B, T, 17, 3)
    labels: torch.Tensor  # (B,) training labels 0..C-1
    cameras: torch.Tensor  # (B,)
    erased: torch.Tensor  # (B, T) bool

    def to(self, device: torch.device | str) -> TrainBatch:
        return TrainBatch(*(getattr(self, name).to(device, non_blocking=True)
                            for name in ("frames", "keypoints", "labels", "cameras", "erased")))


class TrainClips(Dataset[tuple[torch.Tensor, ...]]):
    """Restricted-random clips of training tracklets, augmented; item = :class:`SampledItem`."""

    def __init__(self, root: str | os.PathLike[str], tracklets: Sequence[VideoTracklet], labels: Sequence[int],
                 keypoints: KeypointSource, transform: ClipTransform, clip_length: int) -> None:
        if len(labels) != len(tracklets):
            raise ValueError(f"{len(labels)} labels for {len(tracklets)} tracklets")
        self.root, self.tracklets, self.labels = Path(root), list(tracklets), list(labels)
        self.keypoints, self.transform, self.clip_length = keypoints, transform, clip_length

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, item: SampledItem) -> tuple[torch.Tensor, ...]:
        tracklet = self.tracklets[item.index]
        rng = np.random.default_rng(item.seed)
        chosen = restricted_random_clip(len(tracklet.paths), self.clip_length, rng)
        paths = [tracklet.paths[i] for i in chosen]
        images = _read_frames(self.root, paths)
        points = self.keypoints.get(paths, [image.shape[:2] for image in images])
        clip = self.transform(images, points, rng)
        return (torch.from_numpy(clip.frames), torch.from_numpy(clip.keypoints),
                torch.tensor(self.labels[item.index]), torch.tensor(tracklet.camera_id), torch.from_numpy(clip.erased))


def collate_train(items: Sequence[tuple[torch.Tensor, ...]]) -> TrainBatch:
    return TrainBatch(*(torch.stack(column) for column in zip(*items)))


@dataclass
class TestBatch:
    __test__ = False  # not a pytest class

    frames: torch.Tensor  # (C, T, 3, H, W): the clips of several tracklets, concatenated
    keypoints: torch.Tensor  # (C, T, 17, 3)
    cameras: torch.Tensor  # (C,) each clip's tracklet camera
    clip_counts: list[int]  # clips per tracklet, in order


class TestClips(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """All (dense) clips of each tracklet; item = tracklet index."""

    __test__ = False  # not a pytest class

    def __init__(self, root: str | os.PathLike[str], tracklets: Sequence[VideoTracklet], keypoints: KeypointSource,
                 transform: ClipTransform, clip_length: int, max_clips: int | None = None) -> None:
        self.root, self.tracklets = Path(root), list(tracklets)
        self.keypoints, self.transform = keypoints, transform
        self.clip_length, self.max_clips = clip_length, max_clips
        self.clip_counts = [len(dense_clips(len(t.paths), clip_length, max_clips)) for t in self.tracklets]

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        tracklet = self.tracklets[index]
        used, where = dense_frame_selection(len(tracklet.paths), self.clip_length, self.max_clips)
        paths = [tracklet.paths[i] for i in used]
        images = _read_frames(self.root, paths)
        points = self.keypoints.get(paths, [image.shape[:2] for image in images])
        return dense_clip_tensors(images, points, where, tracklet.camera_id, self.transform)


def dense_frame_selection(num_frames: int, clip_length: int, max_clips: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The test-time clips of a tracklet (:func:`~keyreid_stream.data.sampling.dense_clips`) as the frames they
    use, ``used`` (sorted, unique), and ``where`` ``(num_clips, clip_length)``: each clip slot's position in
    ``used``. Only the ``used`` frames need to be read or kept."""
    clips = dense_clips(num_frames, clip_length, max_clips)
    used = np.unique(clips)
    return used, np.searchsorted(used, clips)


def dense_clip_tensors(images: Sequence[np.ndarray], keypoints: np.ndarray, where: np.ndarray, camera_id: int,
                       transform: ClipTransform) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The clips of one tracklet, ready for the model: ``images``/``keypoints`` are its ``used`` frames (see
    :func:`dense_frame_selection`), in their own pixels. Returns frames ``(C, T, 3, H, W)``, keypoints
    ``(C, T, 17, 3)`` and the camera id per clip ``(C,)``. Evaluation and the camera worker both call this."""
    clip = transform(images, keypoints)
    cameras = torch.full((len(where),), camera_id, dtype=torch.long)
    return torch.from_numpy(clip.frames[where]), torch.from_numpy(clip.keypoints[where]), cameras


def collate_test(items: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> TestBatch:
    frames, keypoints, cameras = zip(*items)
    return TestBatch(torch.cat(frames), torch.cat(keypoints), torch.cat(cameras), [len(c) for c in cameras])
