"""Camera worker throughput: frames/s per stage and end to end, on the sample pedestrian video.

    python bench/worker_throughput.py [--video PATH] [--frames 200] [--model keyreid_vit_base]
        [--detector-model yolo11n.yaml] [--device auto] [--cameras 1,4] [--quick] [--write docs/benchmarks.md]

Stages, each timed on the same frames (768x576, 10 fps):

* decode -- OpenCV reading the file: the reference every other rate is compared with (ratio column).
* detect (YOLO) -- ultralytics YOLO at 640 px, persons only, batches of 1 and 8 frames. ``yolo11n.yaml`` builds
  random weights (no download here): the compute is that of the real network, the boxes are meaningless.
* detect (HOG) -- OpenCV's people detector, the weight-free fallback. Its boxes on the real video are the
  detections every later stage uses (written as a MOTChallenge det.txt), so people per frame are real.
* track -- ultralytics ByteTrack on those boxes.
* embed -- the re-ID model (random weights: same compute as trained ones) on worker tracklets of 32 observations,
  i.e. 8 dense clips of 4 frames each; reported per clip and per tracklet.
* end to end -- the real worker (sources, public detections, tracking, keypoint prior, accumulation, embedding,
  acknowledged ZeroMQ delivery to a local ROUTER socket) on 1 and several cameras (the same video as each
  camera), read as fast as possible: frames/s over all cameras and latency from a tracklet's last frame to the ack.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, rate, write_section  # noqa: E402

from keyreid_stream.contracts import Frame, Heartbeat, Tracklet  # noqa: E402
from keyreid_stream.inference.embedder import TrackletEmbedder  # noqa: E402
from keyreid_stream.inference.loading import load_embedding_model  # noqa: E402
from keyreid_stream.wire import decode, encode_ack  # noqa: E402
from keyreid_stream.workers.config import (  # noqa: E402
    CameraConfig,
    DetectorConfig,
    EmbeddingConfig,
    MetricsConfig,
    PublishConfig,
    WorkerConfig,
)
from keyreid_stream.workers.detection import create_detector  # noqa: E402
from keyreid_stream.workers.service import run_worker  # noqa: E402
from keyreid_stream.workers.sources import read_video_file  # noqa: E402
from keyreid_stream.workers.tracking import CameraTracker  # noqa: E402

SECTION = "Camera worker throughput"


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def read_frames(video: Path, count: int) -> tuple[list[Frame], float]:
    start = time.perf_counter()
    frames = list(read_video_file(video, "cam", max_frames=count))
    return frames, len(frames) / (time.perf_counter() - start)


def detect_rate(detector, frames: list[Frame], batch: int) -> tuple[list, float]:
    detector.detect(frames[:batch])  # warm-up
    found, start = [], time.perf_counter()
    for index in range(0, len(frames), batch):
        found += detector.detect(frames[index:index + batch])
    return found, len(frames) / (time.perf_counter() - start)


def write_det_file(detections: list, path: Path) -> float:
    rows = []
    for found in detections:
        for (x1, y1, x2, y2), score in zip(found.boxes.tolist(), found.scores.tolist()):
            frame = found.frame_index + 1
            rows.append(f"{frame},-1,{x1:.1f},{y1:.1f},{x2 - x1:.1f},{y2 - y1:.1f},{score:.3f},-1,-1,-1")
    path.write_text("\n".join(rows) + "\n")
    return statistics.fmean(len(found) for found in detections)


def track_rate(frames: list[Frame], detections: list) -> float:
    tracker = CameraTracker("bytetrack", frame_rate=10.0)
    start = time.perf_counter()
    for frame, found in zip(frames, detections):
        tracker.update(frame, found)
    return len(frames) / (time.perf_counter() - start)


def embed_rate(model_name: str, device: str, seconds: float) -> tuple[float, float, str]:
    loaded = load_embedding_model(model_name)
    embedder = TrackletEmbedder(loaded, device=device, batch_clips=64, max_clips=8)
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (160, 64, 3), dtype=np.uint8) for _ in range(32)]
    points = np.zeros((32, 17, 3), np.float32)
    points[..., 0], points[..., 1], points[..., 2] = rng.uniform(0, 64, (32, 17)), rng.uniform(0, 160, (32, 17)), 1
    tracklet = Tracklet.create("cam", 1, np.arange(32), np.arange(32) / 10, [[0, 0, 64, 160]] * 32, points,
                               crops=crops)
    batch = [tracklet] * 8  # 64 clips: one forward batch
    embedder.embed(batch)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 2:
        _, elapsed = _timed(embedder.embed, batch)
        times.append(elapsed)
    per_batch = statistics.median(times)
    return 64 / per_batch, 8 / per_batch, str(embedder.device)


class AckingRouter(threading.Thread):
    def __init__(self, context: zmq.Context) -> None:
        super().__init__(daemon=True)
        self.socket = context.socket(zmq.ROUTER)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.received, self.halt = 0, threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            if not self.socket.poll(50):
                continue
            identity, payload = self.socket.recv_multipart()
            message = decode(payload)
            if not isinstance(message, Heartbeat):
                self.received += 1
                self.socket.send_multipart([identity, encode_ack(message.message_id)])

    def close(self) -> None:
        self.halt.set()
        self.join()
        self.socket.close(linger=0)


def end_to_end(video: Path, det_file: Path, cameras: int, model: str, device: str) -> dict:
    context = zmq.Context()
    router = AckingRouter(context)
    router.start()
    camera_configs = tuple(CameraConfig(id=f"cam{i}", source=str(video), detections=str(det_file))
                           for i in range(cameras))
    config = WorkerConfig(
        cameras=camera_configs, detector=DetectorConfig(kind="public", batch_size=16),
        embedding=EmbeddingConfig(arch=model, device=device),
        publish=PublishConfig(matcher=f"tcp://127.0.0.1:{router.port}", flush_timeout_s=60),
        metrics=MetricsConfig(log_every_s=0),
    )
    try:
        start = time.perf_counter()
        report = run_worker(config, context=context)
        elapsed = time.perf_counter() - start
    finally:
        router.close()
        context.destroy(linger=0)
    read = sum(report.counters.get(f"cam{i}.frames", 0) for i in range(cameras))
    return {"model": model, "cameras": cameras, "frames": read, "fps": read / elapsed,
            "tracklets": report.publisher.acked,
            "p50": report.latency_p50_s, "p95": report.latency_p95_s, "stages": report.stages}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, default=None, help="default: the sample video (fetched if missing)")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--model", default="keyreid_vit_base")
    parser.add_argument("--detector-model", default="yolo11n.yaml")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cameras", default="1,4")
    parser.add_argument("--seconds", type=float, default=5.0, help="time per embedding measurement")
    parser.add_argument("--quick", action="store_true", help="tiny model, 60 frames (a smoke run)")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.quick:
        args.model, args.frames, args.seconds = "keyreid_test", 60, 1.0
    video = args.video
    if video is None:
        from keyreid_stream.data.sample import fetch_sample

        video = fetch_sample()
    threads = torch.get_num_threads()
    frames, decode_fps = read_frames(video, args.frames)
    rows = [("decode (OpenCV)", f"{frames[0].image.shape[1]}x{frames[0].image.shape[0]}", decode_fps, "frames")]
    yolo = create_detector("yolo", model=args.detector_model, device=args.device, confidence=0.25)
    for batch in (1, 8):
        _, fps = detect_rate(yolo, frames[: min(len(frames), 64)], batch)
        rows.append((f"detect (YOLO {Path(args.detector_model).stem}, 640 px)", f"batch {batch}", fps, "frames"))
    yolo.close()
    torch.set_num_threads(threads)  # ultralytics lowers the process's torch threads to cores - 1 on a CPU
    hog_found, hog_fps = detect_rate(create_detector("hog"), frames, 1)
    rows.append(("detect (HOG, 640 px wide)", "batch 1", hog_fps, "frames"))
    with tempfile.TemporaryDirectory() as folder:
        det_file = Path(folder) / "det.txt"
        people = write_det_file(hog_found, det_file)
        rows.append(("track (ByteTrack)", f"{people:.1f} people/frame", track_rate(frames, hog_found), "frames"))
        clips, tracklets, device = embed_rate(args.model, args.device, args.seconds)
        rows.append((f"embed ({args.model}, {device})", "4-frame clips, batch 64", clips, "clips"))
        rows.append((f"embed ({args.model}, {device})", "32-frame tracklets (8 clips)", tracklets, "tracklets"))
        short_video = Path(folder) / "video.avi"
        _write_prefix(frames, short_video)
        runs = [end_to_end(short_video, det_file, int(n), model, args.device)
                for model in dict.fromkeys([args.model, "keyreid_test"]) for n in args.cameras.split(",")]
    table = _table(rows, decode_fps, runs, people, args)
    print(table)
    if args.write:
        write_section(args.write, SECTION, table)


def _write_prefix(frames: list[Frame], path: Path) -> None:
    """The benchmark's frames as their own lossless-enough file, so every camera sees exactly these frames."""
    import cv2

    height, width = frames[0].image.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    try:
        for frame in frames:
            writer.write(frame.image)
    finally:
        writer.release()


def _table(rows: list, decode_fps: float, runs: list[dict], people: float, args: argparse.Namespace) -> str:
    lines = [
        "",
        f"Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads"
        + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ", no GPU") + ".",
        f"Command: `python bench/worker_throughput.py --frames {args.frames} --model {args.model} "
        f"--cameras {args.cameras}{' --quick' if args.quick else ''}`. Sample video (768x576, 10 fps), first "
        f"{args.frames} frames; {people:.1f} people per frame (HOG boxes). Random weights everywhere (same compute "
        "as trained ones). Ratio = rate / decode rate in the same run.",
        "",
        "| stage | setting | rate | unit/s | ratio to decode |",
        "| --- | --- | ---: | --- | ---: |",
    ]
    for name, setting, value, unit in rows:
        ratio = f"{value / decode_fps:.3f}" if unit == "frames" else "-"
        lines.append(f"| {name} | {setting} | {rate(value)} | {unit} | {ratio} |")
    lines += ["", "End to end (public HOG detections, ByteTrack, keypoint prior, embedding, acknowledged "
              "delivery; latency = last frame of a tracklet read -> matcher ack; keyreid_test is the tiny test "
              "model, which shows what the pipeline around the model costs):", "",
              "| model | cameras | frames | frames/s (all cameras) | per camera | tracklets | latency p50 / p95 (s) |",
              "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for run in runs:
        latency = "n/a" if run["p50"] is None else f"{run['p50']:.2f} / {run['p95']:.2f}"
        per_camera = rate(run["fps"] / run["cameras"])
        lines.append(f"| {run['model']} | {run['cameras']} | {run['frames']} | {rate(run['fps'])} | {per_camera} "
                     f"| {run['tracklets']} | {latency} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
