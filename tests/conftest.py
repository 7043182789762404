"""Shared fixtures: a private redis-server per test session, ZeroMQ sockets on 127.0.0.1 that always close.

Tests that use a fixture from here get its marker automatically (``redis``, ``zmq``); ``gpu`` tests are
skipped when no CUDA device is present.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # ultralytics: no network probes in tests

from keyreid_stream.redis_server import RedisServer

RECV_TIMEOUT_MS = 5000


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs a command (``main([...])`` calls ``setup_logging``) replaces the root logger's handlers with
    one on the stream pytest captured for that test, which is closed afterwards: every later log record would then
    fail to print. Each test gets the root logger back as it found it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _cuda_available():  # import torch only when a GPU test was collected
        for item in gpu_items:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & {"redis_server", "redis_client", "redis_server_factory"}:
            item.add_marker(pytest.mark.redis)
        if names & {"zmq_context", "zmq_push_pull"}:
            item.add_marker(pytest.mark.zmq)


@pytest.fixture(scope="session")
def blazepose_model() -> Path:
    """The BlazePose full landmark model in the weights cache. Tests download nothing: a machine without it skips
    (CI, where ``keyreid-stream weights fetch blazepose-full`` runs before the tests, fails instead)."""
    from keyreid_stream.keypoints.blazepose import resolve_model
    from keyreid_stream.keypoints.pose import PoseError

    try:
        return resolve_model("blazepose-full")
    except PoseError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must install the BlazePose model before the tests: {exc}")
        pytest.skip(str(exc))


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


# --------------------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One private redis-server (no persistence) for the whole session, on a free port."""
    server = RedisServer(data_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[object]:
    """A redis-py client on the session server, with an empty database for each test."""
    import redis

    client = redis.Redis.from_url(redis_server.url, socket_timeout=5)
    client.flushall()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def redis_server_factory(tmp_path: object) -> Iterator[Callable[..., RedisServer]]:
    """Start extra servers (e.g. with AOF persistence, to restart or kill); all stopped at teardown."""
    servers: list[RedisServer] = []

    def start(**kwargs: object) -> RedisServer:
        server = RedisServer(**kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


# --------------------------------------------------------------------------- ZeroMQ


@pytest.fixture
def zmq_context() -> Iterator[object]:
    """A private ZeroMQ context; every socket made from it is closed (linger 0) at teardown."""
    import zmq

    context = zmq.Context()
    try:
        yield context
    finally:
        context.destroy(linger=0)


@pytest.fixture
def zmq_push_pull(zmq_context: object) -> Iterator[tuple[object, object, str]]:
    """A connected (PUSH, PULL, endpoint) pair over TCP on 127.0.0.1, PULL bound on a free port."""
    import zmq

    pull = zmq_context.socket(zmq.PULL)  # type: ignore[attr-defined]
    push = zmq_context.socket(zmq.PUSH)  # type: ignore[attr-defined]
    try:
        for sock in (pull, push):
            sock.setsockopt(zmq.LINGER, 0)
        pull.setsockopt(zmq.RCVTIMEO, RECV_TIMEOUT_MS)
        push.setsockopt(zmq.SNDTIMEO, RECV_TIMEOUT_MS)
        pull.bind("tcp://127.0.0.1:*")
        endpoint = pull.getsockopt_string(zmq.LAST_ENDPOINT)
        push.connect(endpoint)
        yield push, pull, endpoint
    finally:
        push.close(linger=0)
        pull.close(linger=0)


# --------------------------------------------------------------------------- ultralytics


@pytest.fixture(scope="module")
def yolo_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """ultralytics writes its settings file on import: into a temporary folder, not the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.mktemp("ultralytics")))
        patch.setenv("YOLO_OFFLINE", "1")
        yield
