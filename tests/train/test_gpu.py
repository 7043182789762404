"""On a CUDA device: bfloat16 autocast training and evaluation of the tiny model (skipped without a GPU)."""

from __future__ import annotations

import math

import pytest

from keyreid_stream.train.trainer import train


@pytest.mark.gpu
def test_bf16_training_on_the_gpu(small_config) -> None:
    summary = train(small_config("run.device=cuda", "optim.amp=auto", "optim.epochs=2"))
    assert summary.losses and all(math.isfinite(loss) for loss in summary.losses)
    assert summary.test is not None and summary.test["standard"]["mAP"] > 0
