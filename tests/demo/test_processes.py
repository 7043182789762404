"""The demo's child processes: status, log tails, graceful and forced stops, no orphans."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from keyreid_stream.demo.processes import ChildProcess, DemoProcessError, keyreid_command


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_command_that_succeeds(tmp_path: Path) -> None:
    with ChildProcess("version", keyreid_command("--version"), tmp_path / "version.log") as child:
        assert child.wait(60) == 0
        child.check()
    assert "keyreid-stream" in (tmp_path / "version.log").read_text()


def test_a_failure_is_reported_with_the_end_of_its_log(tmp_path: Path) -> None:
    with ChildProcess("config", keyreid_command("config", "show", str(tmp_path / "missing.yaml")),
                      tmp_path / "config.log") as child:
        assert child.wait(60) != 0
        with pytest.raises(DemoProcessError, match=r"config exited with status \d+(.|\n)*missing.yaml"):
            child.check()


@pytest.mark.parametrize(("script", "status"), [
    ("import time; time.sleep(60)", -15),  # SIGTERM ends it
    ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)", -9),  # killed
])
def test_stop_is_graceful_then_forced(tmp_path: Path, script: str, status: int) -> None:
    child = ChildProcess("sleeper", [sys.executable, "-c", script], tmp_path / "sleeper.log").start()
    time.sleep(0.5)
    assert child.running
    started = time.monotonic()
    assert child.stop(timeout=1.0) == status
    assert time.monotonic() - started < 10
    assert not _alive(child.pid)


def test_grandchildren_do_not_outlive_it(tmp_path: Path) -> None:
    script = ("import subprocess, sys, time; "
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              "open(sys.argv[1], 'w').write(str(p.pid)); time.sleep(60)")
    pid_file = tmp_path / "grandchild.pid"
    child = ChildProcess("parent", [sys.executable, "-c", script, str(pid_file)], tmp_path / "parent.log").start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    grandchild = int(pid_file.read_text())
    child.stop(timeout=2.0)
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(grandchild)
