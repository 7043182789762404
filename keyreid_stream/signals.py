"""Graceful stop on SIGTERM / Ctrl-C for the long-running commands (worker, matcher)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["stop_on_signals"]

logger = logging.getLogger("keyreid_stream.cli")


@contextmanager
def stop_on_signals(stop: threading.Event, stopping: str) -> Iterator[threading.Event]:
    """While inside, SIGTERM or SIGINT sets ``stop`` (logging ``stopping``, e.g. "flushing the open tracklets");
    a second signal exits the process at once (status 130). The previous handlers come back at exit."""

    def handle(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            logger.warning("second %s: exiting at once", name)
            os._exit(130)
        logger.info("%s: stopping (%s)", name, stopping)
        stop.set()

    previous = {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
