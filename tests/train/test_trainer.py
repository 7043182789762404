"""The training loop on the small synthetic dataset: outputs, exact resume, accumulation, early stop."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from keyreid_stream.model.registry import load_model
from keyreid_stream.train.state import StateError
from keyreid_stream.train.trainer import train


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_model(path).state_dict()


def test_a_run_writes_its_outputs(small_config, tmp_path: Path) -> None:
    summary = train(small_config("run.tensorboard=true"))
    out = summary.output
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    for name in ("last.pt", "final.pt", "best.pt", "metrics.csv", "config.yaml", "results.json"):
        assert (out / name).exists(), name
    assert summary.selected == out / "best.pt" and summary.best["epoch"] in (1, 2)
    results = json.loads((out / "results.json").read_text())
    assert set(results["test"]) == {"standard", "official"}
    assert 0.0 <= results["test"]["standard"]["mAP"] <= 1.0
    with (out / "metrics.csv").open() as handle:
        kinds = {row["kind"] for row in csv.DictReader(handle)}
    assert kinds == {"train", "epoch", "validation", "test"}
    assert summary.optimiser_steps == len(summary.losses) > 0


def test_resume_continues_with_the_same_losses(small_config, tmp_path: Path) -> None:
    """An interrupted run (stopped mid-epoch, then mid-next-epoch) resumed twice equals an uninterrupted one."""
    overrides = ("optim.epochs=3", "run.eval_every=2", "sampler.ids_per_batch=2", "data.workers=0")
    whole = train(small_config(*overrides, output=tmp_path / "whole"), evaluate_test=False)
    steps_per_epoch = whole.optimiser_steps // 3
    assert steps_per_epoch >= 3
    parted = small_config(*overrides, output=tmp_path / "parted")
    first = train(parted, evaluate_test=False, stop_after_steps=steps_per_epoch + 1)
    second = train(parted, resume="auto", evaluate_test=False, stop_after_steps=steps_per_epoch)
    third = train(parted, resume="auto", evaluate_test=False)
    assert first.test is None and first.selected.name == "last.pt"
    assert first.losses + second.losses + third.losses == pytest.approx(whole.losses, rel=1e-6, abs=1e-7)
    assert third.best == pytest.approx(whole.best)
    resumed, uninterrupted = _weights(tmp_path / "parted" / "final.pt"), _weights(tmp_path / "whole" / "final.pt")
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6, msg=key)


def test_loader_workers_do_not_change_the_run(small_config, tmp_path: Path) -> None:
    """Clips and augmentation follow per-item seeds, not the worker processes' random state."""
    common = ("optim.epochs=1", "eval.protocol=standard")
    in_process = train(small_config(*common, "data.workers=0", output=tmp_path / "w0"), evaluate_test=False)
    with_workers = train(small_config(*common, "data.workers=2", output=tmp_path / "w2"), evaluate_test=False)
    assert with_workers.losses == pytest.approx(in_process.losses, rel=1e-6)


def test_gradient_accumulation_steps_every_n_batches(small_config) -> None:
    plain = train(small_config("optim.epochs=1"), evaluate_test=False)
    accumulated = train(small_config("optim.epochs=1", "optim.accumulate=2", "run.output=" +
                                     str(plain.output.parent / "acc")), evaluate_test=False)
    assert accumulated.optimiser_steps == plain.optimiser_steps // 2


def test_resume_refuses_another_configuration(small_config, tmp_path: Path) -> None:
    train(small_config("optim.epochs=1"), evaluate_test=False, stop_after_steps=1)
    with pytest.raises(StateError, match="different model, data or optimisation"):
        train(small_config("optim.epochs=1", "optim.lr=0.5"), resume="auto", evaluate_test=False)


def test_resume_from_a_damaged_state(small_config, tmp_path: Path) -> None:
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(StateError, match="not a readable training state"):
        train(small_config("optim.epochs=1"), resume=broken)


@pytest.mark.parametrize("override, message", [
    ("sampler.ids_per_batch=12", "needs 12 identities"),
    ("data.keypoints=none", "parts follow keypoints"),
    ("data.split=3", "split"),
])
def test_bad_setups_are_one_clear_error(small_config, override: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        train(small_config(override))


def test_models_without_keypoints_train_without_a_store(small_config, tmp_path: Path) -> None:
    """Training must improve on the same model left at its initial weights (a trainer that does not learn, e.g.
    steps of size ~0, stays there): the bound comes from that reference in the same run, not from a constant."""
    setup = ("model.arch=vidtrans_test", "data.keypoints=none", "optim.epochs=1")
    summary = train(small_config(*setup), evaluate_test=True)
    frozen = train(small_config(*setup, "optim.lr=1.0e-12", "optim.center_lr=1.0e-12", "optim.warmup_lr=1.0e-12",
                                "optim.min_lr=1.0e-12", output=tmp_path / "frozen"), evaluate_test=True)
    assert summary.test is not None and frozen.test is not None
    trained, untrained = summary.test["standard"]["mAP"], frozen.test["standard"]["mAP"]
    assert trained > untrained + 0.1, (trained, untrained)  # 0.51 vs 0.25 when written


def test_a_diverging_loss_stops_with_a_clear_error(small_config) -> None:
    from keyreid_stream.train.trainer import DivergedError

    with pytest.raises(DivergedError, match="lower the learning rate"):
        train(small_config("optim.lr=1.0e+30", "optim.warmup_epochs=0", "optim.epochs=1"))


def test_resume_needs_no_imagenet_weights(small_config, tmp_path: Path) -> None:
    """The saved state replaces every weight: a resumed run does not read (or fetch) the ImageNet file again."""
    import timm

    vit = timm.models.vision_transformer.VisionTransformer(img_size=64, patch_size=8, embed_dim=32, depth=3,
                                                           num_heads=2, num_classes=10)
    weights = tmp_path / "imagenet.pth"
    torch.save(vit.state_dict(), weights)
    config = small_config("optim.epochs=1", f"model.pretrained={weights}")
    first = train(config, evaluate_test=False, stop_after_steps=1)
    assert not first.completed
    weights.unlink()
    assert train(config, resume="auto", evaluate_test=False).completed
