"""The CPU learning check: each tiny architecture trained for under a minute on the synthetic dataset.

Measured on a 2-core CPU (test split: 24 identities, 35 queries, 65 gallery tracklets): chance (random
distances) 0.084 mAP. KeyRe-ID (``keyreid_test``): untrained 0.051, trained 0.676 (rank-1 0.600), 26 s of
training. RAPA (``rapa_test``): untrained 0.156, trained 0.649 (rank-1 0.629), 22 s. The bound (0.4) is
far above what an untrained or broken model reaches, and the test checks that the untrained model indeed stays
below it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from keyreid_stream.config import load_config
from keyreid_stream.data.datasets import read_split
from keyreid_stream.data.synthetic import SyntheticSpec, write_synthetic_mars
from keyreid_stream.eval import evaluate_rank
from keyreid_stream.train import setup
from keyreid_stream.train.config import TrainingConfig
from keyreid_stream.train.evaluation import evaluate_tracklets
from keyreid_stream.train.trainer import train

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BOUND = 0.4


def _chance(split) -> float:
    q = np.array([t.person_id for t in split.query])
    g = np.array([t.person_id for t in split.gallery])
    qc = np.array([t.camera_id for t in split.query])
    gc = np.array([t.camera_id for t in split.gallery])
    rng = np.random.default_rng(0)
    return float(np.mean([evaluate_rank(rng.random((len(q), len(g))), q, g, qc, gc).mAP for _ in range(20)]))


@pytest.mark.slow
@pytest.mark.parametrize("config_name", ["keyreid_synthetic.yaml", "rapa_synthetic.yaml"])
def test_tiny_model_learns_the_synthetic_identities(config_name: str, tmp_path: Path) -> None:
    root = tmp_path / "synthetic"
    write_synthetic_mars(root, SyntheticSpec(train_ids=48, test_ids=24, seed=0))
    config = load_config(TrainingConfig, CONFIGS / config_name,
                         [f"data.root={root}", f"run.output={tmp_path / 'run'}", "run.progress=false",
                          "run.tensorboard=false", "run.eval_every=10", "eval.reports=false",
                          "eval.protocol=standard"])
    split = read_split("mars", root)
    torch.manual_seed(config.run.seed)
    untrained = setup.build_run_model(config.model, num_classes=0, split=split, image_size=config.data.image_size,
                                      clip_length=config.data.clip_length)
    keypoints = setup.open_keypoints(config.data.keypoints, str(root), untrained, "error")
    before = evaluate_tracklets(untrained, split.query, split.gallery, config, keypoints=keypoints,
                                device=torch.device("cpu")).standard

    summary = train(config)

    after = summary.test["standard"]
    chance = _chance(split)
    print(f"{config.model.arch}: chance mAP {chance:.3f}, untrained {before.mAP:.3f}, trained {after['mAP']:.3f} "
          f"(rank-1 {after['rank1']:.3f}) in {summary.seconds:.0f} s")
    assert before.mAP < BOUND, "the bound must be out of reach of an untrained model"
    assert after["mAP"] > BOUND and after["mAP"] > before.mAP + 0.2 and after["mAP"] > 4 * chance
    assert after["rank1"] > 0.35
    assert summary.best["epoch"] >= 10  # selected on the validation identities, not the test split
