"""``keyreid-stream model ...``: list, convert the authors' weights, info, export; errors in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from keyreid_stream.cli import main  # noqa: E402
from keyreid_stream.model import load_model  # noqa: E402

import authors_reference as authors  # noqa: E402  (tests/model/conftest.py puts it on the path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_model_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "model", "list")
    assert code == 0 and all(name in out for name in ("keyreid_vit_base", "vidtrans_vit_base", "rapa_resnet50"))


def test_convert_the_authors_weights_then_info(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    reference = authors.AuthorsKeyReID(num_classes=5, num_cameras=3, **authors.tiny_kwargs())
    torch.save(reference.state_dict(), tmp_path / "authors.pth")
    code, out, _ = run(capsys, "model", "convert", str(tmp_path / "authors.pth"), str(tmp_path / "ours.pt"),
                       "--arch", "keyreid_test", "--num-classes", "5", "--num-cameras", "3", "--compat", "official")
    assert code == 0 and "official weights" in out
    model = load_model(tmp_path / "ours.pt")
    assert model.compat == "official"
    assert torch.equal(model.state_dict()["part_block.attn.qkv.weight"], reference.state_dict()["b2.0.attn.qkv.weight"])
    code, out, _ = run(capsys, "model", "info", str(tmp_path / "ours.pt"))
    assert code == 0 and "architecture: keyreid_test" in out and "descriptor: 800 dims" in out


def test_convert_imagenet_resnet_weights_into_rapa(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from timm.models.resnet import BasicBlock, ResNet

    resnet = ResNet(block=BasicBlock, layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8, num_classes=10)
    torch.save(resnet.state_dict(), tmp_path / "resnet.pth")
    code, out, _ = run(capsys, "model", "convert", str(tmp_path / "resnet.pth"), str(tmp_path / "rapa.pt"),
                       "--arch", "rapa_test", "--num-classes", "0", "--num-cameras", "0", "--kind", "imagenet")
    assert code == 0 and "imagenet weights" in out
    model = load_model(tmp_path / "rapa.pt")
    assert model.arch == "rapa_test"
    converted, source = model.state_dict(), resnet.state_dict()
    assert torch.equal(converted["backbone.layer4.0.conv1.weight"], source["layer4.0.conv1.weight"])


@pytest.mark.parametrize(("argv", "message"), [
    (["model", "info", "missing.pt"], "no such checkpoint"),
    (["model", "convert", "missing.pth", "out.pt", "--arch", "rapa_test", "--num-classes", "5", "--num-cameras", "6"],
     "no camera embedding"),
    (["model", "convert", "missing.pth", "out.pt", "--arch", "rapa_resnet", "--num-classes", "5", "--num-cameras",
      "0"], "did you mean 'rapa_resnet50'"),
    (["model", "convert", "missing.pth", "out.pt", "--arch", "keyreid_test", "--num-classes", "5",
      "--num-cameras", "3"], "no such checkpoint"),
])
def test_errors_are_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch, argv, message) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_export_a_checkpoint_to_onnx(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from keyreid_stream.model import build_model, save_checkpoint
    from keyreid_stream.model.export import check_onnx

    model = build_model("vidtrans_test", 5, 3)
    save_checkpoint(model, tmp_path / "m.pt")
    code, out, _ = run(capsys, "model", "export", str(tmp_path / "m.pt"), str(tmp_path / "m.onnx"))
    assert code == 0 and (tmp_path / "m.onnx").is_file()
    assert check_onnx(model, tmp_path / "m.onnx") <= 1e-4
