"""Plain PyTorch reference of the authors' public KeyRe-ID / VID-Trans-ReID forward.

This is an independent re-implementation of the forward pass of the public code
of KeyRe-ID (GitHub JinSeong0115/KeyRe-ID) and VID-Trans-ReID (GitHub
AishahAADU/VID-Trans-ReID).  It uses the authors' parameter names, so their
checkpoints load into it with ``load_state_dict`` unchanged.  It exists only as
a test oracle and a benchmark baseline; it is deliberately simple (explicit
attention softmax, one Python call per part) rather than fast.

It reproduces the authors' behaviour, including the known departures from the
papers:

* TCSS works on a raw ``view`` of the (B*T, 1+n, d) tokens as (B, 1+n, T*d)
  (no permute), so a "row" mixes tokens of several frames;
* the keypoint part weights are taken per patch in raster order and applied to
  those raw-view rows;
* heatmaps are expected already normalised to [-1, 1] (as the authors' loader
  does); this forward does not normalise them;
* the camera embedding is added with a weight of 3.0.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Mlp(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, H, N, hd)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.scale, dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, d)
        return self.proj(out)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, norm_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch, stride=patch)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class TransReIDBase(nn.Module):
    """ViT backbone with camera embedding; returns tokens after all but the last block."""

    def __init__(self, img_size: tuple[int, int] = (256, 128), patch: int = 16,
                 embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 num_cameras: int = 1, cam_weight: float = 3.0) -> None:
        super().__init__()
        n = (img_size[0] // patch) * (img_size[1] // patch)
        self.cam_weight = cam_weight
        self.patch_embed = PatchEmbed(patch, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + n, embed_dim))
        self.Cam = nn.Parameter(torch.zeros(num_cameras, 1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fc = nn.Linear(embed_dim, 1000)
        for p in (self.cls_token, self.pos_embed, self.Cam):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor, cam_label: Tensor) -> Tensor:
        tokens = self.patch_embed(x)
        cls = self.cls_token.expand(tokens.size(0), -1, -1)
        tokens = torch.cat((cls, tokens), dim=1)
        tokens = tokens + self.pos_embed + self.cam_weight * self.Cam[cam_label]
        for blk in self.blocks[:-1]:
            tokens = blk(tokens)
        return tokens


def tcss_official(features: Tensor, shift: int, b: int, t: int) -> tuple[Tensor, Tensor]:
    """Authors' TCSS: raw view to (b, 1+n, t*d), shift, pad to even, shuffle halves."""
    d = features.size(-1)
    rows = features.view(b, features.size(1), t * d)
    token = rows[:, 0:1]
    shifted = torch.cat((rows[:, shift:], rows[:, 1:shift]), dim=1)
    if shifted.size(1) % 2 != 0:
        shifted = torch.cat((shifted, shifted[:, -2:-1]), dim=1)
    shuffled = shifted.view(b, 2, -1, t * d).transpose(1, 2).reshape(b, -1, t * d)
    return shuffled, token


def _frozen_bias_bn(dim: int) -> nn.BatchNorm1d:
    bn = nn.BatchNorm1d(dim)
    bn.bias.requires_grad_(False)
    nn.init.ones_(bn.weight)
    nn.init.zeros_(bn.bias)
    return bn


def _classifier(dim: int, num_classes: int) -> nn.Linear:
    fc = nn.Linear(dim, num_classes, bias=False)
    nn.init.normal_(fc.weight, std=0.001)
    return fc


class _AuthorsCommon(nn.Module):
    """Shared global branch and part-block setup of both authors' models."""

    num_parts: int = 0

    def __init__(self, num_classes: int, num_cameras: int, img_size: tuple[int, int] = (256, 128),
                 patch: int = 16, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 num_frames: int = 4, part_heads: int = 12, attention_dim: int = 256) -> None:
        super().__init__()
        self.patch = patch
        self.shift = 5
        self.base = TransReIDBase(img_size, patch, embed_dim, depth, num_heads, num_cameras)
        self.b1 = nn.Sequential(copy.deepcopy(self.base.blocks[-1]), copy.deepcopy(self.base.norm))
        self.bottleneck = _frozen_bias_bn(embed_dim)
        self.classifier = _classifier(embed_dim, num_classes)
        width = num_frames * embed_dim
        self.block1 = Block(width, part_heads, norm_eps=1e-6)
        self.b2 = nn.Sequential(self.block1, nn.LayerNorm(width))  # same Block, default eps
        for k in range(1, self.num_parts + 1):
            setattr(self, f"bottleneck_{k}", _frozen_bias_bn(width))
            setattr(self, f"classifier_{k}", _classifier(width, num_classes))
        self.attention_conv = nn.Conv2d(embed_dim, attention_dim, 1)
        self.attention_tconv = nn.Conv1d(attention_dim, 1, 3, padding=1)
        for conv in (self.attention_conv, self.attention_tconv):
            nn.init.kaiming_normal_(conv.weight, mode="fan_in")
            nn.init.zeros_(conv.bias)

    def _global(self, features: Tensor, b: int, t: int) -> tuple[Tensor, Tensor, Tensor]:
        g = self.b1(features)[:, 0]
        a = F.relu(self.attention_conv(g[..., None, None])).view(b, t, -1).permute(0, 2, 1)
        a_vals = F.relu(self.attention_tconv(a)).view(b, t)
        weights = torch.softmax(a_vals, dim=1)
        global_feat = (weights.unsqueeze(-1) * g.view(b, t, -1)).sum(1)
        return global_feat, self.bottleneck(global_feat), a_vals

    def _finish(self, global_feat: Tensor, feat: Tensor, a_vals: Tensor,
                parts: list[Tensor]) -> Tensor | tuple[list[Tensor], list[Tensor], Tensor]:
        bns = [getattr(self, f"bottleneck_{k + 1}")(p) for k, p in enumerate(parts)]
        if self.training:
            logits = [self.classifier(feat)]
            logits += [getattr(self, f"classifier_{k + 1}")(bn) for k, bn in enumerate(bns)]
            return logits, [global_feat, *parts], a_vals
        return torch.cat([feat] + [bn / self.num_parts for bn in bns], dim=1)


class AuthorsKeyReID(_AuthorsCommon):
    """KeyRe-ID: global branch plus 6 keypoint-weighted parts over TCSS rows."""

    num_parts = 6

    def forward(self, x: Tensor, heatmaps: Tensor, cam_label: Tensor
                ) -> Tensor | tuple[list[Tensor], list[Tensor], Tensor]:
        b, t, c, h, w = x.shape
        features = self.base(x.view(b * t, c, h, w), cam_label)
        global_feat, feat, a_vals = self._global(features, b, t)
        hm = F.unfold(heatmaps.view(b * t, self.num_parts, h, w), self.patch, stride=self.patch)
        n = hm.size(-1)
        hm = hm.view(b * t, self.num_parts, self.patch * self.patch, n).mean(2)
        weights = hm.transpose(1, 2).reshape(b, t, n, self.num_parts).mean(1)  # (B, n, 6)
        rows, token = tcss_official(features, self.shift, b, t)
        parts = [self.b2(torch.cat((token, rows * weights[:, :, k:k + 1]), dim=1))[:, 0]
                 for k in range(self.num_parts)]
        return self._finish(global_feat, feat, a_vals, parts)


class AuthorsVidTrans(_AuthorsCommon):
    """VID-Trans-ReID: global branch plus 4 contiguous slices of the TCSS rows."""

    num_parts = 4

    def forward(self, x: Tensor, cam_label: Tensor
                ) -> Tensor | tuple[list[Tensor], list[Tensor], Tensor]:
        b, t, c, h, w = x.shape
        features = self.base(x.view(b * t, c, h, w), cam_label)
        global_feat, feat, a_vals = self._global(features, b, t)
        rows, token = tcss_official(features, self.shift, b, t)
        length = (features.size(1) - 1) // self.num_parts
        parts = [self.b2(torch.cat((token, rows[:, k * length:(k + 1) * length]), dim=1))[:, 0]
                 for k in range(self.num_parts)]
        return self._finish(global_feat, feat, a_vals, parts)


def tiny_kwargs() -> dict:
    """Small configuration for fast tests (n = 8 * 4 = 32 patches)."""
    return dict(img_size=(64, 32), patch=8, embed_dim=32, depth=3, num_heads=2,
                num_frames=4, part_heads=2, attention_dim=16)
