"""The shared ViT backbone of KeyRe-ID and VID-Trans-ReID, on top of timm's ``VisionTransformer``.

KeyRe-ID (Kim et al., "KeyRe-ID: Keypoint-Guided Person Re-Identification using Part-Aware Representation in
Videos"), eqs. 1-3: each frame is cut into 16x16 patches (a 16x8 grid at 256x128), a [CLS] token is prepended and
a learnable camera embedding is mixed with the positional embedding (eq. 2):

    paper mode:      Z + lambda * pos + (1 - lambda) * cam
    official mode:   Z + pos + 3.0 * cam        (the authors' code, TransReID's side-information embedding)

The backbone runs all blocks but the last; the model takes the last block (and the final norm) as the first
layer of its global branch, as the authors' code does. :func:`cls_only_block` evaluates a timm block for the
[CLS] query only: exact for every consumer that reads only token 0 of the block's output, and several times
cheaper for the 3072-wide part block.
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from timm.layers.attention import Attention
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

__all__ = ["CameraViT", "cls_only_block", "is_eager", "resize_pos_embed", "weighted_cls_block"]

OFFICIAL_CAMERA_WEIGHT = 3.0


class CameraViT(VisionTransformer):
    """timm ViT with a per-camera embedding (``camera_embed``, shape ``(num_cameras, 1, D)``).

    ``forward_tokens(images, camera_ids)`` returns every token after the blocks ``self.blocks`` (no final norm):
    ``(N, 1 + num_patches, D)``. The model removes the last block and the norm after construction.
    """

    def __init__(self, *, num_cameras: int, camera_mix: float | None, **vit_kwargs: object) -> None:
        super().__init__(num_classes=0, global_pool="token", **vit_kwargs)  # type: ignore[arg-type]
        if num_cameras < 0:
            raise ValueError(f"num_cameras must be >= 0, got {num_cameras}")
        if camera_mix is not None and not 0.0 < camera_mix < 1.0:
            raise ValueError(f"camera_mix (lambda of eq. 2) must be in (0, 1), got {camera_mix}")
        self.num_cameras = num_cameras
        self.camera_mix = camera_mix  # None: the official "pos + 3.0 * cam"
        self.camera_embed: nn.Parameter | None = None
        if num_cameras > 0:
            self.camera_embed = nn.Parameter(torch.zeros(num_cameras, 1, self.embed_dim))
            nn.init.trunc_normal_(self.camera_embed, std=0.02)

    @property
    def grid_size(self) -> tuple[int, int]:
        grid: tuple[int, int] = tuple(self.patch_embed.grid_size)
        return grid

    def camera_term(self, camera_ids: torch.Tensor | None) -> torch.Tensor | float:
        if camera_ids is None or self.camera_embed is None:
            return 0.0
        if camera_ids.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"camera_ids must be an integer tensor, got {camera_ids.dtype}")
        if is_eager() and camera_ids.numel():
            low, high = int(camera_ids.min()), int(camera_ids.max())
            if low < 0 or high >= self.num_cameras:
                raise ValueError(
                    f"camera id out of range: ids must be in [0, {self.num_cameras}), got min {low} max {high}"
                )
        cam = self.camera_embed[camera_ids]  # (N, 1, D)
        weight = OFFICIAL_CAMERA_WEIGHT if self.camera_mix is None else 1.0 - self.camera_mix
        return weight * cam

    def embed_tokens(self, images: torch.Tensor, camera_ids: torch.Tensor | None) -> torch.Tensor:
        """Patch embedding + [CLS] + positional and camera embeddings (eq. 2): ``(N, 1 + n, D)``."""
        patches = self.patch_embed(images)
        # global_pool="token" with timm's default class_token=True and pos_embed: both always exist here.
        assert self.cls_token is not None and self.pos_embed is not None
        cls = self.cls_token.expand(patches.shape[0], -1, -1)
        tokens = torch.cat([cls, patches], dim=1)
        pos_weight = 1.0 if self.camera_mix is None else self.camera_mix
        tokens = tokens + pos_weight * self.pos_embed + self.camera_term(camera_ids)
        embedded: torch.Tensor = self.pos_drop(tokens)
        return embedded

    def forward_tokens(self, images: torch.Tensor, camera_ids: torch.Tensor | None) -> torch.Tensor:
        tokens: torch.Tensor = self.norm_pre(self.embed_tokens(images, camera_ids))
        for block in self.blocks:
            tokens = block(tokens)
        return tokens

    def forward(self, images: torch.Tensor, camera_ids: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        return self.forward_tokens(images, camera_ids)


def is_eager() -> bool:
    """False while tracing, compiling or exporting (data-dependent checks are skipped there)."""
    # torch's stubs do not re-export (or type) the public torch.jit.is_tracing
    return not (torch.jit.is_tracing() or  # type: ignore[attr-defined,no-untyped-call]
                torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export())


def _attention(block: Block) -> Attention:
    # nn.Module.__getattr__ is typed ``Tensor | Module``; timm's Block always holds an Attention here.
    return cast(Attention, block.attn)


def _layer_norm(block: Block) -> nn.LayerNorm:
    # as above: the blocks this module accepts are built with LayerNorm (checked by the callers' tests).
    return cast(nn.LayerNorm, block.norm1)


def cls_only_block(block: Block, tokens: torch.Tensor) -> torch.Tensor:
    """``block(tokens)[:, 0]`` computed for the first query only: ``(N, L, D) -> (N, D)``.

    Keys and values still come from every token, so the result is the same function (and the same gradients)
    as the full block; only the outputs nobody reads (tokens 1..L-1) are skipped. Uses fused attention.
    """
    attn = _attention(block)
    if getattr(attn, "gate", None) is not None:
        raise ValueError("cls_only_block does not support gated attention")
    batch, length, dim = tokens.shape
    normed = block.norm1(tokens)
    qkv = attn.qkv(normed).reshape(batch, length, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    query, key, value = qkv.unbind(0)
    query, key = attn.q_norm(query[:, :, :1]), attn.k_norm(key)
    dropout = attn.attn_drop.p if block.training else 0.0
    mixed = F.scaled_dot_product_attention(query, key, value, dropout_p=dropout)
    mixed = attn.proj_drop(attn.proj(attn.norm(mixed.transpose(1, 2).reshape(batch, 1, attn.attn_dim))))
    first: torch.Tensor = tokens[:, :1] + block.drop_path1(block.ls1(mixed))
    first = first + block.drop_path2(block.ls2(block.mlp(block.norm2(first))))
    return first[:, 0]


def resize_pos_embed(pos_embed: torch.Tensor, grid_size: tuple[int, int], num_prefix_tokens: int = 1) -> torch.Tensor:
    """Resample a ``(1, prefix + g*g, D)`` positional embedding to ``grid_size`` (bilinear, like the authors')."""
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    old = int(math.isqrt(grid.shape[1]))
    if old * old != grid.shape[1]:
        raise ValueError(f"positional embedding grid of {grid.shape[1]} tokens is not square")
    if (old, old) == tuple(grid_size):
        return pos_embed
    image = grid.reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    image = F.interpolate(image, size=tuple(grid_size), mode="bilinear", align_corners=False)
    grid = image.permute(0, 2, 3, 1).reshape(1, grid_size[0] * grid_size[1], -1).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def weighted_cls_block(block: Block, cls_row: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``cls_only_block(block, [cls_row, rows * weights[..., k]])`` for every part k at once: ``(B, K, W)``.

    Exact rewrite of the KPS part sequences. For a row ``x`` scaled by ``w``, LayerNorm gives
    ``s * (x - mean(x)) * gamma + beta`` with ``s = w / sqrt(w^2 var(x) + eps)``, so keys and values of every part
    are ``s * U + c`` with one shared projection ``U = W_qkv((x - mean) * gamma)`` of the unweighted rows. The
    [CLS] row is never weighted, hence one query for all parts. The qkv projection -- the bulk of the part
    block's work -- then runs once per clip instead of once per part.
    """
    attn, norm = _attention(block), _layer_norm(block)
    if getattr(attn, "gate", None) is not None or not isinstance(attn.q_norm, nn.Identity) \
            or not isinstance(attn.k_norm, nn.Identity) or not isinstance(attn.norm, nn.Identity):
        raise ValueError("weighted_cls_block supports plain timm attention blocks only")
    batch, num_rows, width = rows.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    sequence = torch.cat([cls_row, rows], dim=1)  # (B, L, W)
    centred = sequence - sequence.mean(dim=-1, keepdim=True)
    variance = centred.square().mean(dim=-1)  # (B, L)
    row_weights = torch.cat([torch.ones_like(weights[:, :1]), weights], dim=1)  # (B, L, K); [CLS] unweighted
    scale = row_weights * torch.rsqrt(row_weights.square() * variance.unsqueeze(-1) + norm.eps)
    projected = F.linear(centred * norm.weight, attn.qkv.weight)  # (B, L, 3W), shared by all parts
    offset = F.linear(norm.bias, attn.qkv.weight, attn.qkv.bias)  # (3W,)
    query = (scale[:, 0, :1] * projected[:, 0, :width] + offset[:width]).reshape(batch, heads, head_dim)
    keys = projected[..., width:2 * width].reshape(batch, num_rows + 1, heads, head_dim)
    values = projected[..., 2 * width:].reshape(batch, num_rows + 1, heads, head_dim)
    # q . (s * k + c) = s * (q . k) + (q . c); the second term is the same for every row and cancels in softmax.
    logits = torch.einsum("bhd,blhd->bhl", query, keys).unsqueeze(2) * scale.permute(0, 2, 1).unsqueeze(1)
    probs = (logits * attn.scale).softmax(dim=-1)  # (B, heads, K, L)
    probs = attn.attn_drop(probs)
    mixed = torch.einsum("bhkl,blhd->bkhd", probs * scale.permute(0, 2, 1).unsqueeze(1), values)
    mixed = mixed + probs.sum(dim=-1).permute(0, 2, 1).unsqueeze(-1) * offset[2 * width:].reshape(heads, head_dim)
    mixed = attn.proj_drop(attn.proj(mixed.reshape(batch, -1, width)))  # (B, K, W)
    first = cls_row + block.drop_path1(block.ls1(mixed))
    out: torch.Tensor = first + block.drop_path2(block.ls2(block.mlp(block.norm2(first))))
    return out
