"""Refusing an unsafe model source before anything loads it (the YOLO pose backend and the YOLO detector)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["check_model_source"]


def check_model_source(
    model: str, allow_pickle: bool, *, official: re.Pattern[str], what: str, examples: str,
    error: type[Exception],
) -> None:
    """Refuse a model source before anything loads it; shared by the YOLO pose backend and the YOLO detector.

    Accepted: an ultralytics ``*.yaml`` (random weights), an official asset name matching ``official``
    (no folder: ultralytics downloads it), an existing local file or folder. A local ``.pt`` is a pickle,
    which runs code when loaded: it needs ``allow_pickle``. ``what`` names the model and ``examples`` lists
    the alternatives in the messages, raised as ``error``.
    """
    path = Path(model)
    if path.suffix == ".yaml" or official.match(model):
        return
    if not path.exists():
        raise error(f"{what} model {model!r} not found: give a local file, {examples}")
    if path.suffix == ".pt" and not allow_pickle:
        raise error(
            f"{model} is a pickled PyTorch file: loading it runs code stored in it. Pass allow_pickle=True "
            "(--allow-pickle) if you trust it, or export it to ONNX first"
        )
