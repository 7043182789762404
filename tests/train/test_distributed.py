"""Two processes with torchrun (Gloo on the CPU): DistributedDataParallel, whole identities per rank."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.slow
def test_torchrun_two_processes(small_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "keyreid_stream", "--log-level", "INFO", "train", "--config",
               str(CONFIGS / "keyreid_synthetic.yaml"), f"data.root={small_dataset}", f"run.output={out}",
               "data.workers=0", "optim.epochs=2", "run.eval_every=1", "run.progress=false",
               "run.tensorboard=false", "sampler.ids_per_batch=4", "data.validation_ids=0.2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "process 1 of 2" in done.stderr and "process 0 of 2" in done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["standard"]["mAP"] > 0
    assert (out / "best.pt").exists() and (out / "last.pt").exists()
    assert done.stdout.count("trained 2 epochs") == 2  # both ranks finish the same run
