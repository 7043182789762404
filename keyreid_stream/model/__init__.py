"""KeyRe-ID, VID-Trans-ReID and RAPA models (torch, timm), their checkpoints, losses and export.

>>> from keyreid_stream.model import build_model
>>> model = build_model("keyreid_vit_base", num_classes=625, num_cameras=6)
>>> descriptor = model.eval().embed(frames, keypoints, camera_ids)   # (B, 19200)
>>> rapa = build_model("rapa_resnet50", num_classes=625, num_cameras=0)  # (B, 4096); no camera embedding
"""

from keyreid_stream.model.checkpoint import (
    CheckpointError,
    LoadReport,
    load_checkpoint,
    load_imagenet,
    save_checkpoint,
)
from keyreid_stream.model.heads import FeatureDims, ReIDOutput
from keyreid_stream.model.keyreid import KeyReID  # importing a model file registers its variants
from keyreid_stream.model.rapa import RAPA
from keyreid_stream.model.registry import build_model, convert_checkpoint, get_spec, list_models, load_model

__all__ = [
    "CheckpointError", "FeatureDims", "KeyReID", "LoadReport", "RAPA", "ReIDOutput", "build_model",
    "convert_checkpoint", "get_spec", "list_models", "load_checkpoint", "load_imagenet", "load_model", "save_checkpoint",
]
