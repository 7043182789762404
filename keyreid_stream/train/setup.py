"""Building the pieces of a training run from its configuration: processes, data, model, loss, optimisers.

Everything here turns one configuration section into plain objects; :mod:`keyreid_stream.train.trainer` runs them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from timm.scheduler.cosine_lr import CosineLRScheduler
from timm.scheduler.scheduler import Scheduler
from timm.scheduler.step_lr import StepLRScheduler

from keyreid_stream.config.loader import to_dict
from keyreid_stream.data.datasets import ReIDSplit, VideoTracklet
from keyreid_stream.data.video import KeypointSource
from keyreid_stream.model.losses import ReIDLoss
from keyreid_stream.model.registry import build_model
from keyreid_stream.train.config import ModelConfig, OptimConfig, TrainingConfig
from keyreid_stream.weights import resolve_weights

__all__ = ["Processes", "build_loss", "build_optimizers", "build_run_model", "fingerprint", "init_processes",
           "label_map", "open_keypoints"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Processes:
    """This process's place in a (possibly single-process) run started by ``torchrun``."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()


def _device(spec: str, local_rank: int) -> torch.device:
    if spec == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"run.device is {spec!r} but no CUDA device is available")
        if device.index is None:
            device = torch.device(f"cuda:{local_rank}")
    return device


def init_processes(device_spec: str) -> Processes:
    """Join the process group when started by ``torchrun`` (WORLD_SIZE > 1): NCCL on GPUs, Gloo on CPUs."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(device_spec, local_rank)
    if world_size == 1:
        return Processes(0, 1, 0, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    logger.info("process %d of %d on %s", dist.get_rank(), world_size, device)
    return Processes(dist.get_rank(), world_size, local_rank, device)


def fingerprint(config: TrainingConfig) -> str:
    """A hash of everything that decides the trained weights (not paths, logging or evaluation settings)."""
    relevant = {name: to_dict(getattr(config, name)) for name in ("data", "sampler", "augment", "model", "optim",
                                                                   "loss")}
    relevant["data"].pop("workers", None)
    relevant["data"].pop("root", None)
    relevant["seed"] = config.run.seed
    relevant["max_steps_per_epoch"] = config.run.max_steps_per_epoch
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def label_map(tracklets: tuple[VideoTracklet, ...]) -> dict[int, int]:
    """Dataset person ids -> training labels 0..C-1 (sorted)."""
    return {pid: label for label, pid in enumerate(sorted({t.person_id for t in tracklets}))}


def build_run_model(config: ModelConfig, *, num_classes: int, split: ReIDSplit, image_size: tuple[int, int],
                    clip_length: int) -> torch.nn.Module:
    pretrained: bool | Path = False
    if config.pretrained == "imagenet":
        pretrained = True
    elif config.pretrained:
        pretrained = resolve_weights(config.pretrained)  # a file, or a cached catalogue name (vit-base-imagenet)
    num_cameras = split.num_cameras if config.camera_embedding else 0
    options = {"img_size": tuple(image_size), "num_frames": clip_length, **dict(config.options)}
    return build_model(config.arch, num_classes, num_cameras, pretrained=pretrained, **options)


def open_keypoints(spec: str, root: str, model: torch.nn.Module, missing: str) -> KeypointSource:
    needs = bool(getattr(model, "needs_keypoints", False))
    if not needs:
        return KeypointSource("none")
    if spec == "none":
        raise ValueError("this model's parts follow keypoints: set data.keypoints to a keypoint store, a pose "
                         "backend whose store exists under the dataset root, or 'prior'")
    return KeypointSource.open(spec, root, missing=missing)


def build_loss(model: torch.nn.Module, num_classes: int, config: TrainingConfig) -> ReIDLoss:
    dims: Any = model.feature_dims  # a FeatureDims; nn.Module attributes type as Tensor | Module
    return ReIDLoss(num_classes, dims.global_dim, dims.part_dim, dims.num_parts, config.loss)


def build_optimizers(model: torch.nn.Module, loss: ReIDLoss, config: OptimConfig
                     ) -> tuple[torch.optim.Optimizer, torch.optim.SGD | None, Scheduler]:
    """The model's optimiser (biases at ``bias_lr_factor`` x lr), SGD on the centres, the per-epoch schedule."""
    weights: list[torch.nn.Parameter] = []
    biases: list[torch.nn.Parameter] = []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (biases if name.endswith("bias") else weights).append(parameter)
    groups = [{"params": weights, "lr": config.lr, "weight_decay": config.weight_decay},
              {"params": biases, "lr": config.lr * config.bias_lr_factor, "weight_decay": config.weight_decay_bias}]
    groups = [g for g in groups if g["params"]]
    optimizer: torch.optim.Optimizer
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    else:
        optimizer = (torch.optim.Adam if config.optimizer == "adam" else torch.optim.AdamW)(groups, lr=config.lr)
    centres = loss.center_parameters()
    center_optimizer = torch.optim.SGD(centres, lr=config.center_lr) if centres else None
    warmup: dict[str, Any] = dict(warmup_t=config.warmup_epochs, warmup_lr_init=config.warmup_lr, t_in_epochs=True)
    scheduler: Scheduler
    if config.schedule == "cosine":
        scheduler = CosineLRScheduler(optimizer, t_initial=config.epochs, lr_min=config.min_lr, cycle_limit=1,
                                      **warmup)
    else:
        scheduler = StepLRScheduler(optimizer, decay_t=config.step_epochs, decay_rate=config.gamma, **warmup)
    return optimizer, center_optimizer, scheduler
