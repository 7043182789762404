"""Dense clips through the model: every clip of a batch of tracklets, ``batch_clips`` clips per forward pass,
under autocast in ``amp_dtype`` when one is given; descriptors in float32. Evaluation and the camera worker share
this, so a worker's descriptor equals the one evaluation computes for the same frames and keypoints."""

from __future__ import annotations

import torch

from keyreid_stream.data.video import TestBatch

__all__ = ["embed_clips", "mean_per_tracklet"]


def embed_clips(model: torch.nn.Module, batch: TestBatch, device: torch.device, batch_clips: int,
                amp_dtype: torch.dtype | None = None) -> torch.Tensor:
    """``(C, D)`` float32 descriptors of every clip of ``batch``, ``batch_clips`` clips per forward pass. The model
    must be in eval mode; call under ``torch.no_grad()``. Evaluation and the camera worker share this."""
    needs_keypoints = bool(getattr(model, "needs_keypoints", True))
    outputs = []
    for start in range(0, len(batch.frames), batch_clips):
        frames = batch.frames[start:start + batch_clips].to(device, non_blocking=True)
        keypoints = batch.keypoints[start:start + batch_clips].to(device) if needs_keypoints else None
        cameras = batch.cameras[start:start + batch_clips].to(device)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            outputs.append(model(frames, keypoints, cameras).descriptor.float())
    return torch.cat(outputs)


def mean_per_tracklet(clip_descriptors: torch.Tensor, clip_counts: list[int]) -> list[torch.Tensor]:
    """The tracklet descriptor is the mean over its clips (as in the papers' test protocol)."""
    parts = clip_descriptors.split(clip_counts)  # type: ignore[no-untyped-call]  # unannotated in torch
    return [clips.mean(dim=0).cpu() for clips in parts]
