"""Child processes of the demo: the matcher and the camera workers, each a real ``keyreid-stream`` command.

Each child runs in its own process group with its output in a log file. Stopping is graceful first (SIGTERM: a
worker flushes its open tracklets and waits for the matcher's acknowledgements, the matcher finishes its batch),
then forced after a timeout (SIGKILL to the group), so nothing the demo started outlives it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["ChildProcess", "DemoProcessError", "keyreid_command"]

logger = logging.getLogger(__name__)

STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 15


class DemoProcessError(RuntimeError):
    """A child process failed: the message holds the end of its log."""


def keyreid_command(*args: str) -> list[str]:
    """``keyreid-stream ARGS`` with this interpreter (no reliance on the PATH)."""
    return [sys.executable, "-m", "keyreid_stream", *args]


class ChildProcess:
    """A command (e.g. :func:`keyreid_command`) as a child process; a context manager that stops it on exit."""

    def __init__(self, name: str, command: Sequence[str], log_path: Path, *, env: dict[str, str] | None = None):
        self.name = name
        self.args = list(command)
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> ChildProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env=self.env, start_new_session=True)
        logger.debug("started %s (pid %d): %s", self.name, self._process.pid, " ".join(self.args))
        return self

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def poll(self) -> int | None:
        return None if self._process is None else self._process.poll()

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def wait(self, timeout: float | None = None) -> int:
        """The exit status; raises ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        if self._process is None:
            raise DemoProcessError(f"{self.name} was never started")
        return self._process.wait(timeout)

    def check(self) -> None:
        """Raise :class:`DemoProcessError` when the child has exited with a non-zero status."""
        status = self.poll()
        if status not in (None, 0):
            raise DemoProcessError(f"{self.name} exited with status {status}; the end of its log "
                                    f"({self.log_path}):\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the process group; returns the exit status."""
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s: killing it", self.name, timeout)
                self._signal(signal.SIGKILL)
                process.wait()
        self._reap_group()
        return process.returncode

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.rstrip().splitlines()[-lines:])

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self._process.pid, signum)  # type: ignore[union-attr]
        except ProcessLookupError:
            pass

    def _reap_group(self) -> None:
        """Children the command left behind in its group (none expected) are killed, not orphaned."""
        try:
            os.killpg(self._process.pid, 0)  # type: ignore[union-attr]
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.2)
        self._signal(signal.SIGKILL)

    def __enter__(self) -> ChildProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
