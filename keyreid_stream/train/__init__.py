"""The offline trainer: configuration, training loop, training state and evaluation of trained models.

Nothing is imported eagerly: the ``keyreid-stream`` command builds its parser from this package's ``cli`` module,
and every command (``query``, ``matcher``, ...) would otherwise pay for importing torch and timm.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrainingConfig"]


def __getattr__(name: str) -> Any:
    if name == "TrainingConfig":
        from keyreid_stream.train.config import TrainingConfig

        return TrainingConfig
    raise AttributeError(f"module 'keyreid_stream.train' has no attribute {name!r}")
