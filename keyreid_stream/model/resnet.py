"""A ResNet backbone for re-ID on top of timm's ``ResNet``: feature maps of every frame of a clip.

Two changes from the ImageNet network, both common in re-ID since Luo et al. 2019 ("Bag of Tricks and A Strong
Baseline for Deep Person Re-identification"): no classifier or pooling (the model pools), and a **last stride** of
1 by default, so that a 256x128 crop gives a 16x8 map instead of 8x4 -- enough rows for RAPA's head / body / legs
regions. ``stem_pool=False`` drops the stem's max pooling (the tiny test variant, to keep a usable map on 64x32
inputs). The last batch norm of each residual block starts at one, as in torchvision (timm's default starts it at
zero). The parameter names are timm's (= torchvision's), so ImageNet state dicts of either load unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from timm.models.resnet import BasicBlock, Bottleneck, ResNet
from torch import nn

__all__ = ["ReIDResNet"]


class ReIDResNet(ResNet):
    """timm ``ResNet`` returning ``forward_features`` maps ``(N, C, H / s, W / s)``; ``out_channels`` = C."""

    layer4: nn.Sequential  # built by timm with add_module, so otherwise typed ``Tensor | Module``

    def __init__(self, *, block: Literal["bottleneck", "basic"] = "bottleneck",
                 layers: Sequence[int] = (3, 4, 6, 3), channels: Sequence[int] = (64, 128, 256, 512),
                 stem_width: int = 64, last_stride: int = 1, stem_pool: bool = True) -> None:
        if block not in ("bottleneck", "basic"):
            raise ValueError(f"block must be 'bottleneck' or 'basic', got {block!r}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        if len(layers) != 4 or len(channels) != 4 or min(layers) < 1 or min(channels) < 1:
            raise ValueError(f"layers and channels need four positive entries, got {layers} and {channels}")
        block_class = Bottleneck if block == "bottleneck" else BasicBlock
        # timm annotates ``block`` as an instance; it takes the block class
        super().__init__(block=block_class, layers=tuple(layers), channels=tuple(channels),  # type: ignore[arg-type]
                         stem_width=stem_width, num_classes=0, global_pool="", zero_init_last=False)
        self.out_channels = int(channels[-1]) * block_class.expansion
        self.last_stride = last_stride
        if last_stride == 1:
            for module in self.layer4[0].modules():
                if isinstance(module, nn.Conv2d) and module.stride == (2, 2):
                    module.stride = (1, 1)
        if not stem_pool:
            self.maxpool = nn.Identity()  # type: ignore[assignment]  # timm types it as its pooling Sequential
        self.stride = 2 * (2 if stem_pool else 1) * 4 * last_stride  # stem conv, pool, layer2, layer3, layer4

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_features(images)
