"""Where and in which precision a model runs: ``auto`` picks the first GPU when there is one, else the CPU."""

from __future__ import annotations

import torch

__all__ = ["device_name", "resolve_amp", "resolve_device"]


def device_name(setting: str) -> str:
    """``auto`` -> ``cuda:0`` when CUDA is available, else ``cpu``; anything else is passed through (libraries
    that take a device name, such as ultralytics, accept their own names too)."""
    if setting != "auto":
        return setting
    return "cuda:0" if torch.cuda.is_available() else "cpu"


def resolve_device(setting: str, what: str = "embedding.device") -> torch.device:
    """``auto``: the first GPU when there is one, else the CPU; an explicit CUDA device must exist (``what``
    names the setting in the error)."""
    device = torch.device(device_name(setting))
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{what} is {setting!r} but no CUDA device is available")
    return device


def resolve_amp(setting: str, device: torch.device) -> torch.dtype | None:
    """``auto``: bfloat16 on a GPU, full precision on a CPU; ``bf16``, ``fp16`` or ``off`` as given."""
    if setting == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[setting]
