"""Named architectures: ``build_model(arch, num_classes, num_cameras, **overrides)``.

A model file registers its variants with :func:`register_model`; each variant is a dict of constructor keyword
arguments. Overrides replace any of them (an unknown key is an error that lists the valid ones). The built model
remembers how it was built (``model.arch``, ``model.build_kwargs``) so that checkpoints can rebuild it.
"""

from __future__ import annotations

import difflib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

__all__ = ["ModelSpec", "build_model", "get_spec", "list_models", "register_model"]

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


def _ensure_builtin_models() -> None:
    # Importing the model files registers their variants.
    from keyreid_stream.model import keyreid, rapa  # noqa: F401


def list_models() -> list[str]:
    _ensure_builtin_models()
    return sorted(_REGISTRY)


def get_spec(arch: str) -> ModelSpec:
    _ensure_builtin_models()
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
    model = spec.model_class(**kwargs)
    model.arch = arch
    model.build_kwargs = dict(kwargs)
    if pretrained:
        from keyreid_stream.model.checkpoint import load_imagenet

        if pretrained is True and spec.timm_weights is None:
            raise ValueError(f"{arch} has no published ImageNet weights; pass a local file instead")
        source = spec.timm_weights if pretrained is True else Path(pretrained)
        report = load_imagenet(model, source)
        log.info("%s: %s", arch, report.summary())
    return model


def _check_keys(name: str, model_class: type[nn.Module], kwargs: Mapping[str, Any]) -> None:
    accepted = set(inspect.signature(model_class.__init__).parameters) - {"self", "num_classes", "num_cameras"}
    for key in kwargs:
        if key not in accepted:
            close = difflib.get_close_matches(key, sorted(accepted), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{name}: unknown model option {key!r}{hint}; valid: {', '.join(sorted(accepted))}")
