"""Helpers shared by the model tests (tests/model/conftest.py puts this folder on the path)."""

from __future__ import annotations

import torch


def randomise_batchnorm(model: torch.nn.Module, seed: int = 1) -> None:
    """Non-trivial statistics and affine parameters in every BatchNorm: it is not the identity in eval mode, so
    tests of eval-mode behaviour (determinism, batch independence, export, flips) see it."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                size = module.num_features
                module.running_mean.copy_(torch.randn(size, generator=gen) * 0.5)
                module.running_var.copy_(torch.rand(size, generator=gen) * 1.5 + 0.5)
                module.weight.copy_(torch.rand(size, generator=gen) + 0.5)
                module.bias.copy_(torch.randn(size, generator=gen) * 0.1)
