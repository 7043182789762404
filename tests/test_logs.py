"""Logging setup: one handler on the root logger, text or JSON lines."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from keyreid_stream.logs import setup_logging


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.parametrize("calls", [1, 3])
def test_one_handler_however_often_it_is_called(calls: int) -> None:
    for _ in range(calls):
        setup_logging("DEBUG")
    assert len(logging.getLogger().handlers) == 1


def test_text_format_and_level() -> None:
    stream = io.StringIO()
    setup_logging("WARNING", "text", stream=stream)
    logging.getLogger("keyreid_stream.x").info("hidden")
    logging.getLogger("keyreid_stream.x").warning("shown %d", 7)
    assert "hidden" not in stream.getvalue()
    assert "WARNING keyreid_stream.x: shown 7" in stream.getvalue()


def test_json_lines_carry_exceptions() -> None:
    stream = io.StringIO()
    setup_logging("INFO", "json", stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("keyreid_stream.y").exception("failed")
    entry = json.loads(stream.getvalue().strip())
    assert entry["level"] == "ERROR" and entry["logger"] == "keyreid_stream.y" and entry["message"] == "failed"
    assert "RuntimeError: boom" in entry["exception"] and entry["time"].endswith("Z")
