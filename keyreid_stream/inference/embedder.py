"""Tracklet descriptors in the camera worker: the evaluation code path on in-memory crops.

A worker tracklet becomes dense T-frame clips exactly as a test tracklet does in evaluation
(:func:`~keyreid_stream.data.video.dense_frame_selection` and :func:`~keyreid_stream.data.video.dense_clip_tensors`
with the test :class:`~keyreid_stream.data.transforms.ClipTransform`), the clips of many tracklets, from any
number of cameras, go through the model together (:func:`~keyreid_stream.inference.clips.embed_clips`), and the
descriptor is the mean over a tracklet's clips (:func:`~keyreid_stream.inference.clips.mean_per_tracklet`). So a
descriptor computed by a worker equals the one evaluation computes for the same frames and keypoints.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from keyreid_stream.contracts import Tracklet
from keyreid_stream.data.transforms import ClipTransform
from keyreid_stream.data.video import collate_test, dense_clip_tensors, dense_frame_selection
from keyreid_stream.inference.clips import embed_clips, mean_per_tracklet
from keyreid_stream.inference.device import resolve_amp, resolve_device
from keyreid_stream.inference.loading import EmbeddingModel

__all__ = ["TrackletEmbedder", "crop_keypoints", "input_normalisation"]

logger = logging.getLogger(__name__)

def input_normalisation(model: torch.nn.Module, mean: Sequence[float] | None,
                        std: Sequence[float] | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The crops' normalisation: the one given, else the one the checkpoint was trained with (``train`` records
    it), else 0.5 / 0.5. A given one that differs from the checkpoint's is used, with a warning."""
    extra = getattr(model, "checkpoint_extra", {}) or {}
    trained = {"mean": extra.get("input_mean"), "std": extra.get("input_std")}
    chosen: dict[str, tuple[float, ...]] = {}
    for name, given in (("mean", mean), ("std", std)):
        recorded = trained[name]
        if given is not None and recorded is not None and not np.allclose(given, recorded):
            logger.warning("embedding.%s %s differs from the %s %s the model was trained with; descriptors will "
                           "be off (leave embedding.%s unset to use the checkpoint's)", name, list(given), name,
                           list(recorded), name)
        value = given if given is not None else recorded if recorded is not None else (0.5, 0.5, 0.5)
        chosen[name] = tuple(float(v) for v in value)
    return chosen["mean"], chosen["std"]


def crop_keypoints(tracklet: Tracklet) -> np.ndarray:
    """``(T, 17, 3)`` keypoints in the pixels of each observation's crop (the crop is the clipped box, possibly
    downscaled); unknown joints stay zero."""
    if tracklet.crops is None:
        raise ValueError("the tracklet has no crops")
    origins = tracklet.boxes[:, None, :2]
    sizes = np.maximum(tracklet.boxes[:, 2:] - tracklet.boxes[:, :2], 1.0)
    crop_sizes = np.array([(crop.shape[1], crop.shape[0]) for crop in tracklet.crops], np.float32)
    scale = (crop_sizes / sizes)[:, None, :]
    points = tracklet.keypoints.copy()
    seen = points[..., 2:] > 0
    points[..., :2] = np.where(seen, (points[..., :2] - origins) * scale, 0.0)
    result: np.ndarray = points
    return result


class TrackletEmbedder:
    """Descriptors of worker tracklets (with crops), batched across tracklets and cameras."""

    def __init__(self, loaded: EmbeddingModel, *, device: str = "auto", amp: str = "auto", batch_clips: int = 64,
                 max_clips: int = 8, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 camera_indices: Mapping[str, int] | None = None) -> None:
        self.device = resolve_device(device)
        self.model = loaded.model.to(self.device).eval()
        self.model_name, self.model_version = loaded.name, loaded.version
        self.amp_dtype = resolve_amp(amp, self.device)
        self.batch_clips, self.max_clips = batch_clips, max_clips
        self.clip_length = int(getattr(self.model, "num_frames", 4))
        self.mean, self.std = input_normalisation(self.model, mean, std)
        img_size: Any = self.model.img_size  # registry models carry img_size (nn.Module types it Tensor | Module)
        self.transform = ClipTransform(tuple(img_size), train=False, mean=self.mean, std=self.std)
        self.camera_indices = dict(camera_indices or {})
        self._check_camera_indices()
        logger.info("embedding: %s (%s) on %s, %d-frame clips, descriptor %d", self.model_name, self.model_version,
                    self.device, self.clip_length, self.descriptor_dim)

    @property
    def descriptor_dim(self) -> int:
        dim: Any = self.model.descriptor_dim  # a registry model's attribute
        return int(dim)

    def _check_camera_indices(self) -> None:
        cameras = int(getattr(getattr(self.model, "backbone", None), "num_cameras", 0) or 0)
        for camera_id, index in self.camera_indices.items():
            if cameras and not 0 <= index < cameras:
                raise ValueError(f"camera {camera_id}: camera_index {index} is outside the model's "
                                 f"{cameras} camera embeddings")

    @torch.no_grad()
    def embed(self, tracklets: Sequence[Tracklet]) -> np.ndarray:
        """``(N, D)`` float32 descriptors (rows of NaN where the model produced non-finite values)."""
        if not tracklets:
            return np.zeros((0, self.descriptor_dim), np.float32)
        items = [self._clips(tracklet) for tracklet in tracklets]
        batch = collate_test(items)
        clip_descriptors = embed_clips(self.model, batch, self.device, self.batch_clips, self.amp_dtype)
        return torch.stack(mean_per_tracklet(clip_descriptors, batch.clip_counts)).numpy().astype(np.float32)

    def _clips(self, tracklet: Tracklet) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if tracklet.crops is None:
            raise ValueError(f"tracklet {tracklet.camera_id}/{tracklet.track_id} has no crops to embed")
        used, where = dense_frame_selection(len(tracklet), self.clip_length, self.max_clips)
        crops = [tracklet.crops[i] for i in used]
        keypoints = crop_keypoints(tracklet)[used]
        camera = self.camera_indices.get(tracklet.camera_id, 0)
        return dense_clip_tensors(crops, keypoints, where, camera, self.transform)
