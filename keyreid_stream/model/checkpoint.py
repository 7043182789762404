"""Reading and writing model weights.

``load_checkpoint(model, path, kind)`` reads:

* ``"native"`` -- our own checkpoints (:func:`save_checkpoint`): the architecture, how it was built and the
  weights; :func:`~keyreid_stream.model.registry.load_model` rebuilds the model from one file.
* ``"official"`` -- the authors' KeyRe-ID or VID-Trans-ReID state dicts (their key names; a ``module.`` prefix
  and ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers are accepted). Build the model with
  ``compat="official"`` to get their outputs.
* ``"imagenet"`` -- a timm ViT (``.pth``/``.pt``, ``.safetensors``, or a big_vision/JAX ``.npz``; the positional
  embedding is resized to the model's patch grid), or for RAPA a timm / torchvision ResNet. Each architecture
  converts it (``model.imagenet_state_dict``); parts that ImageNet has no weights for stay random.
* ``"auto"`` -- decided from the file.

Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only, never arbitrary
pickled objects. ``allow_pickle=True`` lifts that for a file the user trusts.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["FORMAT", "CheckpointError", "Kind", "LoadReport", "load_checkpoint", "load_imagenet", "load_native",
           "read_checkpoint", "save_checkpoint"]

log = logging.getLogger(__name__)

FORMAT = "keyreid-stream/checkpoint"
FORMAT_VERSION = 1
Kind = Literal["auto", "native", "official", "imagenet"]


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model; the message says which key and why."""


@dataclass(frozen=True)
class LoadReport:
    kind: str
    source: str
    loaded: int
    left_at_init: tuple[str, ...] = ()  # model entries the checkpoint had no value for
    dropped: tuple[str, ...] = ()  # checkpoint entries deliberately not used
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        text = f"{self.kind} weights from {self.source}: {self.loaded} tensors loaded"
        if self.left_at_init:
            text += f", {len(self.left_at_init)} left at their initial values"
        if self.dropped:
            text += f", {len(self.dropped)} checkpoint entries not used"
        return text


# ----------------------------------------------------------------------------------------------- reading files


def read_checkpoint(path: Path, allow_pickle: bool) -> Any:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    if suffix == ".npz":
        return _read_npz_vit(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        if not allow_pickle and "weights_only" in str(exc):
            raise CheckpointError(
                f"{path}: the file contains Python objects besides tensors; it was not loaded. If you trust "
                "this file, load it with allow_pickle=True (--allow-pickle)"
            ) from exc
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc


def _read_npz_vit(path: Path) -> dict[str, torch.Tensor]:
    """A big_vision/JAX ViT ``.npz`` -> a timm state dict, through timm's own converter."""
    import numpy as np
    from timm.models.vision_transformer import VisionTransformer

    with np.load(path, allow_pickle=False) as npz:
        if "Transformer/posembed_input/pos_embedding" not in npz.files:
            raise CheckpointError(f"{path}: not a ViT .npz (no Transformer/posembed_input/pos_embedding)")
        tokens, width = npz["Transformer/posembed_input/pos_embedding"].shape[1:]
        kernel = npz["embedding/kernel"].shape  # (p, p, 3, width)
        depth = len({name.split("/")[1] for name in npz.files if name.startswith("Transformer/encoderblock_")})
        heads = npz["Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"].shape[1]
    grid = int(round((tokens - 1) ** 0.5))
    vit = VisionTransformer(img_size=grid * kernel[0], patch_size=kernel[0], embed_dim=width, depth=depth,
                            num_heads=heads, num_classes=0)
    vit.load_pretrained(str(path))
    return vit.state_dict()


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict (names -> tensors)")
    return obj


def _detect_kind(obj: Any, path: Path) -> str:
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
        return "native"
    state = _unwrap(obj, path)
    keys = {k.removeprefix("module.") for k in state}
    if "base.pos_embed" in keys or "b1.0.attn.qkv.weight" in keys:
        return "official"
    if "pos_embed" in keys and "blocks.0.attn.qkv.weight" in keys:
        return "imagenet"
    if "conv1.weight" in keys and "layer1.0.conv1.weight" in keys:
        return "imagenet"  # a timm or torchvision ResNet
    if "backbone.pos_embed" in keys or "backbone.conv1.weight" in keys:
        return "native-state-dict"
    raise CheckpointError(f"{path}: cannot tell what kind of checkpoint this is; pass kind= explicitly")


# ----------------------------------------------------------------------------------------------- loading


def load_checkpoint(model: nn.Module, path: str | os.PathLike[str], kind: Kind = "auto", *,
                    allow_pickle: bool = False) -> LoadReport:
    """Load weights into ``model`` (any registered architecture); returns what was loaded, left alone and dropped."""
    path = Path(path)
    obj = read_checkpoint(path, allow_pickle)
    detected = _detect_kind(obj, path) if kind == "auto" else kind
    if detected == "native":
        return load_native(model, obj, path)
    state = _unwrap(obj, path)
    if detected == "native-state-dict":
        return _apply(model, dict(state), [], path, "native", strict=True)
    if detected == "official":
        return _load_official(model, state, path)
    if detected == "imagenet":
        return _load_imagenet_state(model, state, str(path))
    raise CheckpointError(f"unknown checkpoint kind {kind!r}; use auto, native, official or imagenet")


def _load_official(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> LoadReport:
    convert = getattr(model, "official_state_dict", None)
    if convert is None:
        raise CheckpointError(f"{path}: {type(model).__name__} has no authors' checkpoint format to read (its authors "
                              "published no code); load our own checkpoints or ImageNet weights")
    if getattr(model, "compat", None) != "official":
        log.warning("%s: the authors' weights give the authors' outputs only with compat='official'", path)
    try:
        converted, dropped = convert(state)
    except ValueError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    own = model.state_dict()
    for key in [k for k in converted if k.split(".")[-2:] == ["classifier", "weight"] and k not in own]:
        dropped.append(key)  # an inference-only model (num_classes=0) has no classifiers
        del converted[key]
    return _apply(model, converted, dropped, path, "official", strict=True)


def _load_imagenet_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> LoadReport:
    convert = getattr(model, "imagenet_state_dict", None)
    if convert is None:
        raise CheckpointError(f"{source}: {type(model).__name__} has no ImageNet backbone to load weights into")
    try:
        converted, dropped = convert(state)
    except ValueError as exc:
        raise CheckpointError(f"{source}: {exc}") from exc
    return _apply(model, converted, dropped, Path(source), "imagenet", strict=False)


def load_imagenet(model: nn.Module, source: str | os.PathLike[str]) -> LoadReport:
    """ImageNet ViT weights from a local file, or (a ``str`` timm name, e.g. from ``pretrained=True``) timm's hub."""
    if isinstance(source, str) and not Path(source).exists() and "." in source and "/" not in source:
        import timm

        log.info("fetching %s through timm's hub (needs internet the first time)", source)
        try:
            hub_model = timm.create_model(source, pretrained=True, num_classes=0)
        except (OSError, ValueError, RuntimeError) as exc:  # no network, no cache, hub errors
            raise CheckpointError(
                f"cannot fetch the ImageNet weights {source!r} through timm's hub ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); on a machine without internet, download "
                "them elsewhere and pass the local .pth/.npz/.safetensors file (model.pretrained=PATH)") from exc
        return _load_imagenet_state(model, hub_model.state_dict(), f"timm:{source}")
    return load_checkpoint(model, source, kind="imagenet")


def load_native(model: nn.Module, obj: dict[str, Any], path: Path) -> LoadReport:
    version = obj.get("version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version}, this build reads {FORMAT_VERSION}")
    arch = getattr(model, "arch", None)
    if arch is not None and obj.get("arch") != arch:
        raise CheckpointError(f"{path}: the checkpoint holds {obj.get('arch')}, the model is {arch}")
    return _apply(model, _unwrap(obj["state_dict"], path), [], path, "native", strict=True)


def _apply(model: nn.Module, state: dict[str, torch.Tensor], dropped: list[str], path: Path, kind: str,
           *, strict: bool) -> LoadReport:
    own = model.state_dict()
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise CheckpointError(f"{path}: {len(unexpected)} {kind} entries have no place in this model, e.g. "
                              f"{', '.join(unexpected[:4])}")
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(value.shape)} in the checkpoint but "
                                  f"{tuple(own[key].shape)} in the model{_shape_hint(key)}")
    missing = tuple(sorted(set(own) - set(state)))
    if strict and missing:
        raise CheckpointError(f"{path}: the checkpoint lacks {len(missing)} model entries, e.g. "
                              f"{', '.join(missing[:4])}")
    model.load_state_dict(state, strict=False)
    report = LoadReport(kind, str(path), len(state), missing, tuple(dropped))
    log.info(report.summary())
    return report


def _shape_hint(key: str) -> str:
    if "classifier" in key:
        return " (build the model with the checkpoint's num_classes, or num_classes=0 for inference)"
    if "camera_embed" in key:
        return " (build the model with the checkpoint's num_cameras)"
    if "part_block" in key or "part_norm" in key or "part_heads" in key:
        return " (num_frames and embed_dim must match the checkpoint)"
    return ""


# ----------------------------------------------------------------------------------------------- saving


def save_checkpoint(model: nn.Module, path: str | os.PathLike[str], *, extra: dict[str, Any] | None = None) -> Path:
    """Write the model (architecture, build options, weights, ``extra`` plain values) atomically."""
    if not hasattr(model, "arch"):
        raise CheckpointError("only models made by build_model() can be saved (they know how to rebuild)")
    path = Path(path)
    built: Any = model  # made by build_model(): it carries arch and build_kwargs
    payload = {"format": FORMAT, "version": FORMAT_VERSION, "arch": built.arch,
               "build": dict(built.build_kwargs), "state_dict": model.state_dict(), "extra": extra or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
    return path
