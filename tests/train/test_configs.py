"""Every shipped training config loads, and the recipes and ablations say what the papers say."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyreid_stream.config import ConfigError, load_config
from keyreid_stream.model.registry import _check_keys, get_spec
from keyreid_stream.train.config import TrainingConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
NOT_TRAINING = ("demo.yaml", "ilidsvid_data.yaml", "worker.yaml", "worker.docker.yaml", "matcher.yaml",
                "topology.example.yaml")
TRAINING = sorted(p for p in CONFIGS.rglob("*.yaml") if p.name not in NOT_TRAINING)


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_config_loads_and_names_a_valid_model(path: Path) -> None:
    config = load_config(TrainingConfig, path)
    spec = get_spec(config.model.arch)
    _check_keys(config.model.arch, spec.model_class, dict(config.model.options))
    assert config.run.output.startswith("runs/")


def test_the_mars_recipe_is_the_papers() -> None:
    config = load_config(TrainingConfig, CONFIGS / "keyreid_mars.yaml")
    assert (config.optim.optimizer, config.optim.lr, config.optim.momentum) == ("sgd", 0.008, 0.9)
    assert (config.optim.epochs, config.optim.warmup_epochs, config.optim.schedule) == (120, 5, "cosine")
    assert config.sampler.ids_per_batch * config.sampler.tracklets_per_id == 32
    assert (config.loss.alpha, config.loss.beta) == (0.75, 0.0005)
    assert config.data.image_size == (256, 128) and config.data.clip_length == 4
    assert config.model.arch == "keyreid_vit_base" and config.data.validation_ids > 0


@pytest.mark.parametrize("name, arch, options, keypoints", [
    ("vidtrans_mars.yaml", "vidtrans_vit_base", {}, "none"),
    ("ablations/keyreid_mars_no_tcss.yaml", "keyreid_vit_base", {"tcss": False}, "pifpaf"),
    ("ablations/keyreid_mars_no_kps.yaml", "vidtrans_vit_base", {}, "none"),
    ("ablations/keyreid_mars_global_only.yaml", "keyreid_vit_base", {"local_branch": False}, "none"),
    ("ablations/keyreid_mars_local_only.yaml", "keyreid_vit_base", {"global_branch": False}, "pifpaf"),
    ("ablations/keyreid_ilidsvid_no_tcss.yaml", "keyreid_vit_base", {"tcss": False}, "pifpaf"),
])
def test_ablations_change_only_their_component(name: str, arch: str, options: dict, keypoints: str) -> None:
    config = load_config(TrainingConfig, CONFIGS / name)
    assert config.model.arch == arch and dict(config.model.options) == options
    assert config.data.keypoints == keypoints
    base = load_config(TrainingConfig, CONFIGS / "keyreid_mars.yaml")
    assert config.optim == base.optim and config.loss == base.loss and config.sampler == base.sampler
    if "ilidsvid" in name:
        assert config.data.dataset == "ilidsvid"


@pytest.mark.parametrize("override, message", [
    ("optim.bogus=1", "unknown key"),
    ("optim.amp=maybe", "must be one of"),
    ("data.clip_length=0", "clip_length"),
    ("sampler.ids_per_batch=1", "ids_per_batch"),
    ("loss.alpha=2", "alpha"),
])
def test_bad_values_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(TrainingConfig, CONFIGS / "keyreid_mars.yaml", [override])
