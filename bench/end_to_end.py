"""End to end: the demo's whole system (Redis, matcher, one worker process per camera) on the sample video.

    python bench/end_to_end.py [--models classical] [--frames 0] [--stride 2] [--write docs/benchmarks.md]

Two runs of :func:`keyreid_stream.demo.run_demo` on the two overlapping views cut from the sample video:

* **throughput** -- the files read as fast as the workers go: frames/s over all cameras, compared in the same run
  with OpenCV only decoding the same two files (the ratio column; these machines are noisy);
* **latency** -- the files read at their own frame rate (``pace``), so frame times are wall-clock read times as
  with live cameras: for every tracklet, the seconds from its last frame (the person leaving the camera) to the
  matcher's decision (the identity link being queryable through the API). The worker declares a track ended after
  ``tracklets.lost_after_s`` (1 s) without a sighting: that wait is part of the latency, and listed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, rate, write_section  # noqa: E402

from keyreid_stream.data.sample import default_cache_dir  # noqa: E402
from keyreid_stream.demo import DemoResult, choose_models, prepare_cameras, run_demo  # noqa: E402
from keyreid_stream.demo.summary import link_latencies  # noqa: E402
from keyreid_stream.query.client import QueryClient  # noqa: E402

SECTION = "End to end: cameras -> workers -> matcher"
LOST_AFTER_S = 1.0  # the worker's default tracklets.lost_after_s


def decode_rate(paths: list[str], stride: int, max_frames: int) -> float:
    """Frames/s of OpenCV decoding the files one after the other (every ``stride``-th frame, at most
    ``max_frames`` per file, 0 = all)."""
    started, frames = time.perf_counter(), 0
    for path in paths:
        capture = cv2.VideoCapture(path)
        index = kept = 0
        while capture.grab() and not (max_frames and kept >= max_frames):
            if index % stride == 0:
                capture.retrieve()
                kept += 1
            index += 1
        frames += kept
        capture.release()
    return frames / (time.perf_counter() - started)


def run(cameras, models, args: argparse.Namespace, *, pace: bool) -> tuple[DemoResult, list[float], list[float]]:
    measured: dict[str, list[float]] = {}

    def measure(result: DemoResult) -> None:  # while the matcher still serves
        client = QueryClient(result.api_url, timeout=30.0)
        every = [tid for identity in result.identities for tid in identity.tracklet_ids]
        linked = [tid for identity in result.cross_camera for tid in identity.tracklet_ids]
        measured["all"], measured["linked"] = link_latencies(client, every), link_latencies(client, linked)

    with tempfile.TemporaryDirectory() as folder:
        result = run_demo(cameras, models, stride=args.stride, max_frames=args.frames, pace=pace,
                          workdir=Path(folder), on_result=measure)
    return result, measured["all"], measured["linked"]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def render(fast: DemoResult, paced: DemoResult, latencies: tuple[list[float], list[float]], reference: float,
           args: argparse.Namespace) -> str:
    frames = sum(fast.frames_per_camera.values())
    fps = frames / fast.processing_s
    every, linked = latencies
    lines = ["", f"Machine: {machine()}.",
             f"Command: `python bench/end_to_end.py --models {args.models} --frames {args.frames} --stride "
             f"{args.stride}`. Models: {fast.models.summary}.", "",
             "| cameras | frames (all cameras) | frames/s | OpenCV decode only, frames/s | ratio | tracklets | "
             "identities | seen on both views |", "| --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| {len(fast.cameras)} | {frames} | {rate(fps)} | {rate(reference)} | {fps / reference:.3f} | "
             f"{sum(fast.tracklets_per_camera.values())} | {len(fast.identities)} | {len(fast.cross_camera)} |", "",
             "Latency from a person leaving a camera (the tracklet's last frame) to the identity link being "
             "queryable (the matcher's decision), with the files read at their own frame rate like live cameras "
             f"({sum(paced.frames_per_camera.values())} frames, {sum(paced.tracklets_per_camera.values())} "
             f"tracklets). It includes the worker's {LOST_AFTER_S:.0f} s wait before it declares a track ended.", "",
             "| tracklets | count | p50 s | p95 s | max s |", "| --- | --- | --- | --- | --- |"]
    for name, values in (("all", every), ("linked across the views", linked)):
        lines.append(f"| {name} | {len(values)} | {percentile(values, 0.5):.2f} | {percentile(values, 0.95):.2f} | "
                     f"{max(values, default=float('nan')):.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", choices=("auto", "classical", "trained"), default="classical")
    parser.add_argument("--frames", type=int, default=0, help="frames per camera after stride (0 = all)")
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--reid-checkpoint", default="")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    args = parser.parse_args()
    models = choose_models(args.models, reid_checkpoint=args.reid_checkpoint)
    cameras = prepare_cameras(["sample"], cache_dir=default_cache_dir(), max_frames=0)
    reference = decode_rate([camera.source for camera in cameras], args.stride, args.frames)
    fast, _, _ = run(cameras, models, args, pace=False)
    paced, every, linked = run(cameras, models, args, pace=True)
    text = render(fast, paced, (every, linked), reference, args)
    print(f"## {SECTION}\n{text}")
    if args.write:
        write_section(args.write, SECTION, text)


if __name__ == "__main__":
    main()
