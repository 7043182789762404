"""What every re-ID architecture here shares: its output type, its feature sizes, temporal attention, BNNeck.

* :class:`ReIDOutput` -- one forward pass of any model (KeyRe-ID, VID-Trans-ReID, RAPA): the inference descriptor
  and what the losses of :mod:`.losses` read. A model fills the fields of the branches it has.
* :class:`FeatureDims` -- the sizes the loss needs to build its centres (``model.feature_dims``).
* :class:`TemporalAttention` -- frame weights from per-frame features (Gao et al. 2018, "Revisiting Temporal
  Modeling for Video-based Person ReID"; the global branch of KeyRe-ID / VID-Trans-ReID and RAPA's GFE module).
* :class:`BNNeckHead` -- BatchNorm1d with a frozen bias, then a bias-free classifier (Luo et al. 2019, "Bag of
  Tricks and A Strong Baseline for Deep Person Re-identification").
* :func:`check_clip_inputs` -- the input checks every model makes (frames, keypoints, camera ids).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from keyreid_stream.model.backbone import is_eager

__all__ = ["BNNeckHead", "FeatureDims", "ReIDOutput", "TemporalAttention", "check_clip_inputs"]


@dataclass(frozen=True)
class ReIDOutput:
    """Everything one forward pass produces (fields of a branch the model lacks are None).

    ``descriptor`` (B, D) is what inference compares; the rest feeds the losses: pre-BN features for the triplet
    and centre losses, logits for the identity loss, raw temporal attention scores for the erasing penalty, and
    ``inter_frame`` (B,), RAPA's inter-frame regularisation term of each clip (eq. 8).
    """

    descriptor: torch.Tensor
    global_feat: torch.Tensor | None
    global_logits: torch.Tensor | None
    part_feats: torch.Tensor | None  # (B, K, Dp)
    part_logits: torch.Tensor | None  # (B, K, C)
    attention_scores: torch.Tensor | None  # (B, T), before the softmax
    inter_frame: torch.Tensor | None = None  # (B,)


@dataclass(frozen=True)
class FeatureDims:
    """Sizes of a model's training features: ``global_dim`` / ``part_dim`` (None without that branch) and the
    number of parts."""

    global_dim: int | None
    part_dim: int | None
    num_parts: int


class TemporalAttention(nn.Module):
    """Frame weights from the frame features: 1x1 conv + ReLU, temporal conv (k=3) + ReLU, softmax over T."""

    def __init__(self, dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.frame_conv = nn.Conv2d(dim, hidden, kernel_size=1)
        self.temporal_conv = nn.Conv1d(hidden, 1, kernel_size=3, padding=1)
        for conv in (self.frame_conv, self.temporal_conv):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            assert conv.bias is not None  # built with bias=True
            nn.init.zeros_(conv.bias)

    def forward(self, frame_feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, D)`` -> (weighted sum ``(B, D)``, raw scores ``(B, T)``)."""
        hidden = F.relu(F.linear(frame_feats, self.frame_conv.weight.flatten(1), self.frame_conv.bias))
        scores = F.relu(self.temporal_conv(hidden.transpose(1, 2))).squeeze(1)
        weights = scores.softmax(dim=1)
        return torch.einsum("bt,btd->bd", weights, frame_feats), scores


class BNNeckHead(nn.Module):
    """BatchNorm1d with a frozen bias, then a bias-free classifier (std 0.001); no classifier when num_classes=0."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier: nn.Linear | None = None
        if num_classes > 0:
            self.classifier = nn.Linear(dim, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        normed = self.bnneck(feat)
        return normed, None if self.classifier is None else self.classifier(normed)


def check_clip_inputs(frames: torch.Tensor, keypoints: torch.Tensor | None, camera_ids: torch.Tensor | None, *,
                      img_size: tuple[int, int], num_frames: int) -> tuple[int, int]:
    """(B, T) of frames ``(B, T, 3, H, W)`` with keypoints ``(B, T, 17, 3)`` and camera ids ``(B,)`` (both
    optional); a ValueError names what is wrong. Frames must be finite (not checked while tracing)."""
    if frames.dim() != 5 or frames.shape[2] != 3 or tuple(frames.shape[3:]) != tuple(img_size):
        raise ValueError(f"frames must be (B, T, 3, {img_size[0]}, {img_size[1]}), got {tuple(frames.shape)}")
    batch, count = frames.shape[:2]
    if count != num_frames:
        raise ValueError(f"this model is built for clips of {num_frames} frames, got {count}")
    if keypoints is not None and tuple(keypoints.shape) != (batch, count, 17, 3):
        raise ValueError(f"keypoints must be ({batch}, {count}, 17, 3), got {tuple(keypoints.shape)}")
    if camera_ids is not None and tuple(camera_ids.shape) != (batch,):
        raise ValueError(f"camera_ids must be ({batch},), got {tuple(camera_ids.shape)}")
    if is_eager() and not torch.isfinite(frames).all():
        raise ValueError("frames contain NaN or infinite values")
    return batch, count
