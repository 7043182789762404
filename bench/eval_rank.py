"""Re-ID evaluation timings: evaluate_rank on a MARS-sized problem against a plain per-query loop in the same
run, pairwise_distances at the authors' descriptor size, and k-reciprocal re-ranking.

    python bench/eval_rank.py [--quick] [--repeats 3] [--threads N] [--write docs/benchmarks.md]

The ranking problem has the size of the MARS test split (Zheng et al. 2016): 1,980 queries x 9,330 gallery
tracklets, 625 identities seen by 2 to 6 of 6 cameras, at most one query per identity and camera, every
(identity, camera) pair in the gallery (so some true matches share the query's camera and are removed as junk)
and a tenth of the gallery distractors (pid 0). Features are 128-d points around one centre per identity; the
distance matrix is their float32 squared Euclidean distance (what ``pairwise_distances`` returns) and the
same computed in float64 with numpy. Smaller problems keep MARS' ratio of identities to gallery tracklets.

*Reference* is :func:`reference_rank` below: one query at a time, ``np.argsort(kind="stable")``, drop same
id + same camera, CMC / AP / INP from the definitions. It is checked to give the same numbers (1e-12) before
timing, and it is timed in the same run, taking turns with the library. Each cell is the best of
``--repeats`` calls. Re-ranking is timed on 500 x 2,000 and on the MARS size. ``--quick`` uses 768-d
descriptors (instead of the authors' 19,200) for the distance timing, re-ranks only a 250 x 1,000 problem
and times one call per cell.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, milliseconds, rate, write_section

from keyreid_stream.eval import evaluate_rank, pairwise_distances, re_ranking

NUM_IDS, NUM_CAMS, DIM, NOISE = 625, 6, 128, 1.3  # noise: mAP about 0.8 before re-ranking
MARS_GALLERY = 9330
SECTION = "Evaluation (evaluate_rank)"


def mars_like(num_q: int, num_g: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Query/gallery features, pids and camids with MARS-like structure (see the module docstring)."""
    rng = np.random.default_rng(seed)
    num_ids = max(1, round(NUM_IDS * num_g / MARS_GALLERY))  # MARS' identities per gallery tracklet
    cams_per_id = [rng.choice(NUM_CAMS, size=rng.integers(2, NUM_CAMS + 1), replace=False)
                   for _ in range(num_ids)]
    pairs = np.array([(pid + 1, cam) for pid, cams in enumerate(cams_per_id) for cam in cams])
    query = pairs[rng.choice(len(pairs), size=num_q, replace=len(pairs) < num_q)]  # one per pair
    num_distractors = num_g // 10
    num_own = num_g - num_distractors  # every (identity, camera) pair first, then random ones
    extra = pairs[rng.integers(0, len(pairs), max(num_own - len(pairs), 0))]
    own = np.concatenate([pairs, extra])[:num_own]
    distractor_cams = rng.integers(0, NUM_CAMS, num_distractors)
    distractors = np.column_stack([np.zeros(num_distractors, int), distractor_cams])
    gallery = np.concatenate([own, distractors])[rng.permutation(num_g)]
    centres = rng.normal(size=(num_ids + 1, DIM)).astype(np.float32)
    q_feat = centres[query[:, 0]] + rng.normal(scale=NOISE, size=(num_q, DIM)).astype(np.float32)
    g_feat = centres[gallery[:, 0]] + rng.normal(scale=NOISE, size=(num_g, DIM)).astype(np.float32)
    return q_feat, g_feat, query[:, 0], gallery[:, 0], query[:, 1], gallery[:, 1]


def reference_rank(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                   g_camids: np.ndarray, max_rank: int = 50) -> tuple[np.ndarray, float, float]:
    """Plain per-query loop: (cmc, mAP, mINP) from the definitions."""
    length = min(max_rank, distmat.shape[1])
    cmc_sum, aps, inps = np.zeros(length), [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        same = g_pids[order] == q_pids[i]
        matches = same[~(same & (g_camids[order] == q_camids[i]))]
        hits = np.flatnonzero(matches)
        if len(hits) == 0:
            continue
        cmc_sum[hits[0]:] += 1
        aps.append(np.mean(np.arange(1, len(hits) + 1) / (hits + 1.0)))
        inps.append(len(hits) / (hits[-1] + 1.0))
    return cmc_sum / len(aps), float(np.mean(aps)), float(np.mean(inps))


def best_of(fns: list[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function over ``repeats`` rounds in which they take turns."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def bench_rank(num_q: int, num_g: int, repeats: int) -> list[str]:
    q_feat, g_feat, q_pids, g_pids, q_cams, g_cams = mars_like(num_q, num_g)
    q64, g64 = q_feat.astype(np.float64), g_feat.astype(np.float64)
    dist64 = (q64**2).sum(axis=1)[:, None] + (g64**2).sum(axis=1)[None, :] - 2.0 * q64 @ g64.T
    rows, result = [], None
    for name, dist in (("float32", pairwise_distances(q_feat, g_feat)), ("float64", dist64)):
        result = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
        cmc, mAP, mINP = reference_rank(dist, q_pids, g_pids, q_cams, g_cams)
        diff = max(np.abs(result.cmc - cmc).max(), abs(result.mAP - mAP), abs(result.mINP - mINP))
        assert diff <= 1e-12, f"library and reference differ by {diff:.1e}"
        ours, ref = best_of([lambda d=dist: evaluate_rank(d, q_pids, g_pids, q_cams, g_cams),
                             lambda d=dist: reference_rank(d, q_pids, g_pids, q_cams, g_cams)], repeats)
        rows.append(f"| evaluate_rank, {num_q:,} x {num_g:,}, {name} | {milliseconds(ours)} "
                    f"| {milliseconds(ref)} | {ref / ours:.1f}x | {diff:.0e} |")
        print(rows[-1], flush=True)
    summary = result.as_dict()
    print(f"mAP {summary['mAP']:.3f}, rank-1 {summary['rank1']:.3f}, mINP {summary['mINP']:.3f}, "
          f"skipped {result.num_skipped_queries}")
    return rows


def matmul_peak(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of the best of ``repeats`` float32 ``size^3`` torch matmuls (this machine, this moment)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    (spent,) = best_of([lambda: a @ b], repeats)
    return 2.0 * size**3 / spent / 1e9


def bench_distances(num_q: int, num_g: int, dim: int, repeats: int, peak: float) -> list[str]:
    rng = np.random.default_rng(1)
    query = rng.normal(size=(num_q, dim)).astype(np.float32)
    gallery = rng.normal(size=(num_g, dim)).astype(np.float32)
    rows = []
    for metric in ("squared_euclidean", "euclidean", "cosine"):
        (spent,) = best_of([lambda m=metric: pairwise_distances(query, gallery, m)], repeats)
        gflops = 2.0 * num_q * num_g * dim / spent / 1e9
        rows.append(f"| pairwise_distances {metric}, {num_q:,} x {num_g:,} x {dim:,} | {milliseconds(spent)} "
                    f"| - | {rate(gflops)} GFLOP/s ({gflops / peak:.0%} of matmul) | - |")
        print(rows[-1], flush=True)
    return rows


def bench_rerank(num_q: int, num_g: int, repeats: int) -> list[str]:
    q_feat, g_feat, q_pids, g_pids, q_cams, g_cams = mars_like(num_q, num_g, seed=2)
    q_g, q_q, g_g = (pairwise_distances(a, b, "euclidean") for a, b in
                     ((q_feat, g_feat), (q_feat, q_feat), (g_feat, g_feat)))
    before = evaluate_rank(q_g, q_pids, g_pids, q_cams, g_cams).mAP
    after = evaluate_rank(re_ranking(q_g, q_q, g_g), q_pids, g_pids, q_cams, g_cams).mAP
    (spent,) = best_of([lambda: re_ranking(q_g, q_q, g_g)], repeats)
    row = (f"| re_ranking (k1 20, k2 6, lambda 0.3), {num_q:,} x {num_g:,} | {milliseconds(spent)} | - "
           f"| mAP {before:.3f} -> {after:.3f} | - |")
    print(row, flush=True)
    return [row]


def parse_args() -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    add = parser.add_argument
    add("--quick", action="store_true", help="768-d distances, smaller re-ranking, one call each")
    add("--repeats", type=int, default=3, help="timed calls per cell (the best is reported)")
    add("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    add("--write", type=Path, default=None, help="update this markdown file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def explanation(args: argparse.Namespace, elapsed: float, sizes: dict[str, tuple[int, ...]],
                peak: float) -> str:
    command = " ".join(["python bench/eval_rank.py", *sys.argv[1:]])
    (rq, rg), (dq, dg, dd) = sizes["rank"], sizes["distance"]
    pairs = zip(sizes["rerank"][::2], sizes["rerank"][1::2], strict=True)
    reranked = " and ".join(f"{q:,} x {g:,}" for q, g in pairs)
    return (
        f"\nCommand: `{command}` ({elapsed:.0f} s). Machine: {machine()}. torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads.\n\n"
        f"Ranking problem: {rq:,} queries x {rg:,} gallery tracklets (the size of the MARS test split), "
        f"{NUM_IDS} identities each seen by 2 to 6 of {NUM_CAMS} cameras, at most one query per (identity, "
        "camera) pair, every pair in the gallery (so some true matches are same-camera junk), a tenth of the "
        "gallery distractors (pid 0); 128-d features around one centre per identity, squared Euclidean "
        "distances in float32 from `pairwise_distances` and in float64 from numpy. "
        "*Reference*: `reference_rank` in the script, a plain per-query loop (stable `np.argsort`, drop same "
        "id and same camera, CMC / AP / INP from the definitions), checked to agree with `evaluate_rank` to "
        "1e-12 (*max diff*) and timed in the same run, taking turns with it. Each time is the best of "
        f"{args.repeats} calls.\n\n"
        f"`pairwise_distances`: random float32 features, {dq:,} x {dg:,} x {dd:,} (the authors' descriptor "
        "is 768 + 6 x 3072 = 19,200), CPU, result returned as numpy; GFLOP/s counts the 2 x Q x G x D of the "
        f"matrix product only, against a float32 2048^3 torch matmul in the same run ({rate(peak)} GFLOP/s). "
        f"`re_ranking`: {reranked} tracklets of the same generator (identities scaled "
        "with the gallery), Euclidean distances in, default parameters; the mAP before and after re-ranking "
        "is a sanity check.\n\n"
    )


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    sizes = {"rank": (1980, 9330), "distance": (1980, 9330, 19200), "rerank": (500, 2000, 1980, 9330)}
    if args.quick:
        sizes = {"rank": (1980, 9330), "distance": (1980, 9330, 768), "rerank": (250, 1000)}
        args.repeats = 1
    header = ["| case | ours ms | reference ms | speed-up / rate | max diff |",
              "| --- | ---: | ---: | ---: | ---: |"]
    print("\n".join(header), flush=True)
    rows = bench_rank(*sizes["rank"], args.repeats)
    peak = matmul_peak()
    print(f"float32 matmul 2048^3: {rate(peak)} GFLOP/s", flush=True)
    rows += bench_distances(*sizes["distance"], args.repeats, peak)
    reranked = sizes["rerank"]
    for num_q, num_g in zip(reranked[::2], reranked[1::2], strict=True):
        rows += bench_rerank(num_q, num_g, args.repeats)
    elapsed = time.perf_counter() - started
    table = "\n".join(header + rows)
    print(f"\n{table}\n\ntotal {elapsed:.0f} s")
    if args.write:
        write_section(args.write, SECTION, explanation(args, elapsed, sizes, peak) + table + "\n")


if __name__ == "__main__":
    main()
