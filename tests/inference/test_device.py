"""Device and precision selection: ``auto`` picks the GPU when there is one, names pass through."""

from __future__ import annotations

import pytest
import torch

from keyreid_stream.inference.device import device_name, resolve_amp, resolve_device


@pytest.mark.parametrize("device", ["cpu", "cuda:0", "cuda:1", "mps", "0"])
def test_device_names_pass_through(device: str) -> None:
    assert device_name(device) == device


def test_auto_is_the_first_gpu_else_the_cpu() -> None:
    expected = "cuda:0" if torch.cuda.is_available() else "cpu"
    assert device_name("auto") == expected
    assert resolve_device("auto") == torch.device(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_an_explicit_gpu_that_is_missing_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="search.device is 'cuda:0' but no CUDA device is available"):
        resolve_device("cuda:0", what="search.device")


@pytest.mark.parametrize(("setting", "device", "expected"), [
    ("auto", "cpu", None), ("auto", "cuda", torch.bfloat16), ("bf16", "cpu", torch.bfloat16),
    ("fp16", "cuda", torch.float16), ("off", "cuda", None),
])
def test_amp(setting: str, device: str, expected: torch.dtype | None) -> None:
    assert resolve_amp(setting, torch.device(device)) == expected
