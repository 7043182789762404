"""Tracklet descriptors: every dense clip of a tracklet through the model, averaged (as in the papers' test).

Several short tracklets share one forward pass (up to ``batch_clips`` clips); a long one is run in chunks. On a
GPU the pass runs under autocast in ``amp_dtype`` when one is given; descriptors are returned in float32.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from keyreid_stream.data.sampling import clip_batches
from keyreid_stream.data.video import TestClips, collate_test
from keyreid_stream.inference.clips import embed_clips, mean_per_tracklet

__all__ = ["extract_features"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: TestClips, *, device: torch.device | str = "cpu",
                     batch_clips: int = 64, workers: int = 0, amp_dtype: torch.dtype | None = None,
                     progress: Callable[[int], None] | None = None) -> np.ndarray:
    """``(len(dataset), D)`` float32 descriptors, the mean over each tracklet's clips; ``model`` is put in eval
    mode. ``progress(n)`` is called after each group of ``n`` tracklets."""
    device = torch.device(device)
    was_training = model.training
    model.eval()
    groups = clip_batches(dataset.clip_counts, batch_clips)
    loader = DataLoader(dataset, batch_sampler=groups, collate_fn=collate_test, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    features: list[torch.Tensor] = []
    try:
        for batch in loader:
            descriptors = embed_clips(model, batch, device, batch_clips, amp_dtype)
            features.extend(mean_per_tracklet(descriptors, batch.clip_counts))
            if progress is not None:
                progress(len(batch.clip_counts))
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("no tracklets to extract features from")
    result = torch.stack(features).numpy()
    if not np.isfinite(result).all():
        raise FloatingPointError(f"{int((~np.isfinite(result)).any(axis=1).sum())} descriptors are not finite")
    return result
