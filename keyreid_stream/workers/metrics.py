"""Worker metrics: frames per second per stage, end-to-end latency, queue depths and drops.

Each stage (read, detect, track, pose, embed, publish) counts its items and the time it was busy: ``rate`` is
items per second of wall time (what the stage delivered), ``capacity`` items per busy second (what it could
deliver if it never waited). Latency is measured from the moment the last frame of a tracklet was read to the
moment the matcher acknowledged its message. Everything here is thread-safe.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencyWindow", "StageRates", "WorkerMetrics"]

STAGES = ("read", "detect", "track", "pose", "embed", "publish")


@dataclass(frozen=True)
class StageRates:
    items: int
    busy_s: float
    rate: float  # items per wall-clock second
    capacity: float | None  # items per busy second (None: never busy)


class LatencyWindow:
    """The last ``size`` latencies (seconds), for percentiles."""

    def __init__(self, size: int = 2000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def percentile(self, q: float) -> float | None:
        with self._lock:
            values = list(self._values)
        return float(np.percentile(values, q)) if values else None


class WorkerMetrics:
    """Counters and stage timers shared by the worker's threads."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._items: Counter[str] = Counter()
        self._busy: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()  # per-camera and global event counts, e.g. "cam1.frames"
        self.latency = LatencyWindow()

    @contextmanager
    def stage(self, name: str, items: int = 1) -> Iterator[None]:
        """Time a stage's work on ``items`` items."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._items[name] += items
                self._busy[name] += elapsed  # type: ignore[assignment]  # typeshed fixes Counter values to int

    def count(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self.counters[name] += amount

    def counter(self, name: str) -> int:
        with self._lock:
            return int(self.counters[name])

    def rates(self) -> dict[str, StageRates]:
        wall = max(time.monotonic() - self.started, 1e-9)
        with self._lock:
            return {
                name: StageRates(int(self._items[name]), float(self._busy[name]), self._items[name] / wall,
                                 self._items[name] / self._busy[name] if self._busy[name] > 0 else None)
                for name in STAGES
            }

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)


def format_metrics(metrics: WorkerMetrics, queues: Mapping[str, int], publisher: Mapping[str, int]) -> str:
    """One log line: stage rates (with capacity), queue depths, delivery counts and latency percentiles."""
    parts = []
    for name, rates in metrics.rates().items():
        capacity = f" (cap {rates.capacity:.1f})" if rates.capacity is not None and name != "read" else ""
        parts.append(f"{name} {rates.rate:.1f}/s{capacity}")
    depth = " ".join(f"{name}={value}" for name, value in queues.items())
    delivery = " ".join(f"{name}={value}" for name, value in publisher.items())
    p50, p95 = metrics.latency.percentile(50), metrics.latency.percentile(95)
    latency = "n/a" if p50 is None else f"p50 {p50:.2f} s p95 {p95:.2f} s"
    return f"{' | '.join(parts)} | queues {depth} | {delivery} | latency {latency}"
