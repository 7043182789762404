"""BlazePose keypoints per person box (lite / full / heavy, LiteRT on the CPU) against YOLO-pose on the same crops.

    python bench/blazepose_speed.py [--rounds 5] [--threads 1 2] [--no-yolo] [--write docs/benchmarks.md]

The people are the three boxes of ultralytics' bus.jpg (two men facing the camera, a walker cut by the edge);
each timed call is ``estimate_boxes(frame, boxes)`` on those 3 boxes: squaring and resizing each box to 256 x 256,
the landmark model, the mapping back to the frame. The models come from the weights cache
(``keyreid-stream weights fetch blazepose-lite blazepose-full blazepose-heavy``); a variant whose file is missing
is reported as such. *Reference*: the ``yolo-pose`` backend (``yolo11n-pose.yaml``, random weights cost the same
compute, image size 256) on the same boxes, in the same rounds. Rounds take turns over the rows, so load from
other processes hits every row alike; each cell is the median over the rounds of the mean per-box time.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, write_section  # noqa: E402

from keyreid_stream.keypoints.backends import create_backend  # noqa: E402
from keyreid_stream.keypoints.pose import PoseBackend, PoseError  # noqa: E402

BOXES = np.array([[50, 398, 245, 903], [223, 408, 344, 860], [669, 392, 809, 877]], np.float32)
CALLS_PER_ROUND = 10


def bus_photo() -> np.ndarray:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.origin:
        raise SystemExit("ultralytics (which ships bus.jpg) is not installed")
    return cv2.imread(str(Path(spec.origin).parent / "assets" / "bus.jpg"))


def build_rows(threads: list[int], yolo: bool) -> tuple[dict[str, PoseBackend], list[str]]:
    backends: dict[str, PoseBackend] = {}
    missing = []
    for variant in ("lite", "full", "heavy"):
        for count in threads:
            try:
                backends[f"blazepose-{variant}, {count} thread(s)"] = create_backend(
                    "blazepose", model=f"blazepose-{variant}", threads=count)
            except PoseError as exc:
                missing.append(f"blazepose-{variant}: {exc}")
                break
    if yolo:
        import torch

        torch.set_num_threads(max(threads))
        backends[f"yolo-pose (reference), yolo11n-pose.yaml, {max(threads)} thread(s)"] = create_backend(
            "yolo-pose", model="yolo11n-pose.yaml", device="cpu", image_size=256, confidence=0.25)
    return backends, missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--no-yolo", action="store_true", help="leave out the YOLO-pose reference")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    args = parser.parse_args()

    frame = bus_photo()
    backends, missing = build_rows(args.threads, yolo=not args.no_yolo)
    for backend in backends.values():  # warm-up
        backend.estimate_boxes(frame, BOXES)
    per_box: dict[str, list[float]] = {name: [] for name in backends}
    started = time.perf_counter()
    for _ in range(args.rounds):
        for name, backend in backends.items():
            begin = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                backend.estimate_boxes(frame, BOXES)
            per_box[name].append((time.perf_counter() - begin) / (CALLS_PER_ROUND * len(BOXES)))
    elapsed = time.perf_counter() - started
    medians = {name: statistics.median(times) for name, times in per_box.items()}
    reference = next((medians[name] for name in medians if name.startswith("yolo-pose")), None)
    full = next((medians[name] for name in medians if name.startswith("blazepose-full, 1 ")), None)

    lines = ["| backend | ms per box (median) | ms per box (min) | boxes/s | vs blazepose-full, 1 thread "
             "| vs yolo-pose |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, median in medians.items():
        versus_full = f"{median / full:.2f}x" if full else "-"
        versus_yolo = f"{median / reference:.2f}x" if reference else "-"
        lines.append(f"| {name} | {median * 1e3:.1f} | {min(per_box[name]) * 1e3:.1f} | {1 / median:.0f} "
                     f"| {versus_full} | {versus_yolo} |")
    table = "\n".join(lines)
    print(table)
    for line in missing:
        print(f"missing: {line}")
    if args.write:
        command = "python bench/blazepose_speed.py " + " ".join(sys.argv[1:])
        body = (
            f"\nCommand: `{command.strip()}` ({elapsed:.0f} s). Machine: {machine()}. Shared with other "
            "processes while it ran: compare rows (ratios), not absolute times.\n\n"
            "Each call is `estimate_boxes(frame, boxes)` on the three people of bus.jpg (810 x 1080): square each "
            "box (longer side grown by 10 % per side), resize to 256 x 256, run the landmark model, map the 17 "
            f"COCO joints back. {args.rounds} rounds of {CALLS_PER_ROUND} calls, taking turns over the rows; cells "
            "are per box. Reference: the `yolo-pose` backend (yolo11n-pose.yaml, random weights, image size 256) "
            "on the same boxes.\n\n" + table + "\n"
            + "".join(f"\nNot measured: {line}\n" for line in missing)
        )
        write_section(args.write, "BlazePose keypoints per person box", body)
    for backend in backends.values():
        backend.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
