"""The GPU check: everything that needs a GPU, in one command, within 8 minutes on one GPU.

    scripts/dev gpu-check [--write docs/benchmarks.md] [--budget 470] [--logs runs/gpu-check]
    scripts/dev gpu-check --dry-run [--write FILE]     # the same stages with tiny sizes on the CPU

Stages, each in its own process with its own time limit (a stage that fails or runs out of time is reported and
the next one runs; the command exits 1 when any stage failed):

1. ``gpu tests`` -- pytest on the ``gpu``-marked tests. On a GPU machine a skipped one is a failure.
2. ``model throughput`` -- ``bench/model_throughput.py``: KeyRe-ID and VID-Trans-ReID (ViT-B/16) in fp32 and bf16
   (autocast), batches 1, 32 and 64, against the authors' forward, with the fraction of the GPU's peak.
3. ``training`` -- bf16 training steps of KeyRe-ID ViT-B/16 (random init) at 256x128 with the project's trainer on
   a generated synthetic dataset (MARS layout): steps, clips/s, losses, peak memory.
4. ``worker N cameras`` (N = 8, 32, 64) -- the real camera worker on N synthetic 25 fps cameras read at their
   own pace: YOLO11n built from its yaml (random weights: the compute of the real network), ByteTrack, keypoint
   prior, KeyRe-ID ViT-B/16 embeddings (random weights), acknowledged ZeroMQ delivery to a local socket.
   Random YOLO weights find nobody above any useful threshold, so the detector keeps its 6 best boxes per frame
   (confidence 0, tracker thresholds 0): meaningless boxes that load tracking and embedding like 6 people per
   camera. A worker still running 10 s + 1.5 x the video's length after it started is stopped (it flushes, its
   numbers count). It kept up when it read >= 95 % of the frames offered, the detector's capacity (frames per
   busy second, one batched model for all cameras) reaches 95 % of N x 25 frames/s, and the embedder's capacity
   (tracklets per busy second) the rate at which tracklets were made. Frames per camera per second count the
   whole run, the final flush included.

The device comes from ``resolve_device_defaults`` of the model benchmark (CUDA when torch sees it); without a GPU
the check stops at once unless ``--dry-run``. The results go to the ``GPU check`` section of ``--write`` (real
run: docs/benchmarks.md by default; a dry run writes only where told). Stage logs: ``--logs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, rate, write_section  # noqa: E402

SECTION = "GPU check"
CAMERA_FPS = 25.0
PEOPLE = 6  # boxes per frame the random-weight detector keeps
KEPT_UP = 0.95
STARTUP_S, FALL_BEHIND = 10.0, 1.5  # a worker is stopped 10 s + 1.5 x the video's length after it starts


@dataclasses.dataclass(frozen=True)
class Sizes:
    """What the stages run: the real check on a GPU, or the dry run on a CPU."""

    budget_s: float
    limits: dict[str, float]  # per stage name prefix, seconds
    model_args: tuple[str, ...]
    train_arch: str
    train_image: tuple[int, int]  # the model's input; the dataset is generated at half that size, then resized
    train_ids: int
    train_steps: int
    train_batch: tuple[int, int]  # ids per batch, tracklets per id
    cameras: tuple[int, ...]
    video_seconds: float
    video_size: tuple[int, int]  # width, height
    yolo_size: int
    embed_arch: str


REAL = Sizes(
    budget_s=470.0,
    limits={"gpu tests": 60, "model throughput": 110, "training": 80, "worker": 70},
    model_args=("--models", "keyreid_vit_base,vidtrans_vit_base", "--dtypes", "fp32,bf16",
                "--batch-sizes", "1,32,64", "--seconds", "1.5"),
    train_arch="keyreid_vit_base", train_image=(256, 128), train_ids=160, train_steps=20, train_batch=(8, 4),
    cameras=(8, 32, 64), video_seconds=10.0, video_size=(640, 360), yolo_size=640, embed_arch="keyreid_vit_base",
)
DRY = Sizes(
    budget_s=240.0,  # generous: the limits catch a hang; a dry run takes about 40 s on 2 idle cores
    limits={"gpu tests": 60, "model throughput": 60, "training": 60, "worker": 60},
    model_args=("--quick", "--models", "keyreid_vit_base", "--dtypes", "fp32,bf16", "--batch-sizes", "1",
                "--seconds", "0.01", "--min-iters", "1", "--warmup", "1", "--peak-size", "256",
                "--skip-reference"),
    train_arch="keyreid_test", train_image=(64, 32), train_ids=8, train_steps=4, train_batch=(2, 2),
    cameras=(2,), video_seconds=1.0, video_size=(256, 160), yolo_size=128, embed_arch="keyreid_test",
)


@dataclasses.dataclass
class StageResult:
    name: str
    status: str  # ok | failed | timed out | not run
    seconds: float
    limit: float
    summary: str
    numbers: dict[str, Any] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------- stages run in their own process


def run_training(sizes: Sizes, device: str, folder: Path) -> dict[str, Any]:
    """bf16 training steps with the project's trainer on a generated synthetic dataset. The rate comes from the
    trainer's own log (``clips_per_second`` since the epoch started, after ``run.log_every`` steps): the model's
    build and the first epoch's start are not in it."""
    import csv
    import math

    import torch

    from keyreid_stream.config import load_config
    from keyreid_stream.data.synthetic import SyntheticSpec, write_synthetic_mars
    from keyreid_stream.train.config import TrainingConfig
    from keyreid_stream.train.trainer import train

    data = folder / "synthetic"
    write_synthetic_mars(data, SyntheticSpec(train_ids=sizes.train_ids, test_ids=2, distractor_tracklets=1,
                                             junk_tracklets=1, cameras=2, cameras_per_id=(2, 2), frames=(8, 8),
                                             image_size=(sizes.train_image[0] // 2, sizes.train_image[1] // 2)))
    height, width = sizes.train_image
    ids, per_id = sizes.train_batch
    overrides = [
        f"data.root={data}", f"data.image_size=[{height}, {width}]", f"model.arch={sizes.train_arch}",
        "model.pretrained=''", "optim.amp=bf16", f"run.device={device}", f"run.output={folder / 'run'}",
        f"data.workers={min(4, os.cpu_count() or 1) if device == 'cuda' else 0}", f"sampler.ids_per_batch={ids}",
        f"sampler.tracklets_per_id={per_id}", "data.validation_ids=0.1", "optim.epochs=1000",
        "run.eval_every=1000", "run.progress=false", "run.tensorboard=false", "eval.reports=false",
        f"run.log_every={max(1, sizes.train_steps // 4)}",
    ]
    config = load_config(TrainingConfig, ROOT / "configs" / "keyreid_synthetic.yaml", overrides)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    summary = train(config, evaluate_test=False, stop_after_steps=sizes.train_steps)
    seconds = time.perf_counter() - started
    losses = summary.losses
    if len(losses) < sizes.train_steps or not all(math.isfinite(loss) for loss in losses):
        raise RuntimeError(f"expected {sizes.train_steps} finite losses, got {losses}")
    with (folder / "run" / "metrics.csv").open(encoding="utf-8") as metrics:
        rates = [float(row["value"]) for row in csv.DictReader(metrics) if row["name"] == "clips_per_second"]
    if not rates:
        raise RuntimeError("the trainer logged no clips_per_second (an epoch shorter than run.log_every steps?)")
    return {
        "arch": sizes.train_arch, "image": f"{height}x{width}", "steps": len(losses), "batch_clips": ids * per_id,
        "seconds": seconds, "clips_per_s": rates[-1], "first_loss": losses[0], "last_loss": losses[-1],
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
    }


def write_video(path: Path, seconds: float, size: tuple[int, int]) -> int:
    """A synthetic 25 fps street: a textured background and people-sized blocks walking across it."""
    import cv2
    import numpy as np

    width, height = size
    rng = np.random.default_rng(0)
    background = cv2.GaussianBlur(rng.integers(40, 200, (height, width, 3), dtype=np.uint8), (0, 0), 3)
    walkers = [(rng.uniform(0, width), rng.uniform(0.2, 0.5) * height, rng.uniform(-3, 3),
                tuple(int(c) for c in rng.integers(0, 255, 3))) for _ in range(PEOPLE)]
    frames = round(seconds * CAMERA_FPS)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), CAMERA_FPS, (width, height))
    try:
        for index in range(frames):
            image = background.copy()
            for x0, top, speed, colour in walkers:
                x = int((x0 + speed * index) % width)
                tall = int(height * 0.45)
                cv2.rectangle(image, (x, int(top)), (x + tall // 3, int(top) + tall), colour, -1)
                cv2.circle(image, (x + tall // 6, int(top) - tall // 10), tall // 10, colour, -1)
            writer.write(image)
    finally:
        writer.release()
    return frames


def run_worker_cameras(sizes: Sizes, device: str, folder: Path, cameras: int) -> dict[str, Any]:
    """The real worker on ``cameras`` paced synthetic cameras (see the module docstring)."""
    import zmq
    from worker_throughput import AckingRouter

    from keyreid_stream.workers.config import (
        CameraConfig,
        DetectorConfig,
        EmbeddingConfig,
        MetricsConfig,
        PublishConfig,
        TrackerConfig,
        TrackletConfig,
        WorkerConfig,
    )
    from keyreid_stream.workers.service import build_worker

    video = folder / "street.avi"
    frames = write_video(video, sizes.video_seconds, sizes.video_size)
    context = zmq.Context()
    router = AckingRouter(context)
    router.start()
    config = WorkerConfig(
        cameras=tuple(CameraConfig(id=f"cam{i:02d}", source=str(video), pace=True) for i in range(cameras)),
        detector=DetectorConfig(kind="yolo", model="yolo11n.yaml", device=device, image_size=sizes.yolo_size,
                                confidence=0.0, half=device == "cuda", batch_size=max(16, min(64, cameras)),
                                options={"max_people": PEOPLE}),
        tracker=TrackerConfig(params={"track_high_thresh": 0.0, "track_low_thresh": 0.0, "new_track_thresh": 0.0,
                                      "fuse_score": False}),  # scores of random weights are ~1e-4
        tracklets=TrackletConfig(min_confidence=0.0, max_overlap=1.0, min_box_height=0, min_box_width=0,
                                 emit_every_s=max(1.0, sizes.video_seconds / 3)),
        embedding=EmbeddingConfig(arch=sizes.embed_arch, device=device),
        publish=PublishConfig(matcher=f"tcp://127.0.0.1:{router.port}", flush_timeout_s=10.0),
        metrics=MetricsConfig(log_every_s=0),
    )
    # A worker that falls far behind is stopped (it then flushes what it has) so that its numbers still come back;
    # the clock starts once the worker is built (the models loaded).
    stop = threading.Event()
    timer = threading.Timer(STARTUP_S + FALL_BEHIND * sizes.video_seconds, stop.set)
    try:
        worker, parts = build_worker(config, context)
        try:
            timer.start()
            report = worker.run(stop)
        finally:
            for part in parts:
                part.close()
    finally:
        timer.cancel()
        router.close()
        context.destroy(linger=0)
    read = sum(report.counters.get(f"cam{i:02d}.frames", 0) for i in range(cameras))
    detections = sum(report.counters.get(f"cam{i:02d}.detections", 0) for i in range(cameras))
    if report.camera_errors:
        raise RuntimeError(f"camera errors: {report.camera_errors}")
    stages = {name: {"items": s.items, "rate": s.rate, "capacity": s.capacity} for name, s in report.stages.items()}
    detect_capacity = stages["detect"]["capacity"] or 0.0
    embed_capacity = stages["embed"]["capacity"]
    tracklets_per_s = report.publisher.acked / sizes.video_seconds
    kept_up = (read >= KEPT_UP * cameras * frames and detect_capacity >= KEPT_UP * cameras * CAMERA_FPS
               and (embed_capacity is None or embed_capacity >= tracklets_per_s))
    return {
        "cameras": cameras, "frames": read, "frames_offered": cameras * frames, "video_seconds": sizes.video_seconds, "seconds": report.elapsed_s,
        "fps_per_camera": read / cameras / report.elapsed_s, "kept_up": kept_up,
        "people_per_frame": detections / max(read, 1), "tracklets": report.publisher.acked,
        "dropped": report.publisher.dropped, "latency_p50": report.latency_p50_s,
        "latency_p95": report.latency_p95_s, "stages": stages,
    }


def stage_main(args: argparse.Namespace) -> int:
    """``--stage NAME``: run one stage in this process and write its numbers as JSON to ``--result``."""
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sizes = DRY if args.dry_run else REAL
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        if args.stage == "training":
            numbers = run_training(sizes, args.device, Path(folder))
        else:
            numbers = run_worker_cameras(sizes, args.device, Path(folder), int(args.stage.split("-", 1)[1]))
    Path(args.result).write_text(json.dumps(numbers), encoding="utf-8")
    return 0


# --------------------------------------------------------------------------- the orchestrator


def slug(name: str) -> str:
    return re.sub(r"\W+", "-", name).strip("-")


def run_stage(command: list[str], limit: float, log: Path) -> tuple[str, float, str]:
    """Run ``command`` in a process group of its own, its output in ``log``, for at most ``limit`` seconds: the
    group is killed at the limit, and whatever it left running when it ended. Status, seconds, the log's tail."""
    started = time.perf_counter()
    env = {**os.environ, "YOLO_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    with log.open("w", encoding="utf-8") as out:
        out.write("$ " + " ".join(command) + "\n")
        out.flush()
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=limit)
            status = "ok" if code == 0 else f"failed (exit {code})"
        except subprocess.TimeoutExpired:
            status = f"timed out after {limit:.0f} s"
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()
    tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-12:]
    return status, time.perf_counter() - started, "\n".join(tail)


def gpu_test_files() -> list[str]:
    """The test files that hold ``gpu``-marked tests."""
    return sorted(str(path.relative_to(ROOT)) for path in (ROOT / "tests").rglob("test_*.py")
                  if "mark.gpu" in path.read_text(encoding="utf-8"))


def pytest_counts(tail: str) -> dict[str, int]:
    counts = {}
    for line in reversed(tail.splitlines()):
        found = re.findall(r"(\d+) (passed|failed|skipped|error|errors|deselected)", line)
        if found:
            counts = {word.rstrip("s") if word == "errors" else word: int(n) for n, word in found}
            break
    return counts


def markdown_table(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if line.startswith("|"))


def build_stages(args: argparse.Namespace, sizes: Sizes, device: str, scratch: Path
                 ) -> list[tuple[str, list[str], float]]:
    """(name, command, time limit) of every stage."""
    python, own = sys.executable, [sys.executable, __file__, "--device", device]
    own_tail = ["--dry-run"] if args.dry_run else []
    return [
        ("gpu tests", [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *gpu_test_files()],
         sizes.limits["gpu tests"]),
        ("model throughput", [python, "bench/model_throughput.py", "--device", device, *sizes.model_args,
                              "--write", str(scratch / "model.md")], sizes.limits["model throughput"]),
        ("training", [*own, "--stage", "training", "--result", str(scratch / "training.json"), *own_tail],
         sizes.limits["training"]),
        *[(f"worker {n} cameras", [*own, "--stage", f"worker-{n}", "--result", str(scratch / f"worker-{n}.json"),
                                   *own_tail], sizes.limits["worker"]) for n in sizes.cameras],
    ]


def check(stages: list[tuple[str, list[str], float]], budget: float, logs: Path, dry_run: bool
          ) -> list[StageResult]:
    """Run the stages in order within ``budget`` seconds; a stage that fails or times out does not stop the rest."""
    logs.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + budget
    results: list[StageResult] = []
    for name, command, stage_limit in stages:
        limit = min(stage_limit, deadline - time.perf_counter())
        if limit < 5:
            results.append(StageResult(name, "not run", 0.0, 0.0, f"no time left in the {budget:.0f} s budget"))
            print(f"[{name}] not run: no time left in the {budget:.0f} s budget", flush=True)
            continue
        print(f"[{name}] running (limit {limit:.0f} s)", flush=True)
        log = logs / f"{slug(name)}.log"
        status, seconds, tail = run_stage(command, limit, log)
        result = StageResult(name, status, seconds, limit, "")
        if status != "ok":
            result.summary = f"see {log}"
            print(tail, flush=True)
        elif name == "gpu tests":
            counts = result.numbers = pytest_counts(tail)
            result.summary = ", ".join(f"{n} {word}" for word, n in counts.items())
            if not dry_run and counts.get("skipped", 0):
                result.status = "failed (gpu tests skipped on a GPU machine)"
        elif "--write" in command:  # a benchmark that writes a markdown section
            written = Path(command[command.index("--write") + 1])
            result.numbers = {"table": markdown_table(written.read_text(encoding="utf-8"))}
            result.summary = "table below"
        elif "--result" in command:
            result.numbers = json.loads(Path(command[command.index("--result") + 1]).read_text(encoding="utf-8"))
            result.summary = summarise(result.numbers)
        print(f"[{name}] {result.status} in {seconds:.0f} s: {result.summary}", flush=True)
        results.append(result)
    return results


def summarise(numbers: dict[str, Any]) -> str:
    if "steps" in numbers:
        peak = "" if numbers["peak_gib"] is None else f", peak {numbers['peak_gib']:.1f} GiB"
        return (f"{numbers['steps']} bf16 steps of {numbers['arch']} ({numbers['batch_clips']} clips of 4 frames, "
                f"{numbers['image']}) in {numbers['seconds']:.0f} s: {numbers['clips_per_s']:.1f} clips/s after "
                f"start-up, loss "
                f"{numbers['first_loss']:.3g} -> {numbers['last_loss']:.3g}{peak}")
    kept = "kept up" if numbers["kept_up"] else "fell behind"
    return (f"{numbers['cameras']} x {CAMERA_FPS:g} fps for {numbers['video_seconds']:g} s: {kept}, "
            f"{numbers['tracklets']} tracklets")


def device_line(device: str) -> str:
    import torch

    if device != "cuda":
        return f"no GPU (CPU dry run), torch {torch.__version__}"
    props = torch.cuda.get_device_properties(0)
    return (f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB, {torch.cuda.device_count()} visible), "
            f"torch {torch.__version__}, CUDA {torch.version.cuda}")


def report(results: list[StageResult], args: argparse.Namespace, device: str, elapsed: float) -> str:
    command = "scripts/dev gpu-check" + (" --dry-run" if args.dry_run else "")
    lines = [
        "", f"Command: `{command}` ({elapsed:.0f} s; budget {args.budget:.0f} s). Machine: {machine()}; "
        f"{device_line(device)}." + (" A dry run: tiny sizes on the CPU, numbers meaningless." if args.dry_run
                                    else ""), "",
        "Each stage runs in its own process with its own time limit; see `bench/gpu_check.py` for what each "
        "does. Worker cameras are synthetic 25 fps streams read at their own pace; YOLO11n (from its yaml, random "
        f"weights) keeps its {PEOPLE} best boxes per frame, so tracking and embedding are loaded like {PEOPLE} "
        "people per camera; KeyRe-ID ViT-B/16 random weights embed the tracklets.", "",
        "| stage | status | seconds | limit | result |", "| --- | --- | ---: | ---: | --- |",
    ]
    for r in results:
        lines.append(f"| {r.name} | {r.status} | {r.seconds:.0f} | {r.limit:.0f} | {r.summary} |")
    model = next((r for r in results if r.name == "model throughput" and r.numbers), None)
    if model:
        lines += ["", "### Model throughput (fp32 and bf16 autocast; reference: the authors' forward)", "",
                  model.numbers["table"]]
    workers = [r.numbers for r in results if r.name.startswith("worker") and r.numbers]
    if workers:
        lines += ["", "### Worker on synthetic 25 fps cameras", "",
                  "| cameras | frames read / offered | video s | run s | frames/s per camera | kept up | boxes per frame "
                  "| tracklets | latency p50 / p95 (s) | detect capacity (frames/s) | vs offered | embed capacity "
                  "(tracklets/s) |",
                  "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
        for w in workers:
            latency = "n/a" if w["latency_p50"] is None else f"{w['latency_p50']:.2f} / {w['latency_p95']:.2f}"
            capacity = {name: w["stages"].get(name, {}).get("capacity") for name in ("detect", "embed")}
            cells = {k: "-" if v is None else rate(v) for k, v in capacity.items()}
            offered = (capacity["detect"] or 0.0) / (w["cameras"] * CAMERA_FPS)
            lines.append(f"| {w['cameras']} | {w['frames']} / {w['frames_offered']} | {w['video_seconds']:g} | {w['seconds']:.1f} "
                         f"| {w['fps_per_camera']:.1f} | {'yes' if w['kept_up'] else 'no'} "
                         f"| {w['people_per_frame']:.1f} | {w['tracklets']} | {latency} | {cells['detect']} "
                         f"| {offered:.2f}x | {cells['embed']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (what CI runs)")
    parser.add_argument("--write", type=Path, default=None,
                        help="markdown file to update (default: docs/benchmarks.md, a dry run: none)")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all stages (default 470; dry 240)")
    parser.add_argument("--logs", default=str(ROOT / "runs" / "gpu-check"), help="folder for the stage logs")
    parser.add_argument("--stage", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write is None and not args.dry_run and not args.stage:
        args.write = ROOT / "docs" / "benchmarks.md"
    args.budget = args.budget or (DRY if args.dry_run else REAL).budget_s
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.stage:
        return stage_main(args)
    from model_throughput import resolve_device_defaults

    devices = argparse.Namespace(device="cpu" if args.dry_run else "auto", dtypes=None, batch_sizes=None)
    if not resolve_device_defaults(devices) and not args.dry_run:
        print("gpu-check: torch sees no CUDA device (torch.cuda.is_available() is False); on a CPU run "
              "`scripts/dev gpu-check --dry-run`", file=sys.stderr)
        return 2
    started = time.perf_counter()
    sizes = DRY if args.dry_run else REAL
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        stages = build_stages(args, sizes, devices.device, Path(scratch))
        results = check(stages, args.budget, Path(args.logs), args.dry_run)
    elapsed = time.perf_counter() - started
    text = report(results, args, devices.device, elapsed)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)
    failed = [r.name for r in results if r.status != "ok"]
    if failed:
        print(f"gpu-check: {len(failed)} stage(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"gpu-check: all {len(results)} stages passed in {elapsed:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
