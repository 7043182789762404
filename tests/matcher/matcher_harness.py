"""Helpers for the matcher tests (tests/matcher/conftest.py makes this importable): a test config, a running
matcher, waiting, and planar descriptors for the pure-logic tests."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from itertools import count

import numpy as np
import zmq

from keyreid_stream.matcher.config import MatcherConfig, RedisConfig, local_config
from keyreid_stream.matcher.service import MatcherThread
from keyreid_stream.matcher.state.records import StoredTracklet


def wait_until(predicate: Callable[[], object], timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def matcher_config(redis_url: str, *, listen: str = "", http: str = "", prefix: str = "krs",
                   **association: object) -> MatcherConfig:
    """A test matcher on a free port: fast backoff and re-clustering, no retention, the API only when asked."""
    config = local_config(redis_url, listen=listen, http=http, **({"recluster_every_s": 0.5, "lease_ttl_s": 2.0}
                                                                    | association))
    return replace(config, redis=RedisConfig(url=redis_url, prefix=prefix, backoff_s=(0.05, 0.5),
                                             socket_timeout_s=2.0))


@contextmanager
def running_matcher(config: MatcherConfig) -> Iterator[MatcherThread]:
    """A matcher in a thread with its own ZeroMQ context; stopped at exit (its report stays on the object)."""
    context = zmq.Context()
    matcher = MatcherThread(config, context=context)
    try:
        with matcher:
            yield matcher
    finally:
        context.destroy(linger=0)


# -------------------------------------------------------------------------- planar descriptors (pure-logic tests)

SPACE = "m@1/4"


def vec(degrees: float, dim: int = 4) -> np.ndarray:
    """A unit vector at ``degrees`` in the first plane: the cosine of two of them is the cosine of their angle."""
    v = np.zeros(dim, np.float32)
    v[0], v[1] = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return v


def trk(tid: str, camera: str, track: int, start: float, end: float, degrees: float = 0.0,
        identity: str | None = None, space: str = SPACE, descriptor: np.ndarray | None = None) -> StoredTracklet:
    desc = vec(degrees) if descriptor is None else descriptor
    return StoredTracklet(tid, camera, track, start, end, 10, space, desc, identity)


def counter(prefix: str = "n") -> Callable[[], str]:
    """New identity names n1, n2, ... (the ``new_identity`` callback)."""
    numbers = count(1)
    return lambda: f"{prefix}{next(numbers)}"
