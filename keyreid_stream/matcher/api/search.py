"""Search by image crop: embed a person crop with the camera workers' re-ID model, as a one-frame tracklet.

A crop becomes a tracklet of one observation whose box is the whole crop and whose keypoints are the average
pedestrian layout (:class:`~keyreid_stream.keypoints.pose.PriorPose`), and goes through the workers' own
:class:`~keyreid_stream.inference.embedder.TrackletEmbedder`. Its descriptor space is the model's
(:func:`~keyreid_stream.matcher.state.records.descriptor_space`), so it is compared only with descriptors the workers
computed with the same model. Give the matcher the same checkpoint as the workers, or nothing will match.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from keyreid_stream.contracts import Tracklet
from keyreid_stream.inference.embedder import TrackletEmbedder
from keyreid_stream.inference.loading import EmbeddingModel, load_embedding_model
from keyreid_stream.keypoints.pose import PriorPose
from keyreid_stream.matcher.state.records import descriptor_space

__all__ = ["CropEmbedder", "crop_embedder_from_config"]

logger = logging.getLogger(__name__)

QUERY_CAMERA = "query"


class CropEmbedder:
    """``embedder(image_bgr) -> (space, descriptor)`` for a (H, W, 3) uint8 BGR person crop.

    Calls are serialised (one model, many API threads); the descriptor is the model's raw float32 output (the
    search normalises it).
    """

    def __init__(self, loaded: EmbeddingModel, *, device: str = "cpu", max_clips: int = 1) -> None:
        self._embedder = TrackletEmbedder(loaded, device=device, max_clips=max_clips)
        self._pose = PriorPose()
        self._lock = threading.Lock()
        self.space = descriptor_space(loaded.name, loaded.version, self._embedder.descriptor_dim)

    def tracklet(self, image_bgr: np.ndarray) -> Tracklet:
        """The crop as a one-observation tracklet: box = the whole crop, keypoints = the prior layout."""
        image = np.ascontiguousarray(image_bgr)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
            raise ValueError(f"expected a (H, W, 3) uint8 BGR image, got {image.dtype} {image.shape}")
        box = np.array([[0.0, 0.0, image.shape[1], image.shape[0]]], np.float32)
        return Tracklet.create(QUERY_CAMERA, 0, [0], [0.0], box, self._pose.layout(box), crops=[image])

    def __call__(self, image_bgr: np.ndarray) -> tuple[str, np.ndarray]:
        tracklet = self.tracklet(image_bgr)
        with self._lock:
            descriptor = self._embedder.embed([tracklet])[0]
        return self.space, descriptor


def crop_embedder_from_config(arch: str, checkpoint: str, checkpoint_kind: str = "auto", allow_pickle: bool = False,
                              device: str = "cpu") -> CropEmbedder:
    """Load the re-ID model (as the workers do, :func:`load_embedding_model`) for image search."""
    loaded = load_embedding_model(arch, checkpoint, checkpoint_kind=checkpoint_kind, allow_pickle=allow_pickle)
    embedder = CropEmbedder(loaded, device=device)
    logger.info("image search: %s, descriptor space %s", arch, embedder.space)
    return embedder
