"""Named architectures: ``build_model(arch, num_classes, num_cameras, **overrides)``, and rebuilding saved models.

A model file registers its variants with :func:`register_model`; each variant is a dict of constructor keyword
arguments. Overrides replace any of them (an unknown key is an error that lists the valid ones). The built model
remembers how it was built (``model.arch``, ``model.build_kwargs``) so that checkpoints can rebuild it:
:func:`load_model` rebuilds one from a saved checkpoint, :func:`convert_checkpoint` converts any supported
checkpoint into our format. The model files register themselves when :mod:`keyreid_stream.model` is imported
(as timm's model files do), so this module imports none of them.
"""

from __future__ import annotations

import difflib
import inspect
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from keyreid_stream.model.checkpoint import (
    FORMAT,
    CheckpointError,
    Kind,
    LoadReport,
    load_checkpoint,
    load_imagenet,
    load_native,
    read_checkpoint,
    save_checkpoint,
)

__all__ = [
    "ModelSpec", "build_model", "convert_checkpoint", "get_spec", "list_models", "load_model", "register_model",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    model_class: type[nn.Module]
    defaults: Mapping[str, Any]
    description: str
    timm_weights: str | None = None  # timm hub name of the ImageNet weights for pretrained=True


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    model_class: type[nn.Module],
    description: str,
    timm_weights: str | None = None,
    **defaults: Any,
) -> ModelSpec:
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _check_keys(name, model_class, defaults)
    spec = ModelSpec(name, model_class, dict(defaults), description, timm_weights)
    _REGISTRY[name] = spec
    return spec


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def get_spec(arch: str) -> ModelSpec:
    if arch not in _REGISTRY:
        close = difflib.get_close_matches(arch, list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown architecture {arch!r}{hint}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[arch]


def build_model(
    arch: str, num_classes: int, num_cameras: int, *, pretrained: bool | str | Path = False, **overrides: Any
) -> nn.Module:
    """Build a registered architecture.

    ``num_classes`` = training identities (0: an inference-only model without classifiers); ``num_cameras`` =
    size of the camera embedding (0: none). ``pretrained``: ``True`` loads ImageNet weights through timm's hub
    (needs internet), a path loads them from a local ``.pth``/``.npz``/``.safetensors`` file.
    """
    spec = get_spec(arch)
    _check_keys(arch, spec.model_class, overrides)
    kwargs = {**spec.defaults, **overrides, "num_classes": num_classes, "num_cameras": num_cameras}
    model: Any = spec.model_class(**kwargs)  # an nn.Module that also carries arch and build_kwargs
    model.arch = arch
    model.build_kwargs = dict(kwargs)
    if pretrained:
        if pretrained is True and spec.timm_weights is None:
            raise ValueError(f"{arch} has no published ImageNet weights; pass a local file instead")
        source = spec.timm_weights if pretrained is True else Path(pretrained)
        assert source is not None  # timm_weights checked just above
        report = load_imagenet(model, source)
        log.info("%s: %s", arch, report.summary())
    built: nn.Module = model
    return built


def _check_keys(name: str, model_class: type[nn.Module], kwargs: Mapping[str, Any]) -> None:
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self", "num_classes", "num_cameras"}
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name}: unknown model option {key!r}{hint}; valid: {', '.join(sorted(accepted))}")


def load_model(path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu",
               **overrides: Any) -> nn.Module:
    """Rebuild a model saved by :func:`~keyreid_stream.model.checkpoint.save_checkpoint` and load its weights (``overrides`` change options
    that do not alter the weights, e.g. ``num_classes=0`` is not allowed but ``drop_path_rate`` is). The saved
    ``extra`` values are on ``model.checkpoint_extra``."""
    path = Path(path)
    obj = read_checkpoint(path, allow_pickle=False)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a keyreid-stream checkpoint (use load_checkpoint for other kinds)")
    build = {**obj["build"], **overrides}
    model: Any = build_model(obj["arch"], build.pop("num_classes"), build.pop("num_cameras"), **build)
    load_native(model, obj, path)
    model.checkpoint_extra = dict(obj.get("extra") or {})  # e.g. the input normalisation it was trained with
    moved: nn.Module = model.to(map_location)
    return moved


def convert_checkpoint(source: str | os.PathLike[str], destination: str | os.PathLike[str], *, arch: str,
                       num_classes: int, num_cameras: int, kind: Kind = "auto", allow_pickle: bool = False,
                       **overrides: Any) -> LoadReport:
    """Read any supported checkpoint into ``build_model(arch, ...)`` and save it in our format.

    E.g. the authors' MARS weights: ``kind="official"``, ``arch="keyreid_vit_base"``, ``num_classes=625``,
    ``num_cameras=6``, ``compat="official"``.
    """
    try:
        model = build_model(arch, num_classes, num_cameras, **overrides)
    except ValueError as exc:  # an unknown architecture or option, a camera count the model cannot take
        raise CheckpointError(f"cannot build {arch} to convert {source} into: {exc}") from exc
    report = load_checkpoint(model, source, kind, allow_pickle=allow_pickle)
    if kind != "imagenet" and report.kind != "imagenet" and report.left_at_init:
        raise CheckpointError(f"{source}: {len(report.left_at_init)} model entries missing")
    save_checkpoint(model, destination, extra={"converted_from": Path(source).name, "source_kind": report.kind})
    return report
