"""Training state on disk: everything needed to continue a run exactly where it stopped.

``last.pt`` holds the model weights, the loss module (the identity centres), both optimisers, the gradient scaler,
the position in the run (epoch, batch within the epoch, optimiser steps), the best validation result so far and
the random number generator states of torch (CPU and CUDA). Batches and augmentations are functions of the seed
and the position (see :mod:`keyreid_stream.data.sampling`), so nothing else is needed to replay them.

The file holds tensors and plain values only and is read with ``torch.load(weights_only=True)``; it is written
to a temporary name and renamed, so a crash while saving leaves the previous state intact.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["RunPosition", "StateError", "load_training_state", "save_training_state"]

logger = logging.getLogger(__name__)

FORMAT = "keyreid-stream/training-state"
VERSION = 1


class StateError(ValueError):
    """A training state file is missing, damaged or belongs to another configuration."""


@dataclass
class RunPosition:
    epoch: int = 0  # the epoch in progress (or the next one when step_in_epoch == 0)
    step_in_epoch: int = 0  # batches of that epoch already done
    global_step: int = 0  # optimiser steps so far
    best: dict[str, Any] = field(default_factory=dict)  # {"epoch": e, "mAP": m, ...} of the best validation


def save_training_state(path: str | os.PathLike[str], *, model: torch.nn.Module, loss: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, center_optimizer: torch.optim.Optimizer | None,
                        scaler: torch.amp.GradScaler | None, position: RunPosition, fingerprint: str) -> Path:
    path = Path(path)
    payload = {
        "format": FORMAT, "version": VERSION, "fingerprint": fingerprint,
        "arch": getattr(model, "arch", ""), "build": dict(getattr(model, "build_kwargs", {})),
        "model": model.state_dict(), "loss": loss.state_dict(), "optimizer": optimizer.state_dict(),
        "center_optimizer": None if center_optimizer is None else center_optimizer.state_dict(),
        "scaler": None if scaler is None else scaler.state_dict(),
        "position": {"epoch": position.epoch, "step_in_epoch": position.step_in_epoch,
                     "global_step": position.global_step, "best": dict(position.best)},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path


def load_training_state(path: str | os.PathLike[str], *, model: torch.nn.Module, loss: torch.nn.Module,
                        optimizer: torch.optim.Optimizer, center_optimizer: torch.optim.Optimizer | None,
                        scaler: torch.amp.GradScaler | None, fingerprint: str) -> RunPosition:
    """Restore everything saved by :func:`save_training_state` into the given objects; returns the position."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise StateError(f"no training state at {path}") from None
    except Exception as exc:
        raise StateError(f"{path} is not a readable training state ({type(exc).__name__}: {exc})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise StateError(f"{path} is not a keyreid-stream training state")
    if payload.get("fingerprint") != fingerprint:
        raise StateError(f"{path} was written by a run with a different model, data or optimisation "
                         "configuration; resume with the same configuration or start a new output folder")
    model.load_state_dict(payload["model"])
    loss.load_state_dict(payload["loss"])
    optimizer.load_state_dict(payload["optimizer"])
    if center_optimizer is not None and payload["center_optimizer"] is not None:
        center_optimizer.load_state_dict(payload["center_optimizer"])
    if scaler is not None and payload["scaler"] is not None:
        scaler.load_state_dict(payload["scaler"])
    torch.set_rng_state(payload["torch_rng"])
    if payload["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(payload["cuda_rng"])
    saved = payload["position"]
    position = RunPosition(int(saved["epoch"]), int(saved["step_in_epoch"]), int(saved["global_step"]),
                           dict(saved["best"]))
    logger.info("resuming from %s: epoch %d, batch %d, %d optimiser steps", path, position.epoch + 1,
                position.step_in_epoch, position.global_step)
    return position
