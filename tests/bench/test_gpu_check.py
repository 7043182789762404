"""The GPU check (``scripts/dev gpu-check``, ``bench/gpu_check.py``): its dry run on the CPU runs every stage with
tiny sizes, so the real check cannot rot; stages that fail or overrun are reported and the others still run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gpu_check  # bench/ is on the import path (pytest's pythonpath setting)

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.video
def test_the_dry_run_runs_every_stage_and_writes_its_section(tmp_path: Path) -> None:
    markdown = tmp_path / "benchmarks.md"
    done = subprocess.run(
        [sys.executable, "bench/gpu_check.py", "--dry-run", "--write", str(markdown), "--logs", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=280, env={**os.environ, "YOLO_CONFIG_DIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all 4 stages passed" in done.stdout
    text = markdown.read_text(encoding="utf-8")
    assert "## GPU check" in text and "scripts/dev gpu-check --dry-run" in text
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ")}
    for stage in ("gpu tests", "model throughput", "training", "worker 2 cameras"):
        assert "| ok |" in rows[stage], rows
    assert "skipped" in rows["gpu tests"]  # no CUDA device here: the gpu tests are collected, then skipped
    assert "4 bf16 steps" in rows["training"]
    model_rows = [line for line in text.splitlines() if line.startswith("| keyreid_test | cpu |")]
    assert [row.split("|")[3].strip() for row in model_rows] == ["fp32", "bf16"]
    worker = next(line for line in text.splitlines() if line.startswith("| 2 | 50 / 50 |"))  # 2 cameras x 25 frames
    tracklets = int(worker.split("|")[8])
    assert tracklets >= 2 * gpu_check.PEOPLE  # every camera's boxes were tracked, embedded and acknowledged
    for name in ("gpu-tests", "model-throughput", "training", "worker-2-cameras"):
        assert (tmp_path / f"{name}.log").is_file()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_failed_and_overrunning_stages_are_reported_and_the_rest_run(tmp_path: Path) -> None:
    python = sys.executable
    grandchild = tmp_path / "grandchild.pid"
    sleeper = ("import subprocess, sys, time; child = subprocess.Popen(['sleep', '60']); "
               f"open({str(grandchild)!r}, 'w').write(str(child.pid)); time.sleep(60)")
    stages = [
        ("fails", [python, "-c", "import sys; print('broken'); sys.exit(3)"], 20.0),
        ("overruns", [python, "-c", sleeper], 6.0),
        ("no time", [python, "-c", "pass"], 1.0),  # its limit is below the 5 s a stage needs
        ("passes", [python, "-c", "print('fine')"], 20.0),
    ]
    started = time.perf_counter()
    results = gpu_check.check(stages, budget=60.0, logs=tmp_path / "logs", dry_run=True)
    assert time.perf_counter() - started < 30
    assert [r.status for r in results] == ["failed (exit 3)", "timed out after 6 s", "not run", "ok"]
    assert "broken" in (tmp_path / "logs" / "fails.log").read_text()
    deadline = time.time() + 5
    while _alive(int(grandchild.read_text())) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(int(grandchild.read_text()))  # the stage's whole process group was killed
    text = gpu_check.report(results, gpu_check.parse_args(["--dry-run"]), "cpu", 12.0)
    assert "| fails | failed (exit 3) |" in text and "| passes | ok |" in text


def test_the_real_check_refuses_to_run_without_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the real check would run")
    assert gpu_check.main([]) == 2
    assert "--dry-run" in capsys.readouterr().err


def test_pytest_counts_read_the_summary_line() -> None:
    tail = "....\n4 passed, 3 skipped, 106 deselected in 9.1s"
    assert gpu_check.pytest_counts(tail) == {"passed": 4, "skipped": 3, "deselected": 106}
    assert gpu_check.pytest_counts("1 failed, 2 errors in 3s") == {"failed": 1, "error": 2}
