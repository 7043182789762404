"""The camera worker's configuration: one small frozen dataclass per section of ``configs/worker*.yaml``.

``keyreid-stream worker --camera-id ID --source URI`` fills ``cameras`` with one entry; a config file may list
several cameras, which then share one detector and one embedding model (their frames and tracklets are batched
together). Unknown keys are errors (see :mod:`keyreid_stream.config.loader`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from keyreid_stream.config.schema import LoggingConfig
from keyreid_stream.validation import require

__all__ = ["CameraConfig", "DetectorConfig", "EmbeddingConfig", "MetricsConfig", "OutputConfig", "PoseConfig",
           "PublishConfig", "SourceConfig", "TrackerConfig", "TrackletConfig", "WorkerConfig"]


@dataclass(frozen=True)
class CameraConfig:
    """One camera. ``source``: a stream URL (rtsp://, http://, tcp://, ...), a video file, an image folder or a
    webcam index. ``pace``: read files at their own frame rate (like a live camera) instead of as fast as possible.
    ``detections``: a MOTChallenge ``det.txt`` for the ``public`` detector. ``camera_index``: the camera's index in
    the re-ID model's camera embedding (0 when the model has none). ``start_time``: files and folders only, the
    time of their first frame: by default 0 (media time, seconds from the start of the file), or with ``pace``
    the wall clock when the first frame is read; give the recording's real start (unix seconds) to put it on the
    wall clock, the same value for recordings of one moment (see :mod:`keyreid_stream.clock`). ``max_frames``:
    stop after that many frames (after ``stride``). ``transport``: rtsp:// and rtsps:// streams only, RTSP over
    ``tcp``, ``udp`` or ``auto`` (TCP, then UDP)."""

    id: str
    source: str
    pace: bool = False
    loop: bool = False
    stride: int = 1
    fps: float | None = None
    detections: str = ""
    camera_index: int = 0
    start_time: float | None = None
    max_frames: int | None = None
    transport: Literal["auto", "tcp", "udp"] = "auto"

    def __post_init__(self) -> None:
        require(self.stride >= 1, f"camera {self.id}: stride must be >= 1")
        require(self.fps is None or self.fps > 0, f"camera {self.id}: fps must be > 0")
        require(self.camera_index >= 0, f"camera {self.id}: camera_index must be >= 0")
        require(self.max_frames is None or self.max_frames >= 1, f"camera {self.id}: max_frames must be >= 1")


@dataclass(frozen=True)
class SourceConfig:
    """How live sources are read and reconnected; ``frame_queue``: frames buffered per camera between the reader
    and the detector (a live camera drops its oldest frame when the queue is full, a file waits)."""

    read_timeout_s: float = 5.0
    open_timeout_s: float = 10.0
    backoff_s: tuple[float, float] = (0.5, 30.0)
    max_reconnects: int | None = None
    frame_queue: int = 8

    def __post_init__(self) -> None:
        require(self.read_timeout_s > 0 and self.open_timeout_s > 0, "timeouts must be > 0")
        require(0 < self.backoff_s[0] <= self.backoff_s[1], "backoff_s must be (first, max) with 0 < first <= max")
        require(self.frame_queue >= 1, "frame_queue must be >= 1")


@dataclass(frozen=True)
class DetectorConfig:
    """``kind``: ``yolo`` (ultralytics, persons only), ``yolo-pose`` (boxes and keypoints in one pass),
    ``public`` (each camera's ``detections`` file) or ``hog`` (OpenCV, no weights needed). ``model``: a name that
    ultralytics downloads (``yolo11n.pt``), a local ``.pt`` (needs ``allow_pickle``), ``.onnx`` or ``.engine``."""

    kind: Literal["yolo", "yolo-pose", "public", "hog"] = "yolo"
    model: str = "yolo11n.pt"
    allow_pickle: bool = False
    device: str = "auto"
    image_size: int = 640
    confidence: float = 0.1
    batch_size: int = 16
    half: bool = False
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        require(0.0 <= self.confidence <= 1.0, "confidence must be in [0, 1]")
        require(self.image_size >= 32 and self.batch_size >= 1, "image_size must be >= 32 and batch_size >= 1")


@dataclass(frozen=True)
class TrackerConfig:
    """Ultralytics' ByteTrack or BoT-SORT; ``params`` override the keys of its ``bytetrack.yaml`` /
    ``botsort.yaml`` (e.g. ``track_buffer``, ``match_thresh``)."""

    kind: Literal["bytetrack", "botsort"] = "bytetrack"
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PoseConfig:
    """Keypoints per tracked person. ``auto``: from the detector when it gives them (``yolo-pose``), otherwise
    the ``prior`` layout. ``pifpaf``, ``yolo-pose`` and ``blazepose`` (offline: ``options: {model: blazepose-full}``)
    run on the person boxes; ``options`` go to the backend."""

    backend: Literal["auto", "prior", "pifpaf", "yolo-pose", "blazepose"] = "auto"
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackletConfig:
    """When tracks become tracklets, and which observations they keep.

    A tracklet is emitted when its track ends (the tracker gives it up, or it is unseen for ``lost_after_s``),
    every ``emit_every_s`` for a long track, and when the worker stops; it needs ``min_frames`` kept observations.
    An observation is kept when its box is at least ``min_box_width`` x ``min_box_height`` pixels, its score at
    least ``min_confidence`` and at most ``max_overlap`` of its area is covered by another person's box. At most
    ``max_observations`` are kept per tracklet (evenly thinned beyond that); crops taller than ``max_crop_height``
    are downscaled.
    """

    min_frames: int = 4
    lost_after_s: float = 1.0
    emit_every_s: float = 10.0
    max_observations: int = 32
    min_box_height: float = 48.0
    min_box_width: float = 16.0
    min_confidence: float = 0.3
    max_overlap: float = 0.6
    max_crop_height: int = 256
    thumbnails: bool = True

    def __post_init__(self) -> None:
        require(self.min_frames >= 1, "min_frames must be >= 1")
        require(self.lost_after_s > 0 and self.emit_every_s > 0, "lost_after_s and emit_every_s must be > 0")
        require(self.max_observations >= max(2, self.min_frames), "max_observations must be >= max(2, min_frames)")
        require(self.min_box_height >= 0 and self.min_box_width >= 0, "minimum box sizes must be >= 0")
        require(0.0 <= self.max_overlap <= 1.0, "max_overlap must be in [0, 1]")
        require(self.max_crop_height >= 16, "max_crop_height must be >= 16")


@dataclass(frozen=True)
class EmbeddingConfig:
    """The appearance descriptor. ``kind``: ``model`` (a re-ID network, below) or ``part-histogram`` (colour and
    texture histograms of the keypoint-guided body parts: no weights, no GPU, limited re-ID quality).
    The re-ID model: ``checkpoint``: one of ours (``train`` writes them), or the authors' (``checkpoint_kind:
    official`` with ``arch`` and ``num_cameras``), or a cached weights catalogue name (``keyreid-mars``: the authors'
    MARS model, converted); empty = random weights, which only tests should use.
    ``max_clips``: clips per tracklet (dense T-frame clips as at test time); ``max_wait_s``: how long a finished
    tracklet may wait for others to fill a batch. ``mean`` / ``std``: the input normalisation; null = the one the
    checkpoint was trained with (recorded by ``train``), else 0.5 / 0.5."""

    kind: Literal["model", "part-histogram"] = "model"
    arch: str = "keyreid_vit_base"
    checkpoint: str = ""
    checkpoint_kind: Literal["auto", "native", "official"] = "auto"
    allow_pickle: bool = False
    num_cameras: int = 0
    device: str = "auto"
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    batch_clips: int = 64
    max_clips: int = 8
    max_wait_s: float = 0.2
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    queue: int = 256

    def __post_init__(self) -> None:
        require(self.batch_clips >= 1 and self.max_clips >= 1, "batch_clips and max_clips must be >= 1")
        require(self.max_wait_s >= 0, "max_wait_s must be >= 0")
        require(self.std is None or min(self.std) > 0, "std must be > 0")
        require(self.queue >= 1, "queue must be >= 1")


@dataclass(frozen=True)
class PublishConfig:
    """Delivery to the matcher (see docs/protocol.md): a bounded buffer of unacknowledged messages.

    ``wait_for_matcher_s``: with a file or image folder among the cameras, wait up to this long for a connection
    to the matcher before reading anything (a file can wait; reading it while nobody listens would only fill the
    buffer), then give up with an error; 0 = read at once. Live sources never wait. ``unreachable_warning_s``:
    warn once (with the matcher's address) when messages have waited that long without any acknowledgement."""

    matcher: str = "tcp://127.0.0.1:5555"
    buffer_size: int = 10_000
    max_in_flight: int = 256
    ack_timeout_s: float = 5.0
    heartbeat_s: float = 2.0
    flush_timeout_s: float = 10.0
    wait_for_matcher_s: float = 30.0
    unreachable_warning_s: float = 15.0

    def __post_init__(self) -> None:
        require(self.matcher.startswith(("tcp://", "ipc://", "inproc://")), "matcher must be a ZeroMQ endpoint")
        require(self.buffer_size >= 1 and self.max_in_flight >= 1, "buffer_size and max_in_flight must be >= 1")
        require(self.ack_timeout_s > 0 and self.heartbeat_s > 0, "ack_timeout_s and heartbeat_s must be > 0")
        require(self.flush_timeout_s >= 0 and self.wait_for_matcher_s >= 0,
                 "flush_timeout_s and wait_for_matcher_s must be >= 0")
        require(self.unreachable_warning_s > 0, "unreachable_warning_s must be > 0")


@dataclass(frozen=True)
class OutputConfig:
    """Local results. ``mot_dir``: write every tracked box of each camera to ``MOT_DIR/CAMERA.txt`` in the
    MOTChallenge format (``frame,track_id,x,y,w,h,score,-1,-1,-1``; frame numbers from 1), for ``eval-mtmc``."""

    mot_dir: str = ""


@dataclass(frozen=True)
class MetricsConfig:
    """A metrics line in the log every ``log_every_s`` (0 = only at the end)."""

    log_every_s: float = 10.0


@dataclass(frozen=True)
class WorkerConfig:
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    cameras: tuple[CameraConfig, ...] = ()
    source: SourceConfig = field(default_factory=SourceConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    pose: PoseConfig = field(default_factory=PoseConfig)
    tracklets: TrackletConfig = field(default_factory=TrackletConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    publish: PublishConfig = field(default_factory=PublishConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)

    def __post_init__(self) -> None:
        ids = [camera.id for camera in self.cameras]
        require(len(set(ids)) == len(ids), f"camera ids must be unique, got {ids}")
