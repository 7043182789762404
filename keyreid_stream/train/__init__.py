"""The offline trainer: configuration, training loop, training state and evaluation of trained models."""

from keyreid_stream.train.config import TrainingConfig

__all__ = ["TrainingConfig"]
