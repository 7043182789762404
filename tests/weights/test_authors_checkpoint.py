"""The authors' checkpoint format through the catalogue: ``weights fetch`` converts it (classes and cameras read from
the state dict) into our format, and ``worker`` / ``eval`` load it by its catalogue name; ``weights import`` of the
same file offline. The file is the authors' model code (tests/model/authors_reference.py) at a tiny size."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from keyreid_stream.cli import main  # noqa: E402
from keyreid_stream.data.synthetic import SyntheticSpec, write_synthetic_mars  # noqa: E402
from keyreid_stream.inference.loading import load_embedding_model  # noqa: E402
from keyreid_stream.matcher.api.search import crop_embedder_from_config  # noqa: E402
from keyreid_stream.model import build_model  # noqa: E402
from keyreid_stream.model.checkpoint import load_checkpoint  # noqa: E402
from keyreid_stream.model.registry import load_model  # noqa: E402

import authors_reference as authors  # noqa: E402  (tests/weights/conftest.py puts it on the path)
from file_server import FileServer  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
CLASSES, CAMERAS = 5, 3


@pytest.fixture
def authors_file(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    reference = authors.AuthorsKeyReID(num_classes=CLASSES, num_cameras=CAMERAS, **authors.tiny_kwargs())
    path = tmp_path / "Marsbest.pth"
    torch.save(reference.state_dict(), path)  # what the authors publish: a bare state dict under their names
    return path


def _site_catalogue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, data: bytes) -> None:
    path = tmp_path / "site-weights.yaml"
    path.write_text(
        "entries:\n- name: tiny-keyreid\n  filename: tiny_keyreid.pt\n  description: the authors' format, tiny\n"
        "  licence: test\n  convert: keyreid-official\n  arch: keyreid_test\n"
        f"  sources: [{{urls: ['{url}'], sha256: {hashlib.sha256(data).hexdigest()}, size: {len(data)}}}]\n")
    monkeypatch.setenv("KEYREID_STREAM_WEIGHTS_CATALOGUE", str(path))


def _same_weights_as_the_authors(path: Path, authors_path: Path) -> None:
    model = load_model(path)  # weights_only=True inside
    assert model.arch == "keyreid_test" and model.build_kwargs["compat"] == "official"
    assert (model.build_kwargs["num_classes"], model.build_kwargs["num_cameras"]) == (CLASSES, CAMERAS)
    direct = build_model("keyreid_test", CLASSES, CAMERAS, compat="official")
    load_checkpoint(direct, authors_path, "official")
    for key, value in direct.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_fetched_converted_then_loaded_by_name(files: FileServer, authors_file: Path, cache: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    data = authors_file.read_bytes()
    _site_catalogue(tmp_path, monkeypatch, files.add("/weights/Marsbest.pth", data, mode="drop"), data)
    assert main(["weights", "fetch", "tiny-keyreid", "--no-progress"]) == 0
    installed = cache / "weights" / "tiny_keyreid.pt"
    assert f"tiny-keyreid: {installed}" in capsys.readouterr().out
    _same_weights_as_the_authors(installed, authors_file)
    assert sorted(p.name for p in (cache / "weights").rglob("*") if p.is_file()) == ["tiny_keyreid.pt"]

    assert main(["weights", "list"]) == 0
    assert "cached" in next(line for line in capsys.readouterr().out.splitlines() if line.startswith("tiny-keyreid"))

    worker_model = load_embedding_model("keyreid_test", "tiny-keyreid")  # the worker's loader
    assert worker_model.name == "keyreid_test" and worker_model.version.startswith("sha256:")
    search = crop_embedder_from_config("keyreid_test", "tiny-keyreid")  # the matcher's image search
    space, descriptor = search(np.full((128, 64, 3), 90, np.uint8))
    assert space.startswith(f"keyreid_test@{worker_model.version}") and np.isfinite(descriptor).all()

    dataset = tmp_path / "synthetic"
    write_synthetic_mars(dataset, SyntheticSpec(train_ids=6, test_ids=4, distractor_tracklets=1, junk_tracklets=1,
                                                cameras=CAMERAS, tracklets_per_camera=(1, 2), frames=(4, 6),
                                                image_size=(64, 32), seed=1))
    code = main(["eval", "--config", str(CONFIGS / "keyreid_synthetic.yaml"), f"data.root={dataset}",
                 "data.workers=0", "eval.reports=false", "--checkpoint", "tiny-keyreid"])
    assert code == 0 and "standard" in capsys.readouterr().out


def test_imported_offline_and_a_wrong_file_refused(authors_file: Path, cache: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture) -> None:
    data = authors_file.read_bytes()
    _site_catalogue(tmp_path, monkeypatch, "http://127.0.0.1:9/Marsbest.pth", data)  # nothing listens there
    assert main(["weights", "fetch", "tiny-keyreid", "--no-progress", "--timeout", "2"]) == 1
    error = capsys.readouterr().err
    assert "http://127.0.0.1:9/Marsbest.pth" in error and hashlib.sha256(data).hexdigest() in error
    assert "keyreid-stream weights import tiny-keyreid PATH" in error
    with pytest.raises(FileNotFoundError, match="weights fetch tiny-keyreid.*weights import tiny-keyreid PATH"):
        load_embedding_model("keyreid_test", "tiny-keyreid")  # not cached: the worker says how to get it

    wrong = tmp_path / "wrong.pth"
    wrong.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])  # one bit flipped
    assert main(["weights", "import", "tiny-keyreid", str(wrong)]) == 1
    assert "Nothing was installed" in capsys.readouterr().err and not (cache / "weights" / "tiny_keyreid.pt").exists()

    assert main(["weights", "import", "tiny-keyreid", str(authors_file)]) == 0
    _same_weights_as_the_authors(cache / "weights" / "tiny_keyreid.pt", authors_file)
