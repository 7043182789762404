"""``keyreid-stream worker``: run a camera worker (one camera from the flags, or several from a config file).

SIGTERM or Ctrl-C stops reading, flushes the open tracklets to the matcher (waiting up to
``publish.flush_timeout_s`` for its acknowledgements) and exits; a second signal exits at once. Exit status: 0,
1 (could not work), 2 (config error), 3 (tracklet messages lost); see docs/worker.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keyreid_stream.config import load_config
from keyreid_stream.logs import setup_logging
from keyreid_stream.signals import run_until_stopped

if TYPE_CHECKING:
    from keyreid_stream.workers.config import WorkerConfig

__all__ = ["WorkerInputError", "add_commands", "exit_status", "format_report"]

logger = logging.getLogger("keyreid_stream.cli")


class WorkerInputError(Exception):
    """A configuration, source or model problem found when starting a worker (one readable line)."""


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "worker", help="run a camera worker: video in, tracklet embeddings out to the matcher",
        description="Detect, track and embed people of one or more cameras and publish the tracklet descriptors "
                    "to the matcher over ZeroMQ. One camera: --camera-id and --source; several: a config file "
                    "with a 'cameras' list (see configs/worker.yaml).",
    )
    parser.add_argument("--config", "-c", type=Path, default=None, help="worker config (see configs/worker.yaml)")
    parser.add_argument("--camera-id", help="camera id (with --source; replaces the config's cameras)")
    parser.add_argument("--source", help="stream URL (rtsp://, http://, tcp://...), video file, image folder or "
                                         "webcam index")
    parser.add_argument("--matcher", help="the matcher's ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555")
    parser.add_argument("--detections", help="MOTChallenge det.txt of the camera: use these boxes, no detector")
    parser.add_argument("--realtime", action="store_true", help="read a file at its own frame rate")
    parser.add_argument("--loop", action="store_true", help="restart a file at its end")
    parser.add_argument("--transport", choices=("auto", "tcp", "udp"), default=None,
                        help="RTSP over tcp, udp, or auto: TCP then UDP (default: the camera's, auto)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override config values, e.g. detector.kind=hog embedding.device=cpu")
    parser.set_defaults(handler=_worker)


def _load(args: argparse.Namespace) -> WorkerConfig:
    from keyreid_stream.workers.config import CameraConfig, WorkerConfig

    config = load_config(WorkerConfig, args.config, args.overrides)
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    if (args.camera_id is None) != (args.source is None):
        raise WorkerInputError("--camera-id and --source go together")
    cameras = config.cameras
    if args.source is not None:
        if cameras:
            logger.info("--source given: the %d camera(s) of the config file are not used", len(cameras))
        cameras = (CameraConfig(id=args.camera_id, source=args.source),)
    if args.realtime or args.loop or args.detections or args.transport:
        cameras = tuple(dataclasses.replace(c, pace=c.pace or args.realtime, loop=c.loop or args.loop,
                                            detections=args.detections or c.detections,
                                            transport=args.transport or c.transport) for c in cameras)
    changes: dict[str, Any] = {"cameras": cameras}
    if args.detections:
        changes["detector"] = dataclasses.replace(config.detector, kind="public")
    if args.matcher:
        changes["publish"] = dataclasses.replace(config.publish, matcher=args.matcher)
    return dataclasses.replace(config, **changes)


EXIT_OK, EXIT_FAILED, EXIT_LOST = 0, 1, 3  # 2: a config or command-line error (docs/worker.md, Exit status)


def _worker(args: argparse.Namespace) -> int:
    from keyreid_stream.workers.pipeline import MatcherUnreachable
    from keyreid_stream.workers.service import run_worker

    config, report = run_until_stopped(lambda: _load(args), lambda c, stop: run_worker(c, stop=stop),
                                       stopping="flushing the open tracklets", input_error=WorkerInputError,
                                       run_errors=(ValueError, MatcherUnreachable))
    print(format_report(report, [camera.id for camera in config.cameras]))
    return exit_status(report, len(config.cameras))


def exit_status(report: object, cameras: int) -> int:
    """1 when no camera could be read, 3 when tracklet messages were lost (dropped or rejected), else 0."""
    if len(report.camera_errors) == cameras:  # type: ignore[attr-defined]
        return EXIT_FAILED
    stats = report.publisher  # type: ignore[attr-defined]
    if stats.dropped or stats.rejected:
        logger.error("%d tracklet message(s) did not reach the matcher (%d dropped, %d rejected): exit status %d",
                     stats.dropped + stats.rejected, stats.dropped, stats.rejected, EXIT_LOST)
        return EXIT_LOST
    return EXIT_OK


def format_report(report: object, camera_ids: list[str]) -> str:
    """The summary printed when a worker stops."""
    counters, stats = report.counters, report.publisher  # type: ignore[attr-defined]
    lines = [f"worker ran {report.elapsed_s:.1f} s", "  camera        frames  dropped  detections  tracklets  "  # type: ignore[attr-defined]
             "published  reconnects  error"]
    for camera_id in camera_ids:
        def get(name: str, cid: str = camera_id) -> int:
            result: int = counters.get(f"{cid}.{name}", 0)
            return result

        source = report.sources.get(camera_id)  # type: ignore[attr-defined]
        reconnects = "-" if source is None else source.reconnects
        error = report.camera_errors.get(camera_id, "")  # type: ignore[attr-defined]
        if source is not None and not source.ever_connected:
            why = error or source.last_error or "stopped before it opened"
            error = f"never connected ({source.open_failures} failed open(s)): {why}"
        lines.append(f"  {camera_id:<12} {get('frames'):>7}  {get('frames_dropped'):>7}  {get('detections'):>10}  "
                     f"{get('tracklets'):>9}  {get('published'):>9}  {reconnects:>10}  {error}")
    p50, p95 = report.latency_p50_s, report.latency_p95_s  # type: ignore[attr-defined]
    latency = "n/a" if p50 is None else f"p50 {p50:.2f} s, p95 {p95:.2f} s"
    lines.append(f"  matcher: {stats.acked} acknowledged, {stats.rejected} rejected, {stats.dropped} dropped "
                 f"(buffer full or unacknowledged at exit); latency last frame -> ack: {latency}")
    for name, rates in report.stages.items():  # type: ignore[attr-defined]
        capacity = "" if rates.capacity is None else f", {rates.capacity:.1f}/s when busy"
        lines.append(f"  stage {name:<8} {rates.items:>7} items, {rates.rate:.1f}/s{capacity}")
    return "\n".join(lines)
