"""RAPA: reference-aided part-aligned feature disentangling for video person re-identification.

Paper: G. Zhang, Y. Chen, Y. Dai, Y. Zheng, Y. Wu, "Reference-Aided Part-Aligned Feature Disentangling for Video
Person Re-Identification", ICME 2021. The authors published no code; this follows the text. A clip of T frames
goes through a ResNet-50 (:mod:`.resnet`), giving a map ``F_t`` (C x h x w) per frame, then three modules:

* **GFE**, global feature extracting: GAP per frame, temporal attention over the T frames (Gao et al. 2018, as the
  paper says), a 1x1 convolution reducing C to C/s: ``f_global``.
* **RFL**, pose-based reference feature learning (eq. 2): frame quality ``q_t = sigmoid(BN(conv(GAP(F_t))))``;
  the reference frame is ``k = argmax q``; its keypoints split the body into head, body and legs
  (:mod:`keyreid_stream.keypoints.regions`), and max and average ROI pooling of ``F_k`` over each region give six
  reference features ``r_p^m, r_p^a``.
* **PFD**, relation-based part feature disentangling (eqs. 3-7): for each reference ``r`` and frame ``t``,
  ``A = 1 - sigmoid(BN((F_t - r)^2))``, ``f_t = GMP(F_t * A)``, the temporal channel attention
  ``S_t = mean_hw(A)`` and ``f~ = sum_t f_t * S_t``; per part ``[f~^m, f~^a]`` is reduced to C/s: ``f_p``.

The inter-frame regularisation (eq. 8) of each clip is ``sum_{i != j} sum_p ||f_{p,i} - f_{p,j}||^2`` over both
poolings, returned as ``inter_frame``; :class:`~keyreid_stream.model.losses.ReIDLoss` adds the per-branch triplet
and softmax losses (eqs. 9-13). The descriptor is ``[f_global, f_head, f_body, f_legs]`` (eq. 1), each after its
BNNeck. Ablation switches (Table 1): ``local_branch=False`` + ``global_reduction=False`` is the baseline (a),
``temporal_channel_attention=False`` removes TA, ``part_split="stripes"`` removes PE (three equal stripes),
``reference="first"`` removes QE (the first frame is the reference); Reg is the loss weight ``inter_frame_weight``.

Where the paper is silent (docs/model.md lists these): the quality block learns through a straight-through
estimator (the arg max has no gradient: the forward uses the one-hot selection, the backward that of the scores);
the reduction is a 1x1 convolution (a linear map on the pooled vector) with batch norm, s = 2; each branch ends
in a BNNeck; the relation map has one batch norm per reference feature; ResNet-50 runs with a last stride of 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import nn

from keyreid_stream.keypoints.regions import NUM_REGIONS, cell_masks, region_boxes, stripe_boxes
from keyreid_stream.model.heads import (
    BNNeckHead,
    FeatureDims,
    ReIDOutput,
    TemporalAttention,
    check_clip_inputs,
)
from keyreid_stream.model.registry import register_model
from keyreid_stream.model.resnet import ReIDResNet

__all__ = ["RAPA", "QualityEvaluation", "RelationAttention", "convert_imagenet_state_dict",
           "inter_frame_regularisation", "reference_weights", "roi_pool"]


# ----------------------------------------------------------------------------------------------- blocks


class QualityEvaluation(nn.Module):
    """Eq. 2: frame quality ``(B, T)`` in (0, 1) from the frames' pooled features ``(B, T, C)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Linear(dim, 1, bias=False)  # a 1x1 convolution on the pooled vector (BN follows: no bias)
        self.norm = nn.BatchNorm1d(1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = pooled.shape
        return torch.sigmoid(self.norm(self.conv(pooled.reshape(batch * frames, dim)))).reshape(batch, frames)


def reference_weights(quality: torch.Tensor) -> torch.Tensor:
    """One-hot ``(B, T)`` of the best frame (the first on ties); while ``quality`` needs a gradient, the
    straight-through estimator ``onehot + q - stop_gradient(q)``: the same values, the scores' gradient."""
    hard = F.one_hot(quality.argmax(dim=1), quality.shape[1]).to(quality.dtype)
    return hard + quality - quality.detach() if quality.requires_grad else hard


def roi_pool(maps: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Max and average ROI pooling of ``maps`` ``(B, C, h, w)`` over ``masks`` ``(B, R, h, w)`` (no empty mask):
    two ``(B, R, C)`` tensors."""
    inside = masks.unsqueeze(2)
    peak = maps.unsqueeze(1).masked_fill(~inside, float("-inf")).amax(dim=(-2, -1))
    weights = masks.to(maps.dtype)
    total = torch.einsum("bchw,brhw->brc", maps, weights)
    return peak, total / weights.sum(dim=(-2, -1)).clamp(min=1.0).unsqueeze(-1)


class RelationAttention(nn.Module):
    """PFD, eqs. 3-7: the frames' part features ``(B, T, R, C)`` and the clip's ``(B, R, C)`` for R references.

    One batch norm per reference and channel (a BatchNorm2d over R x C channels) normalises the squared
    differences; ``temporal=False`` (no TA) averages the frames instead of weighting them with ``mean_hw(A)``.
    """

    def __init__(self, dim: int, num_references: int, temporal: bool = True) -> None:
        super().__init__()
        self.num_references, self.temporal = num_references, temporal
        self.norm = nn.BatchNorm2d(num_references * dim)

    def attention(self, maps: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
        """``A`` of eq. 4: ``(B, T, R, C, h, w)`` in (0, 1) from maps ``(B, T, C, h, w)`` and ``(B, R, C)``."""
        batch, frames, dim, height, width = maps.shape
        relation = (maps.unsqueeze(2) - references[:, None, :, :, None, None]).square()
        normed = self.norm(relation.reshape(batch * frames, self.num_references * dim, height, width))
        return 1.0 - torch.sigmoid(normed).reshape(batch, frames, self.num_references, dim, height, width)

    def forward(self, maps: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attention = self.attention(maps, references)
        frame_feats = (maps.unsqueeze(2) * attention).amax(dim=(-2, -1))  # eq. 5, GMP
        if not self.temporal:
            return frame_feats, frame_feats.mean(dim=1)
        scores = attention.mean(dim=(-2, -1))  # eq. 6
        return frame_feats, (frame_feats * scores).sum(dim=1)  # eq. 7


def inter_frame_regularisation(frame_feats: torch.Tensor) -> torch.Tensor:
    """Eq. 8 per clip, ``(B,)``: squared distances between the part features of every ordered pair of frames
    ``(i, j), i != j``, summed over parts and poolings; ``frame_feats`` is ``(B, T, R, C)``."""
    differences = frame_feats.unsqueeze(1) - frame_feats.unsqueeze(2)  # (B, T, T, R, C); i == j gives 0
    return differences.square().sum(dim=(1, 2, 3, 4))


class Reduction(nn.Sequential):
    """The paper's 1x1 convolution on a pooled vector (a linear map), followed by batch norm."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__(nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim))
        # nn.Sequential's stubs type an item as Module; the first is the Linear above
        nn.init.kaiming_normal_(cast(nn.Linear, self[0]).weight, mode="fan_out")


# ----------------------------------------------------------------------------------------------- model


class RAPA(nn.Module):
    """RAPA. Inputs: frames ``(B, T, 3, H, W)``, keypoints ``(B, T, 17, 3)`` in pixels of the frames (needed
    with ``part_split="pose"``); camera ids are accepted and ignored (the model has no camera embedding)."""

    num_parts = NUM_REGIONS

    def __init__(
        self,
        *,
        num_classes: int,
        num_cameras: int,
        img_size: tuple[int, int] = (256, 128),
        num_frames: int = 4,
        block: Literal["bottleneck", "basic"] = "bottleneck",
        layers: Sequence[int] = (3, 4, 6, 3),
        channels: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        stem_pool: bool = True,
        last_stride: int = 1,
        feature_dim: int = 1024,
        attention_dim: int = 256,
        global_branch: bool = True,
        local_branch: bool = True,
        global_reduction: bool = True,
        temporal_channel_attention: bool = True,
        part_split: Literal["pose", "stripes"] = "pose",
        reference: Literal["quality", "first"] = "quality",
        roi_margin: float = 0.1,
    ) -> None:
        super().__init__()
        self._check_options(num_cameras, global_branch, local_branch, part_split, reference, num_frames, feature_dim)
        self.backbone = ReIDResNet(block=block, layers=layers, channels=channels, stem_width=stem_width,
                                   last_stride=last_stride, stem_pool=stem_pool)
        self.img_size, self.num_frames = (int(img_size[0]), int(img_size[1])), num_frames
        self.grid = self._grid(self.img_size, self.backbone.stride)
        self.use_global, self.use_local = global_branch, local_branch
        self.part_split, self.reference_mode, self.roi_margin = part_split, reference, roi_margin
        dim = self.backbone.out_channels
        self.global_dim = feature_dim if global_reduction else dim
        self.feature_dim = feature_dim
        if global_branch:
            self.temporal_attention = TemporalAttention(dim, attention_dim)
            self.global_reduction = Reduction(dim, feature_dim) if global_reduction else None
            self.global_head = BNNeckHead(self.global_dim, num_classes)
        if local_branch:
            self.quality = QualityEvaluation(dim) if reference == "quality" else None
            self.relation = RelationAttention(dim, 2 * NUM_REGIONS, temporal=temporal_channel_attention)
            self.part_reductions = nn.ModuleList(Reduction(2 * dim, feature_dim) for _ in range(NUM_REGIONS))
            self.part_heads = nn.ModuleList(BNNeckHead(feature_dim, num_classes) for _ in range(NUM_REGIONS))

    @staticmethod
    def _check_options(num_cameras: int, use_global: bool, use_local: bool, part_split: str, reference: str,
                       num_frames: int, feature_dim: int) -> None:
        if num_cameras:
            raise ValueError("RAPA has no camera embedding: build it with num_cameras=0 "
                             "(in a training config, model.camera_embedding: false)")
        if not (use_global or use_local):
            raise ValueError("at least one of global_branch and local_branch must be enabled")
        if part_split not in ("pose", "stripes"):
            raise ValueError(f"part_split must be 'pose' or 'stripes', got {part_split!r}")
        if reference not in ("quality", "first"):
            raise ValueError(f"reference must be 'quality' or 'first', got {reference!r}")
        if num_frames < 1 or feature_dim < 1:
            raise ValueError("num_frames and feature_dim must be >= 1")

    @staticmethod
    def _grid(img_size: tuple[int, int], stride: int) -> tuple[int, int]:
        height, width = img_size
        if height % stride or width % stride or height // stride < NUM_REGIONS:
            raise ValueError(f"img_size {height}x{width} must be a multiple of the backbone stride {stride} with at "
                             f"least {NUM_REGIONS} rows of cells (head, body, legs)")
        return height // stride, width // stride

    @property
    def descriptor_dim(self) -> int:
        return (self.global_dim if self.use_global else 0) + (NUM_REGIONS * self.feature_dim if self.use_local else 0)

    @property
    def needs_keypoints(self) -> bool:
        return self.use_local and self.part_split == "pose"

    @property
    def feature_dims(self) -> FeatureDims:
        return FeatureDims(self.global_dim if self.use_global else None,
                           self.feature_dim if self.use_local else None, NUM_REGIONS if self.use_local else 0)

    # -- forward ------------------------------------------------------------------------------------------

    def forward_features(self, frames: torch.Tensor) -> torch.Tensor:
        """Backbone maps of every frame: ``(B, T, 3, H, W) -> (B, T, C, h, w)``."""
        maps = self.backbone(frames.flatten(0, 1))
        result: torch.Tensor = maps.reshape(*frames.shape[:2], *maps.shape[1:])
        return result

    def forward_head(self, maps: torch.Tensor, keypoints: torch.Tensor | None = None) -> ReIDOutput:
        """GFE, RFL and PFD on backbone maps ``(B, T, C, h, w)``, with the frames' keypoints ``(B, T, 17, 3)``."""
        pooled = maps.mean(dim=(-2, -1))  # l_t
        descriptor: list[torch.Tensor] = []
        global_feat = global_logits = scores = part_feats = part_logits = inter_frame = None
        if self.use_global:
            global_feat, scores = self.temporal_attention(pooled)
            if self.global_reduction is not None:
                global_feat = self.global_reduction(global_feat)
            normed, global_logits = self.global_head(global_feat)
            descriptor.append(normed)
        if self.use_local:
            frame_feats, part_feats = self._parts(maps, pooled, keypoints)
            inter_frame = inter_frame_regularisation(frame_feats)
            heads = [head(part_feats[:, p]) for p, head in enumerate(self.part_heads)]
            descriptor.extend(normed for normed, _ in heads)
            if heads[0][1] is not None:
                part_logits = torch.stack([logits for _, logits in heads], dim=1)
        return ReIDOutput(torch.cat(descriptor, dim=1), global_feat, global_logits, part_feats, part_logits, scores,
                          inter_frame)

    def forward(self, frames: torch.Tensor, keypoints: torch.Tensor | None = None,
                camera_ids: torch.Tensor | None = None, *, heatmaps: torch.Tensor | None = None) -> ReIDOutput:
        self._check_inputs(frames, keypoints, camera_ids, heatmaps)
        return self.forward_head(self.forward_features(frames), keypoints)

    def embed(self, frames: torch.Tensor, keypoints: torch.Tensor | None = None,
              camera_ids: torch.Tensor | None = None, *, heatmaps: torch.Tensor | None = None) -> torch.Tensor:
        """The inference descriptor ``(B, descriptor_dim)``; call ``model.eval()`` first."""
        return self.forward(frames, keypoints, camera_ids, heatmaps=heatmaps).descriptor

    def reference(self, pooled: torch.Tensor, keypoints: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """RFL's choice: reference weights ``(B, T)`` (one-hot; see :func:`reference_weights`) and the head, body
        and legs boxes ``(B, 3, 4)`` (x0, y0, x1, y1 pixels) of the reference frame."""
        batch, frames = pooled.shape[:2]
        if self.quality is not None:
            weights = reference_weights(self.quality(pooled))
        else:
            weights = F.one_hot(torch.zeros(batch, dtype=torch.long, device=pooled.device), frames).to(pooled.dtype)
        height, width = self.img_size
        if self.part_split == "stripes":
            return weights, stripe_boxes((batch,), height, width, device=pooled.device)
        assert keypoints is not None  # _check_inputs requires them
        chosen = keypoints[torch.arange(batch, device=keypoints.device), weights.detach().argmax(dim=1)]
        stride = float(self.backbone.stride)
        return weights, region_boxes(chosen, height, width, margin=self.roi_margin, min_size=(stride, stride))

    def references(self, maps: torch.Tensor, pooled: torch.Tensor, keypoints: torch.Tensor | None) -> torch.Tensor:
        """RFL: the six reference features ``(B, 6, C)``: head max, head average, body max, ..., legs average."""
        weights, boxes = self.reference(pooled, keypoints)
        reference_map = torch.einsum("bt,btchw->bchw", weights.to(maps.dtype), maps)  # F_k (exact: one-hot)
        stride = float(self.backbone.stride)
        peak, mean = roi_pool(reference_map, cell_masks(boxes.to(torch.float32), self.grid, (stride, stride)))
        return torch.stack([peak, mean], dim=2).flatten(1, 2)

    @torch.no_grad()
    def part_attention(self, frames: torch.Tensor, keypoints: torch.Tensor | None = None) -> torch.Tensor:
        """Where each part looks: PFD's attention ``A`` averaged over channels and the two poolings,
        ``(B, T, 3, h, w)`` in (0, 1), for figures. Call ``model.eval()`` first."""
        if not self.use_local:
            raise ValueError("this RAPA variant has no local branch, hence no part attention")
        self._check_inputs(frames, keypoints, None, None)
        maps = self.forward_features(frames)
        attention = self.relation.attention(maps, self.references(maps, maps.mean(dim=(-2, -1)), keypoints))
        batch, count, _, _, height, width = attention.shape
        return attention.mean(dim=3).reshape(batch, count, NUM_REGIONS, 2, height, width).mean(dim=3)

    def _parts(self, maps: torch.Tensor, pooled: torch.Tensor,
               keypoints: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        frame_feats, clip_feats = self.relation(maps, self.references(maps, pooled, keypoints))
        halves = clip_feats.reshape(clip_feats.shape[0], NUM_REGIONS, -1)  # [f~^m, f~^a] per part
        part_feats = torch.stack([reduce(halves[:, p]) for p, reduce in enumerate(self.part_reductions)], dim=1)
        return frame_feats, part_feats

    def _check_inputs(self, frames: torch.Tensor, keypoints: torch.Tensor | None, camera_ids: torch.Tensor | None,
                      heatmaps: torch.Tensor | None) -> None:
        if heatmaps is not None:
            raise ValueError("RAPA splits the reference frame with keypoints; pass keypoints, not heatmaps")
        check_clip_inputs(frames, keypoints, camera_ids, img_size=self.img_size, num_frames=self.num_frames)
        if self.needs_keypoints and keypoints is None:
            raise ValueError("RAPA's pose-based parts need keypoints; without a pose model use the keypoint prior "
                             "(or part_split='stripes')")

    # -- checkpoints ----------------------------------------------------------------------------------------

    def imagenet_state_dict(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        return convert_imagenet_state_dict(state, self)


# ----------------------------------------------------------------------------------------------- checkpoints


def convert_imagenet_state_dict(state: Mapping[str, torch.Tensor],
                                model: RAPA) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A timm or torchvision ResNet state dict (ImageNet) -> (our keys, keys deliberately dropped: the classifier
    ``fc``). Everything else must be a backbone entry; the heads stay at their initial values."""
    own = set(model.backbone.state_dict())
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for raw_key, value in state.items():
        key = raw_key.removeprefix("module.")
        if key in own:
            converted[f"backbone.{key}"] = value
        elif key.startswith("fc."):
            dropped.append(key)
        else:
            raise ValueError(f"{key} is not an entry of this ResNet backbone (is the file a ResNet-50?)")
    if not converted:
        raise ValueError("the file holds no ResNet weights")
    return converted, dropped


# ----------------------------------------------------------------------------------------------- variants

_RESNET50 = dict(img_size=(256, 128), num_frames=4, block="bottleneck", layers=(3, 4, 6, 3),
                 channels=(64, 128, 256, 512), stem_width=64, stem_pool=True, last_stride=1, feature_dim=1024,
                 attention_dim=256)
_TINY: dict[str, Any] = dict(img_size=(64, 32), num_frames=4, block="basic", layers=(1, 1, 1, 1), channels=(8, 16, 32, 64),
             stem_width=8, stem_pool=False, last_stride=1, feature_dim=32, attention_dim=16)

register_model("rapa_resnet50", RAPA, "RAPA (Zhang et al., ICME 2021): ResNet-50 at 256x128, head/body/legs from "
               "the reference frame's keypoints, T=4", timm_weights="resnet50.tv_in1k", **_RESNET50)
register_model("rapa_test", RAPA, "tiny RAPA (same code path) for tests: 64x32, one basic block per stage, width 64",
               **_TINY)
