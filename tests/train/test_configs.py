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


def test_the_rapa_recipe_is_the_papers() -> None:
    """Zhang et al., Section 4.2: T = 4, 8 ids x 4 tracklets, Adam 3.5e-4 (weight decay 5e-4) divided by 10 every
    100 epochs, 400 epochs; lambda 3e-4 on MARS, 5e-5 on iLIDS-VID and PRID-2011; Euclidean distance."""
    config = load_config(TrainingConfig, CONFIGS / "rapa_mars.yaml")
    optim = config.optim
    assert (optim.optimizer, optim.lr, optim.weight_decay, optim.schedule) == ("adam", 3.5e-4, 5e-4, "step")
    assert (optim.step_epochs, optim.gamma, optim.epochs, optim.warmup_epochs) == (100, 0.1, 400, 0)
    assert (config.sampler.ids_per_batch, config.sampler.tracklets_per_id, config.data.clip_length) == (8, 4, 4)
    assert config.data.image_size == (256, 128) and config.model.arch == "rapa_resnet50"
    assert not config.model.camera_embedding and config.data.validation_ids > 0
    loss = config.loss
    assert (loss.combine, loss.beta, loss.label_smoothing, loss.attention_weight) == ("sum", 0.0, 0.0, 0.0)
    assert loss.inter_frame_weight == 3e-4 and config.eval.metric == "euclidean"
    for name in ("rapa_ilidsvid.yaml", "rapa_prid.yaml"):
        other = load_config(TrainingConfig, CONFIGS / name)
        assert other.loss.inter_frame_weight == 5e-5 and other.optim == optim


@pytest.mark.parametrize("name, options, keypoints, reg", [  # Table 1 of RAPA, rows (a) to (e); (f) = the recipe
    ("a_baseline", {"local_branch": False, "global_reduction": False}, "none", 0.0),
    ("b_ra", {"part_split": "stripes", "reference": "first", "temporal_channel_attention": False}, "none", 0.0),
    ("c_reg", {"part_split": "stripes", "reference": "first", "temporal_channel_attention": False}, "none", 3e-4),
    ("d_ta", {"part_split": "stripes", "reference": "first"}, "none", 3e-4),
    ("e_pe", {"reference": "first"}, "pifpaf", 3e-4),
    ("local_only", {"global_branch": False}, "pifpaf", 3e-4),  # Table 2 (b)
])
def test_rapa_ablations_change_only_their_component(name: str, options: dict, keypoints: str, reg: float) -> None:
    config = load_config(TrainingConfig, CONFIGS / "ablations" / f"rapa_mars_{name}.yaml")
    base = load_config(TrainingConfig, CONFIGS / "rapa_mars.yaml")
    assert config.model.arch == "rapa_resnet50" and dict(config.model.options) == options
    assert config.data.keypoints == keypoints and config.loss.inter_frame_weight == reg
    assert config.optim == base.optim and config.sampler == base.sampler and config.augment == base.augment
    assert config.run.output == f"runs/ablations/rapa_mars_{name}"


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
