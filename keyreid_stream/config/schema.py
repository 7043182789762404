"""The configuration schema: one small frozen dataclass per section.

A YAML file holds any subset of the sections below; missing sections and keys take these defaults. Each
component receives only its own section, unpacked into plain keyword arguments by the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    format: Literal["text", "json"] = "text"


@dataclass(frozen=True)
class DemoConfig:
    """The foundation demo: sample video -> HOG people -> wire messages -> ZeroMQ -> decoded summary."""

    source: str = "sample"  # "sample" fetches the project's sample video; otherwise a video file path
    camera_id: str = "cam0"
    max_frames: int = 100
    stride: int = 2
    hog_max_width: int = 640
    min_score: float = 0.3
    histogram_bins: int = 8
    thumbnails: bool = True
    endpoint: str = "tcp://127.0.0.1:*"

    def __post_init__(self) -> None:
        _require(self.max_frames >= 1, "max_frames must be >= 1")
        _require(self.stride >= 1, "stride must be >= 1")
        _require(self.hog_max_width >= 64, "hog_max_width must be >= 64")
        _require(0.0 <= self.min_score <= 1.0, "min_score must be in [0, 1]")
        _require(2 <= self.histogram_bins <= 64, "histogram_bins must be in [2, 64]")
        _require(self.endpoint.startswith(("tcp://", "ipc://", "inproc://")), "endpoint must be a ZeroMQ URI")


@dataclass(frozen=True)
class Config:
    """The root: one field per section."""

    logging: LoggingConfig = field(default_factory=LoggingConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)
