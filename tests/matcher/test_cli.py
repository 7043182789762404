"""``keyreid-stream matcher``: the config file, the flags, and one readable line for each bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keyreid_stream.cli import main
from keyreid_stream.config import load_config
from keyreid_stream.matcher.config import MatcherConfig, parse_http_address
from keyreid_stream.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_the_shipped_config_is_the_defaults() -> None:
    assert load_config(MatcherConfig, ROOT / "configs" / "matcher.yaml", []) == MatcherConfig()


@pytest.mark.parametrize(("text", "expected"), [
    (":8080", ("0.0.0.0", 8080)),
    ("127.0.0.1:9000", ("127.0.0.1", 9000)),
    ("[::1]:80", ("::1", 80)),
])
def test_http_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_http_address(text) == expected


@pytest.mark.parametrize(("args", "code", "message"), [
    (["association.nope=1"], 2, "nope"),
    (["association.threshold=1.5"], 2, "threshold"),  # values the config rejects are config errors (2)
    (["--http", "localhost:http"], 2, "api.http"),
    (["--redis", "http://x"], 2, "redis.url"),
    (["redis.prefix=a b"], 2, "prefix"),
    (["--topology", "missing-topology.yaml"], 1, "missing-topology.yaml"),
])
def test_bad_input_is_one_line(args: list[str], code: int, message: str, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["matcher", "--listen", "tcp://127.0.0.1:1", *args]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_bad_topology_file_is_one_line(tmp_path: Path) -> None:
    topology = tmp_path / "topology.yaml"
    topology.write_text("transits:\n  - {from: a, to: b, min_s: 10, max_s: 1}\n")
    result = subprocess.run([sys.executable, "-m", "keyreid_stream", "matcher", "--topology", str(topology),
                             "--listen", "tcp://127.0.0.1:1", "--http", ""], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0 and "topology.yaml" in result.stderr, result.stderr


@pytest.mark.redis
@pytest.mark.parametrize("which", ["listen", "http"])
def test_an_address_in_use_is_named(which: str, redis_server, capsys, tmp_path, monkeypatch) -> None:
    """'Address already in use' says which address and which setting (ingest.listen or api.http)."""
    import socket

    monkeypatch.chdir(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        free = free_port()
        listen, http = ((f"tcp://127.0.0.1:{port}", "") if which == "listen"
                        else (f"tcp://127.0.0.1:{free}", f"127.0.0.1:{port}"))
        code = main(["matcher", "--redis", redis_server.url, "--listen", listen, "--http", http,
                     "redis.prefix=inuse"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    where = (f"cannot listen for the workers on tcp://127.0.0.1:{port} (ingest.listen): Address already in use"
             if which == "listen" else f"cannot serve the query API on 127.0.0.1:{port} (api.http): Address already"
                                       " in use")
    assert code == 1 and err.startswith("keyreid-stream: error: ") and where in err, err
