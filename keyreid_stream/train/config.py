"""The training and evaluation configuration: one small frozen dataclass per section of the YAML file.

``configs/keyreid_mars.yaml`` and its siblings hold the papers' recipes; ablations inherit from them through
``_base_`` and change one or two keys. Unknown keys are errors (see :mod:`keyreid_stream.config.loader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from keyreid_stream.config.schema import LoggingConfig
from keyreid_stream.model.losses import LossWeights
from keyreid_stream.validation import require

__all__ = ["AugmentConfig", "DataConfig", "EvalConfig", "ModelConfig", "OptimConfig", "RunConfig",
           "SamplerConfig", "TrainingConfig"]


@dataclass(frozen=True)
class DataConfig:
    """Where the data is and how clips are made.

    ``keypoints``: ``"pifpaf"`` / ``"yolo-pose"`` / ``"synthetic"`` (the store that ``keyreid-stream keypoints
    extract`` wrote under the dataset root), a store folder, ``"prior"`` (the fixed average layout, no pose model)
    or ``"none"`` (models without keypoint parts). ``validation_ids``: the fraction of the training identities
    held out for model selection (0 = none; the last epoch is then used).
    """

    dataset: Literal["mars", "ilidsvid", "prid", "folder"] = "mars"
    root: str = "data/mars"
    split: int = 0
    keypoints: str = "pifpaf"
    missing_keypoints: Literal["error", "zeros"] = "error"
    image_size: tuple[int, int] = (256, 128)
    clip_length: int = 4
    test_max_clips: int | None = 41
    validation_ids: float = 0.1
    workers: int = 4

    def __post_init__(self) -> None:
        require(self.split >= 0, "split must be >= 0")
        require(min(self.image_size) >= 8, "image_size must be at least 8x8")
        require(self.clip_length >= 1, "clip_length must be >= 1")
        require(self.test_max_clips is None or self.test_max_clips >= 1, "test_max_clips must be >= 1 or null")
        require(0.0 <= self.validation_ids < 0.5, "validation_ids must be in [0, 0.5)")
        require(self.workers >= 0, "workers must be >= 0")


@dataclass(frozen=True)
class SamplerConfig:
    """P identities x K tracklets per optimisation step (the paper's batch of 32 clips = 8 x 4)."""

    ids_per_batch: int = 8
    tracklets_per_id: int = 4

    def __post_init__(self) -> None:
        require(self.ids_per_batch >= 2, "ids_per_batch must be >= 2 (the triplet loss needs negatives)")
        require(self.tracklets_per_id >= 1, "tracklets_per_id must be >= 1")


@dataclass(frozen=True)
class AugmentConfig:
    flip: float = 0.5
    pad: int = 10
    erase: float = 0.5
    erase_area: tuple[float, float] = (0.02, 0.4)
    erase_aspect: float = 0.3
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelConfig:
    """``arch`` from the registry; ``pretrained``: ``"imagenet"`` (timm hub, needs internet), a local weights file,
    a cached weights catalogue name (``vit-base-imagenet``, ``resnet50-imagenet``) or ``""`` for random
    initialisation; ``options`` override the architecture's defaults (e.g. ``tcss: false``)."""

    arch: str = "keyreid_vit_base"
    pretrained: str = "imagenet"
    camera_embedding: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OptimConfig:
    """The model's optimiser (SGD with momentum as in the paper, or Adam/AdamW), its per-epoch schedule (cosine
    decay after a linear warm-up, or steps of ``gamma`` every ``step_epochs``), the centres on their own SGD."""

    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    schedule: Literal["cosine", "step"] = "cosine"
    step_epochs: int = 100
    gamma: float = 0.1
    epochs: int = 120
    lr: float = 0.008
    bias_lr_factor: float = 2.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    weight_decay_bias: float = 1e-4
    warmup_epochs: int = 5
    warmup_lr: float = 8e-5
    min_lr: float = 1.6e-5
    center_lr: float = 0.5
    accumulate: int = 1
    grad_clip: float | None = None
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs must be >= 1")
        require(self.lr > 0 and self.center_lr > 0, "learning rates must be > 0")
        require(0 <= self.warmup_epochs <= self.epochs, "warmup_epochs must be in [0, epochs]")
        require(self.accumulate >= 1, "accumulate must be >= 1")
        require(self.step_epochs >= 1 and 0 < self.gamma <= 1, "step_epochs must be >= 1 and gamma in (0, 1]")
        require(self.grad_clip is None or self.grad_clip > 0, "grad_clip must be > 0 or null")


@dataclass(frozen=True)
class EvalConfig:
    """``metric`` between descriptors; ``protocol``: ``standard`` (one camera per tracklet), ``official`` (the
    authors' per-frame camera ids) or ``both``; ``reports``: write the PNG reports next to the results."""

    batch_clips: int = 64
    metric: Literal["squared_euclidean", "euclidean", "cosine"] = "squared_euclidean"
    rerank: bool = False
    protocol: Literal["standard", "official", "both"] = "standard"
    max_rank: int = 50
    reports: bool = True
    report_queries: int = 8

    def __post_init__(self) -> None:
        require(self.batch_clips >= 1, "batch_clips must be >= 1")
        require(self.max_rank >= 1, "max_rank must be >= 1")
        require(self.report_queries >= 1, "report_queries must be >= 1")


@dataclass(frozen=True)
class RunConfig:
    """Where results go and how the loop runs. ``eval_every``: validation every N epochs (and after the last);
    ``max_steps_per_epoch``: cut epochs short (quick checks)."""

    output: str = "runs/keyreid_mars"
    seed: int = 1234
    device: str = "auto"
    eval_every: int = 10
    log_every: int = 20
    checkpoint_every_steps: int | None = None
    max_steps_per_epoch: int | None = None
    tensorboard: bool = True
    progress: bool = True
    sync_batchnorm: bool = False

    def __post_init__(self) -> None:
        require(self.eval_every >= 1 and self.log_every >= 1, "eval_every and log_every must be >= 1")
        require(self.checkpoint_every_steps is None or self.checkpoint_every_steps >= 1,
                 "checkpoint_every_steps must be >= 1 or null")
        require(self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1,
                 "max_steps_per_epoch must be >= 1 or null")


@dataclass(frozen=True)
class TrainingConfig:
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossWeights = field(default_factory=LossWeights)  # the model's loss weights, validated there
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)
