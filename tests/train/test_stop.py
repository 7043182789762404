"""SIGTERM (a preempted job) stops training after the current step with the state saved; --resume finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from keyreid_stream.train.trainer import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
def test_sigterm_saves_the_state_and_resume_finishes(small_dataset: Path, small_config, tmp_path: Path) -> None:
    out = tmp_path / "run"
    overrides = [f"data.root={small_dataset}", f"run.output={out}", "data.workers=0", "optim.epochs=40",
                 "run.eval_every=100", "run.progress=false", "run.tensorboard=false", "sampler.ids_per_batch=4",
                 "data.validation_ids=0.2", "run.log_every=1", "eval.reports=false"]
    command = [sys.executable, "-m", "keyreid_stream", "train", "--config", str(CONFIGS / "keyreid_synthetic.yaml"),
               *overrides]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.csv").exists() or "train," not in (out / "metrics.csv").read_text():
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-2000:]
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr[-2000:]
    assert "stopped after" in stdout and "--resume auto" in stdout and "SIGTERM" in stderr
    assert (out / "last.pt").exists() and not (out / "final.pt").exists()
    resumed = train(small_config(*(o for o in overrides[3:]), output=out), resume="auto")
    assert resumed.completed and resumed.test is not None
    assert resumed.optimiser_steps > len(resumed.losses) > 0  # it went on from where the first process stopped
