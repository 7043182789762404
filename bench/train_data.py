"""Training input pipeline: how many augmented clips per second one loader process makes, vs decoding alone.

    python bench/train_data.py [--ids 24] [--batches 20] [--write docs/benchmarks.md]

A synthetic dataset in the MARS layout is written at MARS's frame size (256x128 JPEG) into a temporary folder.
Then P x K = 8 x 4 batches of 4-frame restricted-random clips go through ``TrainClips`` in this process
(``data.workers=0``): JPEG decoding with OpenCV, keypoints from the store, resize, flip, pad and crop, random
erasing, and collation into tensors. The *reference*, measured in the same run and alternating batch by batch
with the pipeline, decodes the same frames with ``cv2.imread`` and does nothing else, so the ratio is what
augmentation and collation cost on top of decoding. A GPU training run needs ``data.workers`` at least
(GPU clips/s) / (clips/s of one process here).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, milliseconds, rate, write_section  # noqa: E402

from keyreid_stream.data.datasets import read_split  # noqa: E402
from keyreid_stream.data.sampling import IdentitySampler  # noqa: E402
from keyreid_stream.data.synthetic import SyntheticSpec, write_synthetic_mars  # noqa: E402
from keyreid_stream.data.transforms import ClipTransform  # noqa: E402
from keyreid_stream.data.video import KeypointSource, TrainClips, collate_train  # noqa: E402

P, K, T = 8, 4, 4


@dataclasses.dataclass
class Timing:
    pipeline: list[float]
    decode: list[float]


def bench(root: Path, batches: int) -> Timing:
    split = read_split("mars", root)
    labels = {pid: i for i, pid in enumerate(sorted({t.person_id for t in split.train}))}
    dataset = TrainClips(root, split.train, [labels[t.person_id] for t in split.train],
                         KeypointSource.open("synthetic", root), ClipTransform((256, 128), train=True), T)
    sampler = IdentitySampler([labels[t.person_id] for t in split.train], P, K, seed=0)
    timing = Timing([], [])
    epoch = 0
    while len(timing.pipeline) < batches:
        sampler.set_epoch(epoch)
        for batch in sampler:
            if len(timing.pipeline) >= batches:
                break
            started = time.perf_counter()
            clips = collate_train([dataset[item] for item in batch])
            timing.pipeline.append(time.perf_counter() - started)
            assert clips.frames.shape == (P * K, T, 3, 256, 128)
            paths = [str(root / p) for item in batch for p in dataset.tracklets[item.index].paths[:T]]
            started = time.perf_counter()
            for path in paths:
                cv2.imread(path, cv2.IMREAD_COLOR)
            timing.decode.append(time.perf_counter() - started)
        epoch += 1
    return timing


def table(timing: Timing) -> str:
    pipeline, decode = statistics.median(timing.pipeline), statistics.median(timing.decode)
    clips = P * K
    return "\n".join([
        "| stage (one process) | ms per batch of 32 clips (median) | clips/s | frames/s | vs decoding |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| decode only (reference): cv2.imread of the 128 frames | {milliseconds(decode)} | {rate(clips / decode)} "
        f"| {rate(clips * T / decode)} | 1.0x |",
        f"| TrainClips: decode + keypoints + augment + collate | {milliseconds(pipeline)} "
        f"| {rate(clips / pipeline)} | {rate(clips * T / pipeline)} | {pipeline / decode:.2f}x |",
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=24, help="training identities of the synthetic dataset")
    parser.add_argument("--batches", type=int, default=20, help="batches to time")
    parser.add_argument("--write", type=Path, default=None, help="update this markdown file's section")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory() as folder:
        spec = SyntheticSpec(train_ids=args.ids, test_ids=2, image_size=(256, 128), frames=(16, 40), seed=1)
        write_synthetic_mars(folder, spec)
        timing = bench(Path(folder), args.batches)
    result = table(timing)
    print(result)
    if args.write:
        body = (f"`python bench/train_data.py --batches {args.batches} --write docs/benchmarks.md` on {machine()}; "
                "one process, torch and OpenCV limited to one thread each, synthetic 256x128 JPEG frames (MARS "
                "size), batches of 8 identities x 4 clips x 4 frames.\n\n" + result + "\n")
        write_section(args.write, "Training input pipeline", body)


if __name__ == "__main__":
    main()
