"""Part-heatmap rendering + patch pooling (keypoints -> (6, 128) patch weights per frame) vs a numpy loop.

    python bench/heatmap_render.py [--clips 64] [--seconds 3] [--threads N] [--warmup N] [--min-iters 5]
        [--reference-clips 4] [--device auto|cpu|cuda] [--write docs/benchmarks.md]

One batch is 64 clips x 4 frames of 256x128: keypoints (64, 4, 17, 3) with x in [0, 128), y in [0, 256) and
confidence uniform in [0, 1) (so about a tenth of the joints are below the 0.1 threshold), rendered with
``render_patch_weights`` (what the model calls: 6 part heatmaps per frame, 16 frames at a time, mean-pooled to
16x16 patches), (64, 4, 6, 128). The keypoints are already on the device; the timed call is render + pool, nothing else.

*Reference* is :func:`reference_patches` below, a plain numpy loop over frames and joints that stamps each
visible joint's truncated Gaussian into its part's map, averages overlapping windows and mean-pools the cells.
Before anything is timed it is checked to give the same patches as the library (``np.allclose``, atol 1e-5).
It is slow, so it is timed on the first ``--reference-clips`` clips and scaled per clip to the batch. CPU rows
take turns call by call with the reference (load from other processes hits both alike); CUDA rows are ratios
against the same CPU reference timing. CPU always runs; CUDA runs when ``torch.cuda.is_available()``, in fp32
and with fp16 keypoints (the renderer computes in fp32 and returns fp16 weights).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, milliseconds, rate, write_section  # noqa: E402

from keyreid_stream.keypoints.heatmaps import (  # noqa: E402
    CONFIDENCE_THRESHOLD,
    PART_JOINTS,
    gaussian_radius,
    render_patch_weights,
)

FRAMES, HEIGHT, WIDTH, PATCH = 4, 256, 128, 16
CHECK_ATOL = 1e-5
JOINT_PART = {joint: part for part, joints in enumerate(PART_JOINTS) for joint in joints}


@dataclasses.dataclass(frozen=True)
class Row:
    device: str
    dtype: str
    threads: str
    clips: int
    times: list[float]  # seconds per batch of `clips` clips
    reference: float  # numpy loop, seconds per batch (scaled from the subset)
    peak_mib: float | None
    max_diff: float  # max |ours - reference| on the reference subset

    @property
    def median(self) -> float:
        return statistics.median(self.times)


def make_keypoints(clips: int, seed: int = 0) -> torch.Tensor:
    """(clips, 4, 17, 3): x in [0, W), y in [0, H), confidence uniform in [0, 1)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(clips, FRAMES, 17, 3, generator=gen) * torch.tensor([WIDTH, HEIGHT, 1.0])


def reference_patches(keypoints: np.ndarray, height: int, width: int, patch: int) -> np.ndarray:
    """Plain loop: (..., 17, 3) keypoints -> (..., 6, (H/p) * (W/p)) patch means of the part heatmaps."""
    radius = gaussian_radius(width)
    sigma = (2 * radius + 1) / 4.0
    lead = keypoints.shape[:-2]
    flat = keypoints.reshape(-1, 17, 3).astype(np.float32)
    out = np.empty((flat.shape[0], len(PART_JOINTS), (height // patch) * (width // patch)), dtype=np.float32)
    for sample, joints in enumerate(flat):
        total = np.zeros((len(PART_JOINTS), height, width), dtype=np.float32)
        count = np.zeros((len(PART_JOINTS), height, width), dtype=np.float32)
        for joint, (x, y, conf) in enumerate(joints):
            finite = math.isfinite(x) and math.isfinite(y) and math.isfinite(conf)
            if not finite or conf <= CONFIDENCE_THRESHOLD:
                continue
            col, row = int(np.rint(x)), int(np.rint(y))  # round half to even, like torch.round
            x0, x1 = max(0, col - radius), min(width - 1, col + radius)
            y0, y1 = max(0, row - radius), min(height - 1, row + radius)
            if x0 > x1 or y0 > y1:  # window entirely outside the image
                continue
            cols = np.arange(x0, x1 + 1, dtype=np.float32)
            rows = np.arange(y0, y1 + 1, dtype=np.float32)
            squared = (cols[None, :] - x) ** 2 + (rows[:, None] - y) ** 2
            gauss = np.exp(-squared / np.float32(2 * sigma * sigma))
            part = JOINT_PART[joint]
            total[part, y0:y1 + 1, x0:x1 + 1] += gauss
            count[part, y0:y1 + 1, x0:x1 + 1] += 1
        heatmaps = total / np.maximum(count, 1)
        cells = heatmaps.reshape(len(PART_JOINTS), height // patch, patch, width // patch, patch)
        out[sample] = cells.mean(axis=(2, 4)).reshape(len(PART_JOINTS), -1)
    return out.reshape(*lead, len(PART_JOINTS), -1)


def render_and_pool(keypoints: torch.Tensor) -> torch.Tensor:
    return render_patch_weights(keypoints, HEIGHT, WIDTH, PATCH)


def check_reference() -> None:
    """The reference and the library agree (random keypoints plus edge cases) before anything is timed."""
    keypoints = make_keypoints(2, seed=1)
    keypoints[0, 0, 0] = torch.tensor([0.0, 0.0, 0.9])  # corner: window clipped
    keypoints[0, 0, 1] = torch.tensor([WIDTH - 0.5, HEIGHT - 0.5, 0.9])  # rounds past the last pixel
    keypoints[0, 0, 2] = torch.tensor([float("nan"), 10.0, 0.9])  # non-finite: skipped
    keypoints[0, 0, 3] = torch.tensor([40.5, 60.5, 0.9])  # exact halves
    keypoints[0, 0, 4] = torch.tensor([41.0, 61.0, CONFIDENCE_THRESHOLD])  # at the threshold: skipped
    with torch.inference_mode():
        ours = render_and_pool(keypoints).numpy()
    reference = reference_patches(keypoints.numpy(), HEIGHT, WIDTH, PATCH)
    diff = float(np.abs(ours - reference).max())
    assert np.allclose(ours, reference, atol=CHECK_ATOL), f"reference differs from the library: {diff:.2e}"
    print(f"reference check: max |diff| {diff:.1e} (atol {CHECK_ATOL:g}) on {keypoints.shape[0]} clips")


def time_calls(fns: list[Callable[[], object]], syncs: list[Callable[[], None]], seconds: float,
               min_iters: int, warmup: int) -> list[list[float]]:
    """Per-call seconds of each function after ``warmup`` calls each; they take turns, each for ``seconds`` in
    all and at least ``min_iters`` calls."""
    for fn, sync in zip(fns, syncs):
        for _ in range(warmup):
            fn()
        sync()
    times: list[list[float]] = [[] for _ in fns]
    start = time.perf_counter()
    while len(times[0]) < min_iters or time.perf_counter() - start < seconds * len(fns):
        for fn, sync, spent in zip(fns, syncs, times):
            begin = time.perf_counter()
            fn()
            sync()
            spent.append(time.perf_counter() - begin)
    return times


def bench(args: argparse.Namespace) -> tuple[list[Row], list[float]]:
    """(rows, per-batch reference times)."""
    keypoints = make_keypoints(args.clips)
    subset = keypoints[: args.reference_clips].numpy()
    expected = reference_patches(subset, HEIGHT, WIDTH, PATCH)
    scale = args.clips / args.reference_clips
    threads = str(torch.get_num_threads())
    rows = []
    with torch.inference_mode():
        # CPU, taking turns with the reference.
        ours_cpu, reference_times = time_calls(
            [lambda: render_and_pool(keypoints), lambda: reference_patches(subset, HEIGHT, WIDTH, PATCH)],
            [lambda: None, lambda: None], args.seconds, args.min_iters, args.warmup)
        reference_times = [t * scale for t in reference_times]
        reference = statistics.median(reference_times)
        diff = float(np.abs(render_and_pool(keypoints)[: args.reference_clips].numpy() - expected).max())
        rows.append(Row("cpu", "fp32", threads, args.clips, ours_cpu, reference, None, diff))
        print(table(rows[-1:], header=False), flush=True)
        if args.device == "cuda":
            device = torch.device("cuda")
            name = torch.cuda.get_device_name(device)
            inputs = {"fp32": keypoints.to(device), "fp16": keypoints.to(device, torch.float16)}
            for dtype, points in inputs.items():
                def fn(p: torch.Tensor = points) -> torch.Tensor:
                    return render_and_pool(p)

                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats(device)
                base = torch.cuda.memory_allocated(device)
                (spent,) = time_calls([fn], [torch.cuda.synchronize], args.seconds, args.min_iters,
                                      args.warmup_cuda)
                peak = (torch.cuda.max_memory_allocated(device) - base) / 2**20
                out = fn()[: args.reference_clips].float().cpu().numpy()
                diff = float(np.abs(out - expected).max())
                rows.append(Row(f"cuda ({name})", dtype, "-", args.clips, spent, reference, peak, diff))
                print(table(rows[-1:], header=False), flush=True)
    return rows, reference_times


def table(rows: list[Row], header: bool = True, reference_times: list[float] | None = None,
          args: argparse.Namespace | None = None) -> str:
    lines = [] if not header else [
        "| device | keypoints | threads | ms/batch (median) | ms/batch (min) | clips/s | frames/s "
        "| speed-up vs numpy loop | peak GPU MiB | max diff vs loop |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        clips = r.clips / r.median
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:,.0f}"
        lines.append(f"| {r.device} | {r.dtype} | {r.threads} | {milliseconds(r.median)} | {milliseconds(min(r.times))} "
                     f"| {rate(clips)} | {rate(clips * FRAMES)} | {r.reference / r.median:.1f}x | {peak} "
                     f"| {r.max_diff:.0e} |")
    if reference_times is not None and args is not None:
        reference = statistics.median(reference_times)
        clips = args.clips / reference
        lines.append(f"| cpu, numpy loop (reference, {args.reference_clips} clips scaled) | fp32 | 1 "
                     f"| {milliseconds(reference)} | {milliseconds(min(reference_times))} | {rate(clips)} "
                     f"| {rate(clips * FRAMES)} | 1.0x | - | 0 |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    add = parser.add_argument
    add("--device", choices=("auto", "cpu"), default="auto", help="auto: CPU, and CUDA when available")
    add("--clips", type=int, default=64, help="clips per batch (4 frames each)")
    add("--reference-clips", type=int, default=4, help="clips the numpy loop is timed on (scaled per clip)")
    add("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    add("--min-iters", type=int, default=5, help="timed calls per measurement, at least")
    add("--warmup", type=int, default=2, help="untimed calls first on CPU")
    add("--warmup-cuda", type=int, default=10, help="untimed calls first on CUDA")
    add("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    add("--write", type=Path, default=None, help="update this markdown file")
    args = parser.parse_args()
    args.device = "cuda" if args.device == "auto" and torch.cuda.is_available() else "cpu"
    if not 1 <= args.reference_clips <= args.clips:
        parser.error("--reference-clips must be between 1 and --clips")
    return args


def explanation(args: argparse.Namespace, elapsed: float) -> str:
    command = " ".join(["python bench/heatmap_render.py", *sys.argv[1:]])
    return (
        f"\nCommand: `{command}` ({elapsed:.0f} s). Machine: {machine()}. torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads.\n\n"
        f"A batch is {args.clips} clips x {FRAMES} frames: keypoints ({args.clips}, {FRAMES}, 17, 3) "
        f"(random, inside the {HEIGHT}x{WIDTH} crop, confidence uniform in [0, 1)) rendered with "
        "`render_patch_weights` (6 part heatmaps per frame, 16 frames at a time) and mean-pooled to "
        f"{PATCH}x{PATCH} patches, ({args.clips}, {FRAMES}, 6, {(HEIGHT // PATCH) * (WIDTH // PATCH)}). "
        "Keypoints are already on the device; fp16 means fp16 keypoints in and heatmaps out (computed in "
        f"fp32). Each cell is the median (and min) per-batch time after {args.warmup} warm-up call(s) on "
        f"CPU, {args.warmup_cuda} on CUDA (synchronised), over at least {args.seconds:g} s and "
        f"{args.min_iters} calls. Peak GPU MiB is the peak allocated during the timed calls above what was "
        "allocated before.\n\n"
        "Reference: `reference_patches` in the script, a plain per-frame, per-joint numpy loop (stamp each "
        "visible joint's truncated Gaussian, average overlapping windows per part, mean-pool the cells), "
        f"checked to match the library (atol {CHECK_ATOL:g}) before timing; it is timed on "
        f"{args.reference_clips} clips (taking turns with the CPU rows) and scaled per clip to the batch. "
        "The speed-up of CUDA rows is against that CPU timing. *Max diff vs loop*: max |difference| of the "
        "pooled patches on those clips.\n\n"
        + ("" if args.device == "cuda" else "No CUDA device on this machine: the table has CPU rows only.\n\n")
    )


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    check_reference()
    print(table([]), flush=True)
    rows, reference_times = bench(args)
    elapsed = time.perf_counter() - started
    result = table(rows, reference_times=reference_times, args=args)
    print(f"\n{result}\n\ntotal {elapsed:.0f} s")
    if args.write:
        write_section(args.write, "Part heatmap rendering", explanation(args, elapsed) + result + "\n")


if __name__ == "__main__":
    main()
