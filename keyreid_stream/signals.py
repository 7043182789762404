"""Graceful stop on SIGTERM / Ctrl-C for the long-running commands (worker, matcher), and the one error policy they
share: a config file error stays a config error (exit 2), any other bad input becomes the command's one-line error."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from keyreid_stream.config.loader import ConfigError

__all__ = ["run_until_stopped", "stop_on_signals"]

Config = TypeVar("Config")

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


def run_until_stopped(load: Callable[[], Config], run: Callable[[Config, threading.Event], Any], *, stopping: str,
                      input_error: type[Exception],
                      run_errors: tuple[type[Exception], ...] = (ValueError,)) -> tuple[Config, Any]:
    """Load a service's config, then run it until it ends or a signal stops it; returns (config, report).

    :class:`~keyreid_stream.config.loader.ConfigError` passes through; other ``ValueError``s while loading and
    ``run_errors`` while running become ``input_error`` (one readable line; the traceback goes to the debug log).
    """
    try:
        config = load()
    except ConfigError:
        raise
    except ValueError as exc:
        raise input_error(str(exc)) from exc
    try:
        with stop_on_signals(threading.Event(), stopping) as stop:
            return config, run(config, stop)
    except run_errors as exc:
        logger.debug("the service failed", exc_info=True)
        raise input_error(str(exc)) from exc
