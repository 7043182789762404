"""ONNX export of a model's inference path, ``model.embed`` (KeyRe-ID, VID-Trans-ReID, RAPA).

>>> from keyreid_stream.model.export import check_onnx, export_onnx
>>> path = export_onnx(model, "keyreid.onnx")        # inputs frames, keypoints, camera_ids; output descriptor
>>> check_onnx(model, path, raise_on_mismatch=True)  # max abs difference onnxruntime vs PyTorch

Graph inputs: ``frames`` ``(B, T, 3, H, W)`` float32, ``keypoints`` ``(B, T, 17, 3)`` float32 in pixels of
the frames (only when the model needs keypoints: the part heatmaps are rendered inside the graph) and
``camera_ids`` ``(B,)`` int64 (only when the model has a camera embedding). Output: ``descriptor`` ``(B, D)``.
``B`` is dynamic unless ``dynamic_batch=False``. Needs the ``export`` extra (``onnx``, ``onnxscript``;
``onnxruntime`` for :func:`check_onnx`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["check_onnx", "export_onnx"]

log = logging.getLogger(__name__)

_EXTRA_HINT = "pip install 'keyreid-stream[export]'"


def _require(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(f"ONNX export needs the '{module}' package: {_EXTRA_HINT}") from err


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's own chatter (per-pass INFO logs, a dim-naming UserWarning) lowered for the export."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir")]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*axis name.*will not be used", category=UserWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _EmbedAdapter(nn.Module):
    """``model.embed`` with positional tensor inputs, in the order of the graph's inputs."""

    def __init__(self, model: nn.Module, with_keypoints: bool, with_cameras: bool) -> None:
        super().__init__()
        self.model: Any  # a registry model with ``embed``
        self.model, self.with_keypoints, self.with_cameras = model, with_keypoints, with_cameras

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        tensors = iter(inputs)
        frames = next(tensors)
        keypoints = next(tensors) if self.with_keypoints else None
        camera_ids = next(tensors) if self.with_cameras else None
        result: torch.Tensor = self.model.embed(frames, keypoints, camera_ids)
        return result


def _flags(model: Any, with_keypoints: bool | None, with_cameras: bool | None) -> tuple[bool, bool]:
    has_cameras = getattr(model.backbone, "camera_embed", None) is not None
    keypoints = model.needs_keypoints if with_keypoints is None else with_keypoints
    cameras = has_cameras if with_cameras is None else with_cameras
    if model.needs_keypoints and not keypoints:
        raise ValueError("this model needs keypoints (KPS); it cannot be exported without them")
    if cameras and not has_cameras:
        raise ValueError("with_cameras=True but the model has no camera embedding (num_cameras=0)")
    return keypoints, cameras


def _inputs(model: Any, batch: int, keypoints: bool, cameras: bool, seed: int = 0
            ) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    (height, width), frames = model.img_size, model.num_frames
    inputs = {"frames": torch.randn(batch, frames, 3, height, width, generator=gen)}
    if keypoints:
        points = torch.rand(batch, frames, 17, 3, generator=gen)
        inputs["keypoints"] = points * torch.tensor([width - 1.0, height - 1.0, 1.0])
    if cameras:
        high = model.backbone.num_cameras
        inputs["camera_ids"] = torch.randint(0, high, (batch,), generator=gen, dtype=torch.int64)
    return inputs


def export_onnx(
    model: nn.Module, path: str | os.PathLike[str], *, batch_size: int = 1, dynamic_batch: bool = True,
    opset: int = 18, with_keypoints: bool | None = None, with_cameras: bool | None = None,
) -> Path:
    """Export ``model.embed`` (eval mode, CPU, float32) to ONNX at ``path``; returns the path.

    ``with_keypoints`` / ``with_cameras``: None follows the model (keypoints when it needs them, camera ids
    when it has a camera embedding); ``with_cameras=False`` exports a graph without camera ids. The file is
    written atomically and validated with ``onnx.checker``; the model's mode, device and dtype are restored.
    Uses the dynamo exporter (``torch.export``, non-strict), which needs ``onnxscript``.
    """
    onnx = _require("onnx")
    _require("onnxscript")
    if opset < 17:
        raise ValueError(f"opset must be >= 17, got {opset}")
    keypoints, cameras = _flags(model, with_keypoints, with_cameras)
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    param = next(model.parameters())
    was_training, device, dtype = model.training, param.device, param.dtype  # .to() changes param in place
    inputs = _inputs(model, batch_size, keypoints, cameras)
    names = list(inputs)
    batch_dim = torch.export.Dim("batch", min=1, max=4096)
    shapes = (tuple({0: batch_dim} if dynamic_batch else None for _ in names),)  # one entry: the *inputs
    try:
        adapter = _EmbedAdapter(model.to("cpu", torch.float32).eval(), keypoints, cameras).eval()
        with torch.no_grad(), _quiet_exporter():
            program = torch.onnx.export(
                adapter, tuple(inputs.values()), dynamo=True, opset_version=opset, input_names=names,
                output_names=["descriptor"], dynamic_shapes=shapes, optimize=True, verbose=False,
            )
        assert program is not None  # dynamo=True always returns an ONNXProgram
        program.save(str(tmp), external_data=False)
        onnx.checker.check_model(str(tmp), full_check=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        model.to(device, dtype).train(was_training)
    log.info("exported %s to %s (opset %d, inputs %s, dynamic batch %s)", type(model).__name__, path, opset,
             ", ".join(names), dynamic_batch)
    return path


def check_onnx(
    model: nn.Module, path: str | os.PathLike[str], *, batch_size: int = 2, atol: float = 1e-4, seed: int = 0,
    raise_on_mismatch: bool = False,
) -> float:
    """Max abs difference between onnxruntime (CPU) and ``model.embed`` on the same random inputs.

    Frames are standard normal, keypoints uniform in the frame with confidence in [0, 1], camera ids in
    range.
    With ``raise_on_mismatch`` a difference above ``atol`` raises ValueError; otherwise the caller decides.
    """
    ort = _require("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    graph_inputs = {node.name for node in session.get_inputs()}
    inputs = _inputs(model, batch_size, "keypoints" in graph_inputs, "camera_ids" in graph_inputs, seed)
    (got,) = session.run(["descriptor"], {name: tensor.numpy() for name, tensor in inputs.items()})
    param, was_training = next(model.parameters()), model.training
    args = [inputs.get(name) for name in ("frames", "keypoints", "camera_ids")]
    args = [None if arg is None else arg.to(param.device, param.dtype if arg.is_floating_point() else None)
            for arg in args]
    try:
        with torch.no_grad():
            evaluating: Any = model.eval()  # a registry model with ``embed``
            expected = evaluating.embed(*args).float()
    finally:
        model.train(was_training)
    diff = float((torch.from_numpy(got) - expected.cpu()).abs().max())
    log.info("ONNX check of %s: max abs difference %.3g (atol %.3g)", path, diff, atol)
    if raise_on_mismatch and not diff <= atol:
        raise ValueError(f"ONNX output differs from PyTorch by {diff:.3g} > atol {atol:.3g}")
    return diff
