"""PifPaf keypoints (openpifpaf; Kreiss et al., CVPR 2019), the pose estimator the KeyRe-ID paper uses.

Networks, by what is given:

* ``base_name="shufflenetv2k16"`` (no checkpoint): that architecture with COCO keypoint heads and random
  weights, built offline (tests, smoke runs).
* ``checkpoint="model.safetensors"``: weights converted once by :func:`save_pifpaf_weights`
  (``keyreid-stream keypoints convert-pifpaf``); plain tensors, no pickle.
* ``checkpoint="shufflenetv2k16"`` (a name openpifpaf knows) or a local ``.pkl`` / ``.pt`` file: openpifpaf's own
  checkpoints, downloaded into torch's hub cache the first time. They are pickled Python objects whose loading
  runs code from the file, so they are only opened with ``allow_pickle=True``.

openpifpaf has to be compiled against the installed torch (``keyreid-stream keypoints install-pifpaf``, see
:mod:`.pifpaf_build`). It still calls ``matplotlib.cm.get_cmap``, removed in matplotlib 3.9; that name is aliased to
``matplotlib.colormaps.get_cmap`` before openpifpaf is imported.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS
from keyreid_stream.inference.device import device_name
from keyreid_stream.keypoints.pose import PersonPoses, PoseBackend, PoseError

__all__ = ["PifPafPose", "annotations_to_poses", "import_openpifpaf", "save_pifpaf_weights"]

logger = logging.getLogger(__name__)

WEIGHTS_FORMAT = "keyreid-stream/pifpaf-weights"
PAD_MULTIPLE = 16


def import_openpifpaf() -> ModuleType:
    """``import openpifpaf`` with the matplotlib alias it needs; a clear error when it is not installed."""
    try:
        import matplotlib.cm

        if not hasattr(matplotlib.cm, "get_cmap"):
            matplotlib.cm.get_cmap = matplotlib.colormaps.get_cmap  # type: ignore[attr-defined]
    except ImportError:
        pass  # openpifpaf imports matplotlib lazily in the parts used here
    try:
        import openpifpaf
        import openpifpaf.plugins.coco
    except ImportError as exc:
        raise PoseError(
            "the pifpaf backend needs openpifpaf, compiled against the installed torch: run "
            "'keyreid-stream keypoints install-pifpaf' (see docs/install.md)"
        ) from exc
    quiet = logging.getLogger("openpifpaf")
    if quiet.level == logging.NOTSET:  # its decoder logs every image at INFO
        quiet.setLevel(logging.WARNING)
    module: ModuleType = openpifpaf
    return module


def _coco_head_metas(openpifpaf: ModuleType) -> list[Any]:
    result: list[Any] = openpifpaf.plugins.coco.CocoKp().head_metas
    return result


def _network_from_scratch(openpifpaf: ModuleType, base_name: str) -> Any:
    if base_name not in openpifpaf.network.factory.BASE_FACTORIES:
        known = ", ".join(sorted(openpifpaf.network.factory.BASE_FACTORIES))
        raise PoseError(f"unknown openpifpaf base network {base_name!r}; known: {known}")
    # torchvision-based bases would download ImageNet weights; the weights here are random or loaded next.
    classes: list[Any] = [cls for cls in vars(openpifpaf.network.basenetworks).values()
               if isinstance(cls, type) and "pretrained" in vars(cls)]
    saved = {cls: cls.pretrained for cls in classes}
    try:
        for cls in classes:
            cls.pretrained = False
        network, _ = openpifpaf.network.Factory(base_name=base_name).factory(head_metas=_coco_head_metas(openpifpaf))
    finally:
        for cls, value in saved.items():
            cls.pretrained = value
    return network


def _pickle_checkpoint_path(openpifpaf: ModuleType, checkpoint: str) -> Path:
    """A local file, or the cached / downloaded file of one of openpifpaf's checkpoint names."""
    if Path(checkpoint).exists():
        return Path(checkpoint)
    urls = openpifpaf.CHECKPOINT_URLS
    url = urls.get(checkpoint)
    if not isinstance(url, str):
        known = ", ".join(name for name, value in urls.items() if isinstance(value, str))
        raise PoseError(f"openpifpaf checkpoint {checkpoint!r} is neither a file nor a known name; known: {known}")
    import torch

    target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not target.exists():
        logger.info("downloading openpifpaf checkpoint %s from %s", checkpoint, url)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except OSError as exc:
            raise PoseError(f"could not download openpifpaf checkpoint {checkpoint!r} from {url}: {exc}") from exc
    return target


def _network_from_pickle(openpifpaf: ModuleType, checkpoint: str) -> Any:
    import torch

    path = _pickle_checkpoint_path(openpifpaf, checkpoint)
    try:
        stored = torch.load(path, map_location="cpu", weights_only=False)
        network = stored["model"]
    except Exception as exc:  # a broken pickle raises anything
        raise PoseError(f"could not load openpifpaf checkpoint {path}: {exc}") from exc
    openpifpaf.network.model_migration.model_migration(network)
    factory = openpifpaf.network.Factory()
    factory.consolidate_heads(network, _coco_head_metas(openpifpaf))
    return factory.init_net(network)


def _network_from_safetensors(openpifpaf: ModuleType, path: Path) -> Any:
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as exc:  # missing, or not a safetensors file at all
        raise PoseError(f"could not read PifPaf weights {path}: {exc}") from exc
    if metadata.get("format") != WEIGHTS_FORMAT or "base_name" not in metadata:
        raise PoseError(f"{path} is not a converted PifPaf weights file (format {metadata.get('format')!r})")
    network = _network_from_scratch(openpifpaf, metadata["base_name"])
    try:
        network.load_state_dict(load_file(str(path)), strict=True)
    except RuntimeError as exc:
        raise PoseError(f"{path} does not fit a {metadata['base_name']} PifPaf network: {exc}") from exc
    return network


def save_pifpaf_weights(network: Any, path: str | os.PathLike[str]) -> Path:
    """Write a PifPaf network's weights as safetensors (no pickle); :class:`PifPafPose` loads them back."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in network.state_dict().items()}
    metadata = {
        "format": WEIGHTS_FORMAT, "base_name": network.base_net.name,
        "heads": json.dumps([meta.name for meta in network.head_metas]),
    }
    target = Path(path)
    save_file(state, str(target), metadata=metadata)
    return target


def annotations_to_poses(annotations: Sequence[Any]) -> PersonPoses:
    """openpifpaf ``Annotation`` objects (in image pixels) as :class:`PersonPoses`; boxes span the seen joints."""
    if not annotations:
        return PersonPoses.empty()
    keypoints = np.stack([np.asarray(ann.data, np.float32)[:NUM_KEYPOINTS] for ann in annotations])
    keypoints[..., 2] = np.clip(np.nan_to_num(keypoints[..., 2]), 0.0, 1.0)
    keypoints[..., :2] = np.nan_to_num(keypoints[..., :2]) * (keypoints[..., 2:] > 0)
    boxes = np.stack([np.asarray(ann.bbox(), np.float32) for ann in annotations])
    boxes[:, 2:] += boxes[:, :2]  # openpifpaf's bbox is (x, y, w, h)
    scores = np.array([float(ann.score) for ann in annotations], np.float32)
    return PersonPoses(boxes, np.clip(np.nan_to_num(scores), 0.0, 1.0), keypoints)


class PifPafPose(PoseBackend):
    """openpifpaf's CIF/CAF network and decoder behind :class:`PoseBackend`."""

    name = "pifpaf"

    def __init__(
        self, checkpoint: str | None = "shufflenetv2k16", *, base_name: str | None = None,
        allow_pickle: bool = False, device: str = "auto", batch_size: int = 8,
    ) -> None:
        super().__init__(batch_size)
        self._openpifpaf = import_openpifpaf()
        self.network = self._load_network(checkpoint, base_name, allow_pickle)
        import torch

        self.device = torch.device(device_name(device))
        self.network = self.network.to(self.device).eval()
        self.decoder = self._openpifpaf.decoder.factory(self.network.head_metas)
        transforms = self._openpifpaf.transforms
        self.preprocess = transforms.Compose([
            transforms.NormalizeAnnotations(), transforms.CenterPadTight(PAD_MULTIPLE), transforms.EVAL_TRANSFORM,
        ])
        logger.info("pifpaf: %s on %s", checkpoint or f"{base_name} (random weights)", self.device)

    def _load_network(self, checkpoint: str | None, base_name: str | None, allow_pickle: bool) -> Any:
        if base_name is not None and checkpoint is not None:
            raise PoseError("give either a PifPaf checkpoint or a base_name (random weights), not both")
        if checkpoint is None:
            return _network_from_scratch(self._openpifpaf, base_name or "shufflenetv2k16")
        if str(checkpoint).endswith(".safetensors"):
            return _network_from_safetensors(self._openpifpaf, Path(checkpoint))
        if not allow_pickle:
            raise PoseError(
                f"openpifpaf checkpoint {checkpoint!r} is a pickled Python object: loading it runs code stored in "
                "it. Pass allow_pickle=True (--allow-pickle) if you trust it, or convert it once with "
                "'keyreid-stream keypoints convert-pifpaf' and use the .safetensors file"
            )
        return _network_from_pickle(self._openpifpaf, str(checkpoint))

    def _detect_batch(self, images: Sequence[np.ndarray]) -> list[PersonPoses]:
        import PIL.Image
        import torch

        processed, metas = [], []
        for index, image in enumerate(images):
            pil_image = PIL.Image.fromarray(np.ascontiguousarray(image[..., ::-1]))
            tensor, _, meta = self.preprocess(pil_image, [], {"dataset_index": index})
            processed.append(tensor)
            metas.append(meta)
        found: list[PersonPoses | None] = [None] * len(images)
        for shape in dict.fromkeys(tuple(t.shape) for t in processed):  # same-size images share a batch
            members = [i for i, tensor in enumerate(processed) if tuple(tensor.shape) == shape]
            batch = torch.stack([processed[i] for i in members])
            with torch.inference_mode():
                predictions = self.decoder.batch(self.network, batch, device=self.device)
            for i, people in zip(members, predictions):
                found[i] = annotations_to_poses([ann.inverse_transform(metas[i]) for ann in people])
        return [poses if poses is not None else PersonPoses.empty() for poses in found]

    def close(self) -> None:
        self.network = None
