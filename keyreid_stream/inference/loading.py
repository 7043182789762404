"""Loading the re-ID model that computes descriptors: a checkpoint file or a weights catalogue name, our own
format or the authors', or random weights (tests and benchmarks only). The model carries the name and version
that published descriptors are labelled with (their descriptor space)."""

from __future__ import annotations

import hashlib
import inspect
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from keyreid_stream.model.checkpoint import CheckpointError, load_checkpoint
from keyreid_stream.model.registry import build_model, get_spec, load_model
from keyreid_stream.weights import resolve_weights

__all__ = ["RANDOM_VERSION", "EmbeddingModel", "load_embedding_model"]

logger = logging.getLogger(__name__)

RANDOM_VERSION = "random-init"


@dataclass(frozen=True)
class EmbeddingModel:
    """A loaded re-ID model with the name and version that the published messages carry."""

    model: torch.nn.Module
    name: str
    version: str


def _file_version(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:12]}"


def load_embedding_model(arch: str, checkpoint: str = "", *, checkpoint_kind: str = "auto",
                         num_cameras: int = 0, allow_pickle: bool = False) -> EmbeddingModel:
    """``checkpoint``: a file or a weights catalogue name (``keyreid-stream weights list``). Our checkpoints
    rebuild themselves (``arch`` is then read from the file); the authors' weights
    (``official``) go into ``build_model(arch, 0, num_cameras, compat="official")``; no checkpoint = random
    weights, whose descriptors carry no identity (tests and benchmarks only; a warning says so)."""
    if not checkpoint:
        logger.warning("embedding model %s has RANDOM weights (embedding.checkpoint is empty): its descriptors "
                       "do not identify anybody; give a trained checkpoint for real use", arch)
        return EmbeddingModel(build_model(arch, 0, num_cameras), arch, RANDOM_VERSION)
    path = resolve_weights(checkpoint)  # a file, or a cached catalogue name (e.g. keyreid-mars)
    if checkpoint_kind in ("auto", "native"):
        try:
            model = load_model(path)
            return EmbeddingModel(model, str(getattr(model, "arch", arch)), _file_version(path))
        except CheckpointError as exc:
            if checkpoint_kind == "native" or "not a keyreid-stream checkpoint" not in str(exc):
                raise
    if "compat" not in inspect.signature(get_spec(arch).model_class.__init__).parameters:
        raise CheckpointError(f"{path}: not a keyreid-stream checkpoint, and {arch} has no other checkpoint format "
                              "(its authors published no weights)")
    model = build_model(arch, 0, num_cameras, compat="official")
    load_checkpoint(model, path, "official", allow_pickle=allow_pickle)
    return EmbeddingModel(model, arch, _file_version(path))
