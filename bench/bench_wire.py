"""Wire codec throughput: encode + decode of tracklet messages, against pickle in the same run.

    python bench/bench_wire.py [--seconds 1.0] [--write docs/benchmarks.md]

pickle is the reference only (the codec never unpickles network bytes): the ratio says what the validation and
the explicit format cost. Each case runs for a fixed time; the median of 5 repeats is reported.
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, write_section

from keyreid_stream.contracts import TrackletMessage
from keyreid_stream.wire import decode, encode

CASES = {  # descriptor sizes the system actually sends
    "global + 6 parts of 768 (5,376)": 5376,
    "authors' 768 + 6 x 3072 layout (19,200)": 19200,
    "demo colour histogram (128)": 128,
}
THUMBNAIL = b"\xff\xd8\xff\xe0" + bytes(6000) + b"\xff\xd9"  # a typical 6 KB JPEG thumbnail


def rate(fn: Callable[[], object], seconds: float) -> float:
    repeats = []
    for _ in range(5):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds / 5:
            fn()
            count += 1
        repeats.append(count / elapsed)
    return statistics.median(repeats)


def run(seconds: float) -> list[tuple[str, int, float, float, float]]:
    rows = []
    rng = np.random.default_rng(0)
    for name, dim in CASES.items():
        message = TrackletMessage(camera_id="cam01", track_id=42, start_time=1.7e9, end_time=1.7e9 + 4.2,
                                  num_frames=42, descriptor=rng.standard_normal(dim).astype(np.float32),
                                  model_name="keyreid_vit_base", model_version="1.0", thumbnail_jpeg=THUMBNAIL)
        payload = encode(message)
        pickled = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        ours = rate(lambda message=message: decode(encode(message)), seconds)
        reference = rate(lambda message=message: pickle.loads(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)),
                         seconds)
        rows.append((name, len(payload), ours, reference, len(pickled)))
    return rows


def table(rows: list[tuple[str, int, float, float, float]]) -> str:
    lines = ["| descriptor | wire bytes | codec encode+decode /s | pickle round trip /s | codec / pickle |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name, size, ours, reference, _ in rows:
        lines.append(f"| {name} | {size:,} | {ours:,.0f} | {reference:,.0f} | {ours / reference:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per case and method")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file")
    args = parser.parse_args()
    rows = run(args.seconds)
    result = table(rows)
    print(result)
    if args.write:
        body = (f"\nCommand: `python bench/bench_wire.py --write docs/benchmarks.md`. Machine: {machine()}.\n"
                f"Messages carry a 6 KB thumbnail. Reference: pickle round trip of the same dataclass in the same "
                f"run (never used on the wire).\n\n{result}\n")
        write_section(args.write, "Wire codec", body)


if __name__ == "__main__":
    main()
