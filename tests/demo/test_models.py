"""Which models the demo picks, and why it says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from keyreid_stream.demo.models import (
    CLASSICAL_THRESHOLD,
    TRAINED_THRESHOLD,
    choose_models,
    yolo_weights_available,
)


@pytest.fixture(autouse=True)
def offline(yolo_settings: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No internet here, and ultralytics is told so (YOLO_OFFLINE): official weights count as missing. An empty
    cache: the weights catalogue has nothing (whatever this machine's user cache holds)."""
    monkeypatch.setenv("KEYREID_STREAM_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KEYREID_STREAM_WEIGHTS_CATALOGUE", raising=False)


def test_classical_needs_no_weights() -> None:
    choice = choose_models("classical")
    assert choice.detector == {"kind": "hog"} and choice.pose == {"backend": "prior"}
    assert choice.embedding == {"kind": "part-histogram"}
    assert choice.quality_limited and choice.threshold == CLASSICAL_THRESHOLD
    assert "LIMITED" in choice.summary


def test_auto_without_weights_falls_back_and_says_why() -> None:
    choice = choose_models("auto")
    assert choice.detector["kind"] == "hog" and choice.embedding["kind"] == "part-histogram"
    assert "YOLO_OFFLINE" in choice.lines[0] and "yolo11n-pose.pt" in choice.lines[0]
    assert "no KeyRe-ID checkpoint" in choice.lines[1]
    assert choice.upgrade == ("yolo11n-pose", "keyreid-mars")
    assert choice.upgrade_command == "keyreid-stream weights fetch yolo11n-pose keyreid-mars"


def test_auto_uses_the_weights_it_has(tmp_path: Path) -> None:
    detector = tmp_path / "pose.onnx"
    detector.write_bytes(b"onnx")
    checkpoint = tmp_path / "keyreid.safetensors"
    checkpoint.write_bytes(b"weights")
    choice = choose_models("auto", detector_model=str(detector), reid_checkpoint=str(checkpoint))
    assert choice.detector["kind"] == "yolo-pose" and choice.detector["model"] == str(detector)
    assert choice.pose == {"backend": "auto"}  # the keypoints come with the boxes
    assert choice.embedding["kind"] == "model" and choice.embedding["checkpoint"] == str(checkpoint)
    assert not choice.quality_limited and choice.threshold == TRAINED_THRESHOLD


def test_auto_uses_the_cached_authors_keyreid(tmp_path: Path) -> None:
    from keyreid_stream.weights import CATALOGUE, installed_path

    cached = installed_path(CATALOGUE["keyreid-mars"])  # in this test's empty cache (the fixture above)
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"a converted checkpoint")
    choice = choose_models("auto")
    assert choice.embedding == {"kind": "model", "arch": "keyreid_vit_base", "checkpoint": str(cached),
                                "checkpoint_kind": "native", "num_cameras": 0, "allow_pickle": False}
    assert "authors' MARS weights" in choice.lines[1] and not choice.quality_limited
    assert choice.upgrade == ("yolo11n-pose",)  # only the detector is missing now
    assert choose_models("auto", reid_checkpoint="keyreid-mars").embedding["checkpoint"] == str(cached)


@pytest.mark.parametrize(("allow_pickle", "available"), [(False, False), (True, True)])
def test_a_local_pickle_loads_only_when_allowed(tmp_path: Path, allow_pickle: bool, available: bool) -> None:
    weights = tmp_path / "yolo.pt"
    weights.write_bytes(b"pickle")
    ok, why = yolo_weights_available(str(weights), allow_pickle)
    assert ok is available
    if not available:
        assert "allow_pickle" in why


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"mode": "trained"}, FileNotFoundError, "YOLO pose weights"),
    ({"mode": "auto", "reid_checkpoint": "missing.safetensors"}, FileNotFoundError, "checkpoint not found"),
    ({"mode": "fancy"}, ValueError, "auto, classical or trained"),
])
def test_impossible_choices_are_clear_errors(kwargs: dict, error: type, message: str) -> None:
    mode = kwargs.pop("mode")
    with pytest.raises(error, match=message):
        choose_models(mode, **kwargs)


def test_trained_needs_a_keyreid_checkpoint(tmp_path: Path) -> None:
    detector = tmp_path / "pose.onnx"
    detector.write_bytes(b"onnx")
    with pytest.raises(FileNotFoundError, match="weights fetch keyreid-mars"):
        choose_models("trained", detector_model=str(detector))


def test_the_threshold_can_be_set() -> None:
    assert choose_models("classical", threshold=0.7).threshold == 0.7


def test_the_shipped_demo_config_is_the_defaults() -> None:
    """`scripts/dev demo` runs without --config: configs/demo.yaml must say what it does."""
    from keyreid_stream.config import Config, load_config

    repo = Path(__file__).resolve().parents[2]
    assert load_config(Config, repo / "configs" / "demo.yaml", []).demo == Config().demo
