"""A small synthetic dataset (MARS layout) shared by the trainer tests, and a config factory for it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from keyreid_stream.config import load_config
from keyreid_stream.data.synthetic import SyntheticSpec, write_synthetic_mars
from keyreid_stream.train.config import TrainingConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SMALL = SyntheticSpec(train_ids=10, test_ids=6, distractor_tracklets=2, junk_tracklets=1, cameras=3,
                      tracklets_per_camera=(1, 2), frames=(4, 8), image_size=(64, 32), seed=3)


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic-small")
    write_synthetic_mars(root, SMALL)
    return root


@pytest.fixture
def small_config(small_dataset: Path, tmp_path: Path) -> Callable[..., TrainingConfig]:
    """``small_config(*overrides)``: the synthetic recipe on the small dataset, short and quiet."""

    def make(*overrides: str, output: Path | None = None) -> TrainingConfig:
        base = [f"data.root={small_dataset}", f"run.output={output or tmp_path / 'run'}", "data.workers=0",
                "data.validation_ids=0.2", "optim.epochs=2", "run.eval_every=1", "run.progress=false",
                "run.tensorboard=false", "sampler.ids_per_batch=4", "eval.reports=false", "run.log_every=2"]
        return load_config(TrainingConfig, CONFIGS / "keyreid_synthetic.yaml", [*base, *overrides])

    return make
