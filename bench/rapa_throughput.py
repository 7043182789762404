"""RAPA inference throughput (clips/s) against its own ResNet-50 backbone alone, and against KeyRe-ID.

    python bench/rapa_throughput.py [--device auto|cpu|cuda] [--dtypes fp32,bf16] [--batch-sizes 1,4,16]
        [--seconds 3] [--threads N] [--quick] [--write docs/benchmarks.md]

A clip is T=4 frames of 256x128 with keypoints. *Backbone* is the same ResNet-50 (last stride 1) followed by
global average pooling and a mean over the frames: the least any ResNet-50 video model pays, so
RAPA / backbone is the cost of the GFE, RFL and PFD heads. *KeyRe-ID* is ``keyreid_vit_base`` (ours), the other
architecture a camera worker can run. All three are timed in the same process, taking turns call by call
(``seconds_per_call`` of model_throughput.py), on random weights and inputs in ``model.eval()`` and
``torch.inference_mode()``; bf16 runs through ``torch.autocast``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, rate, write_section

from keyreid_stream.model import build_model

from model_throughput import (
    DTYPES,
    flops_per_clip,
    precision,
    resolve_device_defaults,
    seconds_per_call,
)

HEADER = ("| device | dtype | batch | RAPA clips/s | backbone clips/s | RAPA / backbone | KeyRe-ID clips/s "
          "| RAPA / KeyRe-ID | GFLOPs/clip RAPA | GFLOPs/clip backbone |\n"
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")


def build(quick: bool, device: torch.device) -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)
    rapa = build_model("rapa_test" if quick else "rapa_resnet50", 0, 0).eval()
    keyreid = build_model("keyreid_test" if quick else "keyreid_vit_base", 0, 0).eval()
    return {"rapa": rapa.to(device), "keyreid": keyreid.to(device)}


def runners(models: dict[str, torch.nn.Module], batch: int, device: torch.device) -> list[Callable[[], object]]:
    rapa, keyreid = models["rapa"], models["keyreid"]
    gen = torch.Generator().manual_seed(batch)
    (height, width), frames_per_clip = rapa.img_size, rapa.num_frames
    frames = torch.randn(batch, frames_per_clip, 3, height, width, generator=gen).to(device)
    keypoints = (torch.rand(batch, frames_per_clip, 17, 3, generator=gen)
                 * torch.tensor([width - 1.0, height - 1.0, 1.0])).to(device)

    def backbone_only() -> torch.Tensor:
        return rapa.forward_features(frames).mean(dim=(1, 3, 4))

    return [lambda: rapa.embed(frames, keypoints), backbone_only, lambda: keyreid.embed(frames, keypoints)]


def bench(args: argparse.Namespace) -> list[str]:
    device = torch.device(args.device)
    models = build(args.quick, device)
    lines = []
    with torch.inference_mode():
        flops = [flops_per_clip(fn, 1) for fn in runners(models, 1, device)[:2]]
        for dtype in args.dtypes:
            with precision(device, dtype):
                for batch in args.batch_sizes:
                    spent = seconds_per_call(runners(models, batch, device), device, args.seconds, 2, args.warmup)
                    rapa, backbone, keyreid = (batch / seconds for seconds in spent)
                    lines.append(f"| {device.type} | {dtype} | {batch} | {rate(rapa)} | {rate(backbone)} "
                                 f"| {rapa / backbone:.2f} | {rate(keyreid)} | {rapa / keyreid:.2f} "
                                 f"| {flops[0] / 1e9:.3g} | {flops[1] / 1e9:.3g} |")
                    print(lines[-1], flush=True)
    return lines


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add("--dtypes", default=None, help="fp32 and/or bf16 (default: fp32 on CPU, both on CUDA)")
    add("--batch-sizes", default=None, help="clips per call (default: 1,4,16 on CPU, 1,8,32,64 on CUDA)")
    add("--seconds", type=float, default=3.0, help="timed seconds per model and cell")
    add("--threads", type=int, default=None, help="torch.set_num_threads")
    add("--quick", action="store_true", help="the tiny test variants, 0.5 s per cell (a smoke run)")
    add("--write", type=Path, default=None, help="update this markdown file")
    args = parser.parse_args()
    cuda = resolve_device_defaults(args)
    if unknown := set(args.dtypes) - set(DTYPES):
        parser.error(f"unknown dtypes {sorted(unknown)}; choose from {', '.join(DTYPES)}")
    args.warmup = 5 if cuda else 1
    if args.quick:
        args.seconds = 0.5
    return args


def main() -> None:
    args = parse_args()
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(HEADER, flush=True)
    lines = bench(args)
    elapsed = time.perf_counter() - started
    command = " ".join(["python bench/rapa_throughput.py", *sys.argv[1:]])
    text = (f"\nCommand: `{command}` ({elapsed / 60:.1f} min). Machine: {machine()}. torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads.\n\n"
            "A clip is 4 frames of 256x128 with 17 keypoints per frame (random weights and inputs, `model.eval()`, "
            "`torch.inference_mode()`). *Backbone* is RAPA's own ResNet-50 (last stride 1) with global average "
            "pooling and a mean over the frames, the least a ResNet-50 video model costs: RAPA / backbone is "
            "what the GFE, RFL and PFD heads add. *KeyRe-ID* is `keyreid_vit_base`, the other architecture a "
            "camera worker can run. The three take turns call by call in one process; each cell is the median "
            f"per-call time after warm-up over at least {args.seconds:g} s per model. GFLOPs/clip: "
            "`torch.utils.flop_counter` (matmuls and convolutions; the relation attention's element-wise work "
            "is not counted).\n\n")
    print(f"\ntotal {elapsed:.0f} s")
    if args.write:
        write_section(args.write, "RAPA throughput", text + HEADER + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
