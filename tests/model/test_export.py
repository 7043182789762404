"""ONNX export of the inference path: onnxruntime against PyTorch ``embed`` on a batch size other than the
export's (the batch dimension is dynamic), graph input/output names and shapes, exporting without cameras, the
model's state after export, and the ``check_onnx`` tolerance. Tiny CPU models only."""

from __future__ import annotations

import sys

import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from keyreid_stream.model import build_model  # noqa: E402
from keyreid_stream.model.export import check_onnx, export_onnx  # noqa: E402

from model_testing import randomise_batchnorm  # noqa: E402  (conftest.py puts it on the path)

pytestmark = pytest.mark.slow  # six exports, about 30 s on two CPU cores

EXPORT_BATCH, RUN_BATCH, NUM_CAMERAS = 2, 3, 4


def _model(arch: str, num_cameras: int = NUM_CAMERAS, **overrides: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=5, num_cameras=num_cameras, **overrides)
    randomise_batchnorm(model)
    return model


def _inputs(model: torch.nn.Module, batch: int, cameras: bool = True) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(7)
    (height, width), frames = model.img_size, model.num_frames
    inputs = {"frames": torch.randn(batch, frames, 3, height, width, generator=gen)}
    if model.needs_keypoints:
        points = torch.rand(batch, frames, 17, 3, generator=gen)
        inputs["keypoints"] = points * torch.tensor([width - 1.0, height - 1.0, 1.0])
    if cameras:
        inputs["camera_ids"] = torch.randint(0, NUM_CAMERAS, (batch,), generator=gen)
    return inputs


def _run(path: object, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ort.InferenceSession]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["descriptor"], {name: value.numpy() for name, value in inputs.items()})
    return torch.from_numpy(out), session


@pytest.mark.parametrize(
    ("arch", "overrides"),
    [("keyreid_test", {}), ("keyreid_test", {"compat": "official"}), ("vidtrans_test", {})],
    ids=["keyreid-paper", "keyreid-official", "vidtrans-paper"],
)
def test_onnx_matches_pytorch_with_dynamic_batch(tmp_path, arch, overrides):
    model = _model(arch, **overrides).train()  # export must switch to eval and back
    path = export_onnx(model, tmp_path / "model.onnx", batch_size=EXPORT_BATCH)
    assert path == tmp_path / "model.onnx" and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temporary file left behind
    assert model.training

    inputs = _inputs(model, RUN_BATCH)
    got, session = _run(path, inputs)
    with torch.no_grad():
        expected = model.eval().embed(inputs["frames"], inputs.get("keypoints"), inputs["camera_ids"])

    assert [node.name for node in session.get_inputs()] == list(inputs)  # frames, [keypoints,] camera_ids
    assert [node.name for node in session.get_outputs()] == ["descriptor"]
    assert session.get_inputs()[-1].type == "tensor(int64)"
    assert got.shape == expected.shape == (RUN_BATCH, model.descriptor_dim)
    assert (got - expected).abs().max().item() <= 1e-4
    assert check_onnx(model, path, batch_size=1, raise_on_mismatch=True) <= 1e-4


@pytest.mark.parametrize("overrides", [{}, {"part_split": "stripes", "reference": "first"}], ids=["pose", "stripes"])
def test_rapa_exports_with_its_reference_selection(tmp_path, overrides):
    """RAPA's arg max frame choice, keypoint gather, ROI masks and relation attention all run inside the graph."""
    model = _model("rapa_test", num_cameras=0, **overrides)
    path = export_onnx(model, tmp_path / "rapa.onnx", batch_size=EXPORT_BATCH)
    inputs = _inputs(model, RUN_BATCH, cameras=False)
    got, session = _run(path, inputs)
    with torch.no_grad():
        expected = model.eval().embed(inputs["frames"], inputs.get("keypoints"))
    assert [node.name for node in session.get_inputs()] == list(inputs)  # no camera ids: RAPA has none
    assert got.shape == expected.shape == (RUN_BATCH, model.descriptor_dim)
    assert (got - expected).abs().max().item() <= 1e-4


def test_export_without_cameras(tmp_path):
    model = _model("keyreid_test", num_cameras=0)
    assert model.backbone.camera_embed is None
    path = export_onnx(model, tmp_path / "nocam.onnx", batch_size=EXPORT_BATCH)
    graph = onnx.load(str(path)).graph
    assert [node.name for node in graph.input] == ["frames", "keypoints"]
    assert [node.name for node in graph.output] == ["descriptor"]

    inputs = _inputs(model, RUN_BATCH, cameras=False)
    got, _ = _run(path, inputs)
    with torch.no_grad():
        expected = model.eval().embed(inputs["frames"], inputs["keypoints"])
    assert got.shape == (RUN_BATCH, model.descriptor_dim)
    assert (got - expected).abs().max().item() <= 1e-4

    # check_onnx reports a model that no longer matches the file
    with torch.no_grad():
        model.global_head.bnneck.running_mean.add_(1.0)
    assert check_onnx(model, path) > 1e-2
    with pytest.raises(ValueError, match="differs from PyTorch"):
        check_onnx(model, path, raise_on_mismatch=True)


def test_export_option_errors(tmp_path):
    model = _model("keyreid_test", num_cameras=0)
    with pytest.raises(ValueError, match="no camera embedding"):
        export_onnx(model, tmp_path / "x.onnx", with_cameras=True)
    with pytest.raises(ValueError, match="needs keypoints"):
        export_onnx(model, tmp_path / "x.onnx", with_keypoints=False)
    with pytest.raises(ValueError, match="opset"):
        export_onnx(model, tmp_path / "x.onnx", opset=13)
    assert not list(tmp_path.iterdir())


def test_missing_onnx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"keyreid-stream\[export\]"):
        export_onnx(_model("vidtrans_test"), tmp_path / "x.onnx")
