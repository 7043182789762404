"""The configuration schema: one small frozen dataclass per section.

A YAML file holds any subset of the sections below; missing sections and keys take these defaults. Each
component receives only its own section, unpacked into plain keyword arguments by the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from keyreid_stream.validation import require

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class DemoConfig:
    """The end-to-end demo (``keyreid_stream.demo``): cameras -> workers -> matcher -> cross-camera identities.

    ``sources``: ``["sample"]`` (two overlapping views cut from the sample video, fetched when missing) or two or
    more video files, stream URLs or webcam indices, one camera each. ``models``: ``auto`` (the best available),
    ``classical`` (HOG, keypoint prior, part histograms: no weights) or ``trained`` (YOLO-pose and KeyRe-ID, an
    error when missing). ``redis``: empty = start a private server; else the URL of a running one.
    ``http``: where the matcher's API and identity browser listen (port 0 = any free port). ``report``: the static
    HTML report to write (empty = none); ``browse``: keep the browser serving until Ctrl-C. ``timeout_s``: the demo
    stops when its workers make no progress (no frame read, no tracklet embedded) for that long.
    """

    sources: tuple[str, ...] = ("sample",)
    view_width: int = 480
    stride: int = 2
    max_frames: int = 0
    pace: bool = False
    models: Literal["auto", "classical", "trained"] = "auto"
    detector_model: str = "yolo11n-pose.pt"
    reid_checkpoint: str = ""
    reid_arch: str = "keyreid_vit_base"
    reid_checkpoint_kind: Literal["auto", "native", "official"] = "auto"
    reid_num_cameras: int = 0
    allow_pickle: bool = False
    threshold: float | None = None
    redis: str = ""
    http: str = "127.0.0.1:0"
    report: str = "demo-report.html"
    browse: bool = False
    workdir: str = ""
    timeout_s: float = 900.0

    def __post_init__(self) -> None:
        require(len(self.sources) >= 1, "sources must name at least one source ('sample' or two or more videos)")
        require(self.view_width >= 64, "view_width must be >= 64")
        require(self.stride >= 1, "stride must be >= 1")
        require(self.max_frames >= 0, "max_frames must be >= 0 (0 = the whole video)")
        require(self.threshold is None or 0.0 < self.threshold <= 1.0, "threshold must be in (0, 1]")
        require(self.redis == "" or self.redis.startswith(("redis://", "rediss://", "unix://")),
                 "redis must be empty (a private server) or a redis:// URL")
        require(self.timeout_s > 0, "timeout_s must be > 0")


@dataclass(frozen=True)
class Config:
    """The root: one field per section."""

    logging: LoggingConfig = field(default_factory=LoggingConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
