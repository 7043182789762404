"""Checkpoints: our own format, the authors' state dicts, ImageNet ViT weights (.pth, .safetensors, .npz)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from keyreid_stream.model import CheckpointError, build_model, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from keyreid_stream.model.backbone import resize_pos_embed  # noqa: E402


def _inputs(batch: int = 2):
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(batch, 4, 3, 64, 32, generator=gen)
    keypoints = torch.rand(batch, 4, 17, 3, generator=gen) * torch.tensor([31, 63, 1.0])
    return frames, keypoints, torch.arange(batch) % 3


def _imagenet_vit() -> torch.nn.Module:
    """A tiny timm ViT laid out like ImageNet ViT-B/16: a square 14x14 grid and a classifier head."""
    torch.manual_seed(3)
    return timm.models.vision_transformer.VisionTransformer(
        img_size=112, patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=10)


def test_native_round_trip_rebuilds_the_model(tmp_path: Path) -> None:
    model = build_model("keyreid_test", 5, 3, tcss_shift=3).eval()
    path = save_checkpoint(model, tmp_path / "ckpt" / "model.pt", extra={"epoch": 7, "mAP": 0.5})
    assert not list(path.parent.glob("*.partial"))
    loaded = load_model(path).eval()
    assert loaded.build_kwargs["tcss_shift"] == 3
    frames, keypoints, cams = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded.embed(frames, keypoints, cams), model.embed(frames, keypoints, cams))
    report = load_checkpoint(build_model("keyreid_test", 5, 3, tcss_shift=3), path)
    assert report.kind == "native" and report.loaded == len(model.state_dict())


def test_native_checkpoint_refuses_another_architecture(tmp_path: Path) -> None:
    path = save_checkpoint(build_model("keyreid_test", 5, 3), tmp_path / "model.pt")
    with pytest.raises(CheckpointError, match="holds keyreid_test, the model is vidtrans_test"):
        load_checkpoint(build_model("vidtrans_test", 5, 3), path)


@pytest.mark.parametrize(("wrap", "prefix"), [(None, ""), ("state_dict", ""), ("model", "module.")])
def test_official_state_dict_variants_are_recognised(tmp_path: Path, wrap, prefix: str) -> None:
    source = build_model("keyreid_test", 5, 3, compat="official")
    state = _to_official_names(source)
    state = {prefix + k: v for k, v in state.items()}
    torch.save({wrap: state} if wrap else state, tmp_path / "w.pth")
    target = build_model("keyreid_test", 5, 3, compat="official")
    report = load_checkpoint(target, tmp_path / "w.pth")
    assert report.kind == "official" and not report.left_at_init
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def _to_official_names(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Our tiny model's weights under the authors' names (the inverse mapping, written out by hand)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        name = (key.replace("backbone.camera_embed", "base.Cam").replace("backbone.", "base.")
                .replace("global_block.", "b1.0.").replace("global_norm.", "b1.1.")
                .replace("part_block.", "b2.0.").replace("part_norm.", "b2.1.")
                .replace("global_head.bnneck.", "bottleneck.").replace("global_head.classifier.", "classifier.")
                .replace("temporal_attention.frame_conv.", "attention_conv.")
                .replace("temporal_attention.temporal_conv.", "attention_tconv."))
        if name.startswith("part_heads."):
            _, index, kind, rest = name.split(".", 3)
            name = f"{'bottleneck' if kind == 'bnneck' else 'classifier'}_{int(index) + 1}.{rest}"
        out[name] = value
        if name.startswith("b2.0."):
            out["block1." + name[5:]] = value
    return out


def test_official_weights_into_an_inference_only_model_drop_the_classifiers(tmp_path: Path) -> None:
    torch.save(_to_official_names(build_model("keyreid_test", 5, 3, compat="official")), tmp_path / "w.pth")
    report = load_checkpoint(build_model("keyreid_test", 0, 3, compat="official"), tmp_path / "w.pth", "official")
    assert sum("classifier" in k for k in report.dropped) == 7


@pytest.mark.parametrize(("edit", "match"), [
    (lambda s: s.pop("b2.1.weight"), "lacks 1 model entries"),
    (lambda s: s.__setitem__("extra_head.weight", torch.zeros(3)), "no place in this model"),
    (lambda s: s.__setitem__("classifier.weight", torch.zeros(9, 32)), "num_classes"),
    (lambda s: s.__setitem__("base.Cam", torch.zeros(6, 1, 32)), "num_cameras"),
    (lambda s: s.__setitem__("block1.norm1.weight", s["block1.norm1.weight"] + 1), "twin"),
])
def test_official_mismatches_get_clear_errors(tmp_path: Path, edit, match: str) -> None:
    state = _to_official_names(build_model("keyreid_test", 5, 3, compat="official"))
    edit(state)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(build_model("keyreid_test", 5, 3, compat="official"), tmp_path / "w.pth", "official")


def test_pickled_objects_are_refused_unless_allowed(tmp_path: Path) -> None:
    state = build_model("keyreid_test", 5, 3).state_dict()
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="allow_pickle=True"):
        load_checkpoint(build_model("keyreid_test", 5, 3), tmp_path / "pickled.pth")
    report = load_checkpoint(build_model("keyreid_test", 5, 3), tmp_path / "pickled.pth", allow_pickle=True)
    assert report.loaded == len(state)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint", b"PK\x03\x04garbage"])
def test_corrupt_files_get_clear_errors(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(CheckpointError, match="bad.pth"):
        load_checkpoint(build_model("keyreid_test", 5, 3), tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(build_model("keyreid_test", 5, 3), tmp_path / "missing.pth")


# ----------------------------------------------------------------------------------------------- ImageNet


def _check_imagenet_load(model: torch.nn.Module, vit: torch.nn.Module) -> None:
    source = vit.state_dict()
    own = model.state_dict()
    assert torch.equal(own["backbone.blocks.0.attn.qkv.weight"], source["blocks.0.attn.qkv.weight"])
    assert torch.equal(own["backbone.blocks.1.mlp.fc2.bias"], source["blocks.1.mlp.fc2.bias"])
    assert torch.equal(own["global_block.attn.proj.weight"], source["blocks.2.attn.proj.weight"])  # last block
    assert torch.equal(own["global_norm.weight"], source["norm.weight"])
    assert torch.equal(own["backbone.patch_embed.proj.weight"], source["patch_embed.proj.weight"])
    expected_pos = resize_pos_embed(source["pos_embed"], (8, 4))
    assert torch.allclose(own["backbone.pos_embed"], expected_pos) and expected_pos.shape == (1, 33, 32)


def test_imagenet_pth_and_safetensors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    vit = _imagenet_vit()
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(tmp_path / "vit.safetensors"))
    for name in ("vit.pth", "vit.safetensors"):
        model = build_model("keyreid_test", 5, 3)
        report = load_checkpoint(model, tmp_path / name)
        assert report.kind == "imagenet"
        assert {"head.weight", "head.bias"} <= set(report.dropped)
        assert "backbone.camera_embed" in report.left_at_init and "part_block.attn.qkv.weight" in report.left_at_init
        _check_imagenet_load(model, vit)
    model = build_model("keyreid_test", 5, 3, pretrained=tmp_path / "vit.pth")
    _check_imagenet_load(model, vit)


def _to_big_vision_npz(vit: torch.nn.Module, path: Path) -> None:
    """Write a timm ViT in the big_vision/JAX .npz layout (as Google publishes ViT weights)."""
    s = {k: v.detach().numpy() for k, v in vit.state_dict().items()}
    dim, heads = s["cls_token"].shape[-1], 2
    out = {"embedding/kernel": s["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": s["patch_embed.proj.bias"], "cls": s["cls_token"],
           "Transformer/posembed_input/pos_embedding": s["pos_embed"],
           "Transformer/encoder_norm/scale": s["norm.weight"], "Transformer/encoder_norm/bias": s["norm.bias"],
           "head/kernel": s["head.weight"].T, "head/bias": s["head.bias"]}
    for i in range(3):
        p, b = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        out[p + "LayerNorm_0/scale"], out[p + "LayerNorm_0/bias"] = s[b + "norm1.weight"], s[b + "norm1.bias"]
        out[p + "LayerNorm_2/scale"], out[p + "LayerNorm_2/bias"] = s[b + "norm2.weight"], s[b + "norm2.bias"]
        qkv_w, qkv_b = s[b + "attn.qkv.weight"].reshape(3, dim, dim), s[b + "attn.qkv.bias"].reshape(3, dim)
        for j, name in enumerate(("query", "key", "value")):
            out[p + f"MultiHeadDotProductAttention_1/{name}/kernel"] = qkv_w[j].T.reshape(dim, heads, -1)
            out[p + f"MultiHeadDotProductAttention_1/{name}/bias"] = qkv_b[j].reshape(heads, -1)
        out[p + "MultiHeadDotProductAttention_1/out/kernel"] = s[b + "attn.proj.weight"].T.reshape(heads, -1, dim)
        out[p + "MultiHeadDotProductAttention_1/out/bias"] = s[b + "attn.proj.bias"]
        for j in (0, 1):
            out[p + f"MlpBlock_3/Dense_{j}/kernel"] = s[b + f"mlp.fc{j + 1}.weight"].T
            out[p + f"MlpBlock_3/Dense_{j}/bias"] = s[b + f"mlp.fc{j + 1}.bias"]
    np.savez(path, **out)


def test_imagenet_npz(tmp_path: Path) -> None:
    vit = _imagenet_vit()
    _to_big_vision_npz(vit, tmp_path / "vit.npz")
    model = build_model("keyreid_test", 5, 3)
    report = load_checkpoint(model, tmp_path / "vit.npz")
    assert report.kind == "imagenet"
    reference = build_model("keyreid_test", 5, 3)
    load_checkpoint(reference, _save(vit, tmp_path / "vit.pth"))
    for key in ("backbone.blocks.0.attn.qkv.weight", "global_block.mlp.fc1.weight", "backbone.pos_embed",
                "backbone.patch_embed.proj.weight", "global_norm.bias"):
        assert torch.allclose(model.state_dict()[key], reference.state_dict()[key], atol=1e-6), key


def _save(vit: torch.nn.Module, path: Path) -> Path:
    torch.save(vit.state_dict(), path)
    return path


def test_imagenet_with_more_blocks_than_the_model_is_refused(tmp_path: Path) -> None:
    vit = timm.models.vision_transformer.VisionTransformer(img_size=112, patch_size=8, embed_dim=32, depth=5,
                                                           num_heads=2)
    with pytest.raises(ValueError, match="more blocks"):
        load_checkpoint(build_model("keyreid_test", 5, 3), _save(vit, tmp_path / "deep.pth"), "imagenet")


def test_pretrained_true_on_a_test_variant_is_refused() -> None:
    with pytest.raises(ValueError, match="no published ImageNet weights"):
        build_model("keyreid_test", 5, 3, pretrained=True)


def test_imagenet_weights_without_internet_say_what_to_do(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from keyreid_stream.model.checkpoint import load_imagenet

    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import time from the environment
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))  # an empty cache
    model = build_model("keyreid_test", 0, 0)
    with pytest.raises(CheckpointError, match=r"model.pretrained=PATH"):
        load_imagenet(model, "vit_tiny_patch16_224.augreg_in21k")
