"""KeyRe-ID and its VID-Trans-ReID baseline.

Paper: J. Kim, J. Song, G. Baek, B. Noh, "KeyRe-ID: Keypoint-Guided Person Re-Identification using Part-Aware
Representation in Videos". Baseline: A. Alsehaim, T. Breckon, "VID-Trans-ReID: Enhanced Video Transformers for
Person Re-identification", BMVC 2022.

A clip of T frames goes through a shared ViT (:mod:`.backbone`). The global branch (eqs. 6-8) runs one more
transformer block, reads each frame's [CLS], weighs the frames with temporal attention (1x1 conv, temporal conv,
softmax over T) and ends in a BNNeck + classifier. The local branch (:mod:`.parts`) concatenates the patch tokens
over time, shifts and shuffles them (TCSS) and, per body part, weights them with the keypoint heatmaps pooled on
the patch grid (KPS) before a shared 3072-wide transformer block; each part has its own BNNeck and classifier.
The inference descriptor is ``[BN(global), BN(part_1)/K, ..., BN(part_K)/K]`` (19,200 dims for ViT-B, T=4).

Switches: ``parts="stripes"`` is VID-Trans-ReID (and the "without KPS" ablation), ``tcss=False``,
``global_branch=False`` and ``local_branch=False`` are the other ablations of Table 3. ``compat="official"``
reproduces the authors' public code (see :mod:`.parts` and the docs) so that their checkpoints give their outputs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import partial
from typing import Any, Literal, cast

import torch
from timm.models.vision_transformer import Block
from torch import nn

from keyreid_stream.keypoints.heatmaps import NUM_PARTS, pool_to_patches, render_patch_weights
from keyreid_stream.model import parts as P
from keyreid_stream.model.backbone import CameraViT, cls_only_block, resize_pos_embed, weighted_cls_block
from keyreid_stream.model.heads import (
    BNNeckHead,
    FeatureDims,
    ReIDOutput,
    TemporalAttention,
    check_clip_inputs,
)
from keyreid_stream.model.registry import register_model

__all__ = ["KeyReID", "check_duplicate_part_block", "convert_official_state_dict"]


# ----------------------------------------------------------------------------------------------- blocks


def _tracing() -> bool:
    """Whether the forward is being traced or compiled (export): then no Python loop over a symbolic batch."""
    # torch's stubs do not re-export (or type) the public torch.jit.is_tracing
    return bool(torch.jit.is_tracing() or  # type: ignore[attr-defined,no-untyped-call]
                torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


# ----------------------------------------------------------------------------------------------- model


class KeyReID(nn.Module):
    """KeyRe-ID / VID-Trans-ReID. Inputs: frames ``(B, T, 3, H, W)``, keypoints ``(B, T, 17, 3)`` in pixels of the
    frames (or part heatmaps ``(B, T, 6, H, W)`` in [0, 1]), camera ids ``(B,)`` (optional)."""

    # Set in __init__ (the blocks only for the enabled branches, tcss_perm by register_buffer); declared here
    # because nn.Module.__getattr__ would type them ``Tensor | Module``.
    img_size: tuple[int, int]
    global_block: Block
    part_block: Block
    tcss_perm: torch.Tensor

    def __init__(
        self,
        *,
        num_classes: int,
        num_cameras: int,
        img_size: tuple[int, int] = (256, 128),
        patch_size: int = 16,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        num_frames: int = 4,
        drop_path_rate: float = 0.1,
        parts: Literal["keypoints", "stripes"] = "keypoints",
        num_parts: int = NUM_PARTS,
        part_heads: int = 12,
        tcss: bool = True,
        tcss_shift: int = 5,
        global_branch: bool = True,
        local_branch: bool = True,
        attention_dim: int = 256,
        camera_mix: float = 0.5,
        compat: Literal["paper", "official"] = "paper",
    ) -> None:
        super().__init__()
        self._check_options(parts, num_parts, global_branch, local_branch, compat, tcss, depth, num_frames)
        self.compat, self.parts, self.num_frames, self.num_parts = compat, parts, num_frames, num_parts
        self.use_global, self.use_local, self.use_tcss = global_branch, local_branch, tcss
        self.backbone = CameraViT(
            img_size=tuple(img_size), patch_size=patch_size, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            mlp_ratio=mlp_ratio, qkv_bias=True, drop_path_rate=drop_path_rate, num_cameras=num_cameras,
            camera_mix=None if compat == "official" else camera_mix,
        )
        # nn.Sequential's stubs type an item as Module; the backbone's blocks are timm Blocks
        last_block, final_norm = cast(Block, self.backbone.blocks[-1]), self.backbone.norm
        self.backbone.blocks = self.backbone.blocks[:-1]
        self.backbone.norm = nn.Identity()
        # typeshed's tuple() forgets the length of a fixed-size tuple
        self.img_size, self.patch_size = cast("tuple[int, int]", tuple(img_size)), patch_size
        self.num_patches = self.backbone.patch_embed.num_patches
        if self.use_global:
            self.global_block, self.global_norm = last_block, final_norm
            self.temporal_attention = TemporalAttention(embed_dim, attention_dim)
            self.global_head = BNNeckHead(embed_dim, num_classes)
        if self.use_local:
            width = num_frames * embed_dim
            self.part_block = Block(width, part_heads, mlp_ratio=mlp_ratio, qkv_bias=True,
                                    norm_layer=partial(nn.LayerNorm, eps=1e-6))  # type: ignore[arg-type]  # timm annotates a class; any factory works
            self.part_norm = nn.LayerNorm(width)
            self.part_heads = nn.ModuleList(BNNeckHead(width, num_classes) for _ in range(num_parts))
            self._check_rows(compat, tcss_shift)
            perm = P.tcss_permutation(self.num_patches, tcss_shift, official=compat == "official")
            if not tcss:
                perm = torch.arange(self.num_patches)
            self.register_buffer("tcss_perm", perm, persistent=False)

    @staticmethod
    def _check_options(parts: str, num_parts: int, use_global: bool, use_local: bool, compat: str, tcss: bool,
                       depth: int, num_frames: int) -> None:
        if parts not in ("keypoints", "stripes"):
            raise ValueError(f"parts must be 'keypoints' or 'stripes', got {parts!r}")
        if compat not in ("paper", "official"):
            raise ValueError(f"compat must be 'paper' or 'official', got {compat!r}")
        if parts == "keypoints" and num_parts != NUM_PARTS:
            raise ValueError(f"keypoint parts are the {NUM_PARTS} of Table 1; num_parts={num_parts} needs parts='stripes'")
        if not (use_global or use_local):
            raise ValueError("at least one of global_branch and local_branch must be enabled")
        if compat == "official" and not tcss:
            raise ValueError("compat='official' always uses TCSS")
        if depth < 2 or num_frames < 1 or num_parts < 1:
            raise ValueError("depth must be >= 2, num_frames >= 1 and num_parts >= 1")

    def _check_rows(self, compat: str, shift: int) -> None:
        if compat == "official" and self.parts == "keypoints" and self.num_patches % 2:
            raise ValueError("the official KPS needs an even number of patches (its TCSS pads odd counts)")
        if self.parts == "stripes" and self.num_patches < self.num_parts:
            raise ValueError(f"{self.num_patches} patches cannot make {self.num_parts} stripes")

    @property
    def descriptor_dim(self) -> int:
        dim = self.backbone.embed_dim if self.use_global else 0
        return dim + (self.num_parts * self.num_frames * self.backbone.embed_dim if self.use_local else 0)

    @property
    def needs_keypoints(self) -> bool:
        return self.use_local and self.parts == "keypoints"

    @property
    def feature_dims(self) -> FeatureDims:
        embed = self.backbone.embed_dim
        return FeatureDims(embed if self.use_global else None, self.num_frames * embed if self.use_local else None,
                           self.num_parts if self.use_local else 0)

    # -- forward ------------------------------------------------------------------------------------------

    def forward(
        self,
        frames: torch.Tensor,
        keypoints: torch.Tensor | None = None,
        camera_ids: torch.Tensor | None = None,
        *,
        heatmaps: torch.Tensor | None = None,
    ) -> ReIDOutput:
        batch, frames_per_clip = self._check_inputs(frames, keypoints, camera_ids, heatmaps)
        frame_cams = None if camera_ids is None else camera_ids.repeat_interleave(frames_per_clip)
        tokens = self.backbone.forward_tokens(frames.flatten(0, 1), frame_cams)
        descriptor: list[torch.Tensor] = []
        global_feat = global_logits = scores = part_feats = part_logits = None
        if self.use_global:
            frame_cls = self.global_norm(cls_only_block(self.global_block, tokens))
            global_feat, scores = self.temporal_attention(frame_cls.reshape(batch, frames_per_clip, -1))
            normed, global_logits = self.global_head(global_feat)
            descriptor.append(normed)
        if self.use_local:
            part_feats = self._local_features(tokens, batch, frames_per_clip, keypoints, heatmaps)
            heads = [head(part_feats[:, k]) for k, head in enumerate(self.part_heads)]
            descriptor.extend(normed / self.num_parts for normed, _ in heads)
            if heads[0][1] is not None:
                part_logits = torch.stack([logits for _, logits in heads], dim=1)
        return ReIDOutput(torch.cat(descriptor, dim=1), global_feat, global_logits, part_feats, part_logits, scores)

    def embed(
        self,
        frames: torch.Tensor,
        keypoints: torch.Tensor | None = None,
        camera_ids: torch.Tensor | None = None,
        *,
        heatmaps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The inference descriptor ``(B, descriptor_dim)``; call ``model.eval()`` first."""
        return self.forward(frames, keypoints, camera_ids, heatmaps=heatmaps).descriptor

    def _local_features(self, tokens: torch.Tensor, batch: int, frames: int, keypoints: torch.Tensor | None,
                        heatmaps: torch.Tensor | None) -> torch.Tensor:
        official = self.compat == "official"
        cls_row, rows = P.temporal_rows(tokens, batch, frames, official=official)
        rows = rows[:, self.tcss_perm]
        if self.parts == "stripes":
            sequences = P.stripe_sequences(cls_row, rows, self.num_parts)
            part_tokens = cls_only_block(self.part_block, sequences).reshape(batch, self.num_parts, -1)
            normed: torch.Tensor = self.part_norm(part_tokens)
            return normed
        if heatmaps is None:
            chunk = None if _tracing() else 16
            points = keypoints.to(rows.dtype)  # type: ignore[union-attr]
            pooled = render_patch_weights(points, *self.img_size, self.patch_size, chunk)
        else:
            pooled = pool_to_patches(heatmaps.to(rows.dtype), self.patch_size)
        weights = P.part_weights(pooled, official=official)
        if not official:
            weights = weights[:, self.tcss_perm]  # the weights follow their tokens
        # Same as cls_only_block over P.kps_sequences(cls_row, rows, weights), with one qkv projection for all parts.
        local: torch.Tensor = self.part_norm(weighted_cls_block(self.part_block, cls_row, rows, weights))
        return local

    def _check_inputs(self, frames: torch.Tensor, keypoints: torch.Tensor | None, camera_ids: torch.Tensor | None,
                      heatmaps: torch.Tensor | None) -> tuple[int, int]:
        if keypoints is not None and heatmaps is not None:
            raise ValueError("pass keypoints or heatmaps, not both")
        batch, count = check_clip_inputs(frames, keypoints, camera_ids, img_size=self.img_size,
                                         num_frames=self.num_frames)
        if heatmaps is not None and tuple(heatmaps.shape) != (batch, count, NUM_PARTS, *self.img_size):
            raise ValueError(f"heatmaps must be ({batch}, {count}, {NUM_PARTS}, {self.img_size[0]}, "
                             f"{self.img_size[1]}), got {tuple(heatmaps.shape)}")
        if self.needs_keypoints and keypoints is None and heatmaps is None:
            raise ValueError("KPS needs keypoints (or heatmaps); without a pose model use the keypoint prior")
        return batch, count

    def imagenet_state_dict(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        return convert_imagenet_state_dict(state, self)

    def official_state_dict(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
        """The authors' state dict in our key names (the model owns its conversion; the generic loader calls it)."""
        check_duplicate_part_block(state)
        return convert_official_state_dict(state, len(self.backbone.blocks) + 1)


# ----------------------------------------------------------------------------------------------- checkpoints

# The authors' key names -> ours. Applied in order; the first matching pattern wins.
_OFFICIAL_KEYS: tuple[tuple[str, str], ...] = (
    (r"^base\.Cam$", "backbone.camera_embed"),
    (r"^base\.(cls_token|pos_embed|patch_embed\..*)$", r"backbone.\1"),
    (r"^base\.blocks\.(\d+)\.(.*)$", r"backbone.blocks.\1.\2"),
    (r"^b1\.0\.(.*)$", r"global_block.\1"),
    (r"^b1\.1\.(.*)$", r"global_norm.\1"),
    (r"^b2\.0\.(.*)$", r"part_block.\1"),
    (r"^b2\.1\.(.*)$", r"part_norm.\1"),
    (r"^bottleneck\.(.*)$", r"global_head.bnneck.\1"),
    (r"^classifier\.weight$", "global_head.classifier.weight"),
    (r"^bottleneck_(\d+)\.(.*)$", lambda m: f"part_heads.{int(m[1]) - 1}.bnneck.{m[2]}"),
    (r"^classifier_(\d+)\.weight$", lambda m: f"part_heads.{int(m[1]) - 1}.classifier.weight"),
    (r"^attention_conv\.(.*)$", r"temporal_attention.frame_conv.\1"),
    (r"^attention_tconv\.(.*)$", r"temporal_attention.temporal_conv.\1"),
)  # type: ignore[assignment]


def check_duplicate_part_block(state: Mapping[str, torch.Tensor]) -> None:
    """The authors store the part block twice (``block1`` and ``b2.0``, one module): both copies must agree."""
    for key, value in state.items():
        bare = key.removeprefix("module.")
        if bare.startswith("block1."):
            twin = state.get(key.replace("block1.", "b2.0.", 1))
            if twin is not None and not torch.equal(twin, value):
                raise ValueError(f"{bare} differs from its twin b2.0.{bare[7:]} (they are one module)")


def convert_official_state_dict(
    state: Mapping[str, torch.Tensor], depth: int
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The authors' KeyRe-ID / VID-Trans-ReID state dict -> (our keys, keys deliberately dropped).

    Dropped: ``base.blocks.<depth-1>``, ``base.norm`` (the global branch uses copies of them, ``b1``),
    ``base.fc`` (an unused ImageNet head) and ``block1`` (the same module as ``b2.0``, stored twice).
    A ``module.`` prefix (DataParallel) is removed. Unknown keys are kept unconverted so the caller reports them.
    """
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unused = (rf"^base\.blocks\.{depth - 1}\.", r"^base\.norm\.", r"^base\.fc\.", r"^block1\.")
    for raw_key, value in state.items():
        key = raw_key[len("module."):] if raw_key.startswith("module.") else raw_key
        if any(re.match(pattern, key) for pattern in unused):
            dropped.append(key)
            continue
        for pattern, target in _OFFICIAL_KEYS:
            if re.match(pattern, key):
                key = re.sub(pattern, target, key)
                break
        converted[key] = value
    return converted, dropped


def convert_imagenet_state_dict(
    state: Mapping[str, torch.Tensor], model: KeyReID
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A timm ViT state dict (ImageNet) -> (our keys, keys deliberately dropped).

    Blocks 0..depth-2 go to the backbone, the last block and the final norm initialise the global branch (as
    the authors' deep copy does); the positional embedding is resized to the model's patch grid (bilinear).
    """
    depth = len(model.backbone.blocks) + 1
    converted: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        block = re.match(r"^blocks\.(\d+)\.(.*)$", key)
        if key == "pos_embed":
            converted["backbone.pos_embed"] = resize_pos_embed(value, model.backbone.grid_size)
        elif key in ("cls_token",) or key.startswith("patch_embed."):
            converted[f"backbone.{key}"] = value
        elif block and int(block[1]) < depth - 1:
            converted[f"backbone.{key}"] = value
        elif block and int(block[1]) == depth - 1 and model.use_global:
            converted[f"global_block.{block[2]}"] = value
        elif key.startswith("norm.") and model.use_global:
            converted[f"global_norm.{key[5:]}"] = value
        elif block and int(block[1]) >= depth:
            raise ValueError(f"the checkpoint has more blocks than the model (depth {depth}): {key}")
        else:
            dropped.append(key)
    return converted, dropped


# ----------------------------------------------------------------------------------------------- variants

_VIT_BASE: dict[str, Any] = dict(img_size=(256, 128), patch_size=16, embed_dim=768, depth=12, num_heads=12, num_frames=4,
                 part_heads=12, attention_dim=256)
_TINY: dict[str, Any] = dict(img_size=(64, 32), patch_size=8, embed_dim=32, depth=3, num_heads=2, num_frames=4, part_heads=2,
             attention_dim=16, drop_path_rate=0.0)
_IMAGENET = "vit_base_patch16_224.orig_in21k_ft_in1k"

register_model("keyreid_vit_base", KeyReID, "KeyRe-ID (paper): ViT-B/16 at 256x128, 6 keypoint parts, T=4",
               timm_weights=_IMAGENET, parts="keypoints", num_parts=6, **_VIT_BASE)
register_model("vidtrans_vit_base", KeyReID, "VID-Trans-ReID baseline: the same with 4 stripes instead of parts",
               timm_weights=_IMAGENET, parts="stripes", num_parts=4, **_VIT_BASE)
register_model("keyreid_test", KeyReID, "tiny KeyRe-ID (same code path) for tests: 64x32, patch 8, width 32",
               parts="keypoints", num_parts=6, **_TINY)
register_model("vidtrans_test", KeyReID, "tiny VID-Trans-ReID for tests",
               parts="stripes", num_parts=4, **_TINY)
