"""Which models the demo runs: the best it can have on this machine, and why.

* People and keypoints: an ultralytics pose model (``yolo11n-pose.pt`` by default: boxes and 17 COCO keypoints in
  one pass) when its weights are a local file, in ultralytics' weights folder, or downloadable (online, and
  ``YOLO_OFFLINE`` unset). Otherwise OpenCV's HOG people detector (its coefficients ship inside OpenCV) with the
  keypoint prior (the average COCO-17 layout of a standing person in its box).
* Appearance: KeyRe-ID when a checkpoint is given (a file: ours, or the authors' with ``checkpoint_kind:
  official``; or a weights catalogue name), else the authors' MARS model when the catalogue's ``keyreid-mars`` is
  cached (``keyreid-stream weights fetch keyreid-mars``). The demo never runs a re-ID network with random weights.
  Otherwise the classical part colour/texture histogram descriptor, and the output says plainly that re-ID
  quality is then limited.

What is missing is named in :attr:`ModelChoice.upgrade`: the catalogue entries whose fetch would upgrade the run.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["DEMO_DETECTOR", "DEMO_REID", "ModelChoice", "choose_models"]

logger = logging.getLogger(__name__)

Mode = Literal["auto", "classical", "trained"]

# The matcher's association settings per descriptor: the cosine similarity for a tracklet to join an identity
# (threshold), for two identities to merge when re-clustering (merge_threshold) and below which a track is split
# off its identity (split_threshold). Histograms of different people are far more alike than KeyRe-ID features
# of different people, so the classical descriptor needs much higher thresholds (docs/demo.md: how they were set).
CLASSICAL_ASSOCIATION = {"threshold": 0.95, "merge_threshold": 0.97, "split_threshold": 0.8}
TRAINED_ASSOCIATION = {"threshold": 0.6, "merge_threshold": 0.7, "split_threshold": 0.35}
CLASSICAL_THRESHOLD = CLASSICAL_ASSOCIATION["threshold"]
DEMO_DETECTOR = "yolo11n-pose"  # weights catalogue names of the demo's best models (the catalogue's "demo" group)
DEMO_REID = "keyreid-mars"
TRAINED_THRESHOLD = TRAINED_ASSOCIATION["threshold"]


@dataclass(frozen=True)
class ModelChoice:
    """The worker settings for the chosen models and one line per choice saying what runs and why."""

    detector: dict[str, object]
    pose: dict[str, object]
    embedding: dict[str, object]
    association: dict[str, float]
    quality_limited: bool
    lines: tuple[str, ...]
    upgrade: tuple[str, ...] = ()  # weights catalogue names that would give a better run once fetched

    @property
    def threshold(self) -> float:
        return self.association["threshold"]

    @property
    def summary(self) -> str:
        return "; ".join(self.lines)

    @property
    def upgrade_command(self) -> str:
        """The command that fetches what would upgrade this run ("" when nothing would)."""
        return f"keyreid-stream weights fetch {' '.join(self.upgrade)}" if self.upgrade else ""


def choose_models(mode: Mode = "auto", *, detector_model: str = "yolo11n-pose.pt", reid_checkpoint: str = "",
                  reid_arch: str = "keyreid_vit_base", reid_checkpoint_kind: str = "auto", reid_num_cameras: int = 0,
                  allow_pickle: bool = False, threshold: float | None = None) -> ModelChoice:
    """The models for ``mode``: ``auto`` (the best available), ``classical`` (no weights at all) or ``trained``
    (YOLO-pose and KeyRe-ID; an error when either is missing). ``allow_pickle`` lets local ``.pt``/``.pth``
    files (pickles) load: only for files you trust."""
    if mode not in ("auto", "classical", "trained"):
        raise ValueError(f"demo.models must be auto, classical or trained, not {mode!r}")
    lines: list[str] = []
    upgrade: list[str] = []
    detector, pose, detector_why = _people(mode, detector_model, allow_pickle)
    lines.append(detector_why)
    if detector["kind"] == "hog" and mode != "classical" and Path(detector_model).name == f"{DEMO_DETECTOR}.pt":
        upgrade.append(DEMO_DETECTOR)
    embedding, limited, embedding_why = _appearance(mode, reid_checkpoint, reid_arch, reid_checkpoint_kind,
                                                    reid_num_cameras, allow_pickle)
    lines.append(embedding_why)
    if limited and mode != "classical":
        upgrade.append(DEMO_REID)
    association = dict(CLASSICAL_ASSOCIATION if limited else TRAINED_ASSOCIATION)
    if threshold is not None:  # the others follow, keeping their distance to it
        shift = threshold - association["threshold"]
        association = {name: min(1.0, value + shift) for name, value in association.items()}
    return ModelChoice(detector, pose, embedding, association, limited, tuple(lines), tuple(upgrade))


def _people(mode: Mode, model: str, allow_pickle: bool) -> tuple[dict[str, object], dict[str, object], str]:
    hog: tuple[dict[str, object], dict[str, object]] = ({"kind": "hog"}, {"backend": "prior"})
    if mode == "classical":
        return (*hog, "people: OpenCV HOG detector + keypoint prior (classical models asked for)")
    available, why = yolo_weights_available(model, allow_pickle)
    if available:
        return ({"kind": "yolo-pose", "model": model, "allow_pickle": allow_pickle},
                {"backend": "auto"}, f"people: YOLO pose model {model} (boxes and 17 keypoints; {why})")
    if mode == "trained":
        raise FileNotFoundError(f"YOLO pose weights {model!r} are not available ({why}); give a local file with "
                                "demo.detector_model=PATH, or use demo.models=auto")
    return (*hog, f"people: OpenCV HOG detector + keypoint prior (YOLO weights {model}: {why})")


def _appearance(mode: Mode, checkpoint: str, arch: str, kind: str, num_cameras: int, allow_pickle: bool
                ) -> tuple[dict[str, object], bool, str]:
    classical: dict[str, object] = {"kind": "part-histogram"}
    why_classical = ("appearance: part colour/texture histograms guided by the keypoints. Re-ID quality is LIMITED: "
                     "a classical descriptor, not a trained re-ID model")
    if mode == "classical":
        return classical, True, why_classical
    from keyreid_stream.weights import WeightsNotFound, installed_path, load_catalogue, resolve_weights

    if checkpoint:
        path = resolve_weights(checkpoint)  # a file or a cached catalogue name; else an error naming the commands
        return ({"kind": "model", "arch": arch, "checkpoint": str(path), "checkpoint_kind": kind,
                 "num_cameras": num_cameras, "allow_pickle": allow_pickle}, False,
                f"appearance: the re-ID model in {checkpoint} ({kind} checkpoint)")
    try:
        path = resolve_weights(DEMO_REID)
    except WeightsNotFound:
        entry = load_catalogue()[DEMO_REID]
        missing = (f"no KeyRe-ID checkpoint: the authors' MARS weights ({DEMO_REID}) are not in the cache "
                   f"{installed_path(entry).parent}")
        if mode == "trained":
            raise FileNotFoundError(f"demo.models=trained needs KeyRe-ID weights: {missing}; run 'keyreid-stream "
                                    f"weights fetch {DEMO_REID}' or give demo.reid_checkpoint=PATH") from None
        return classical, True, f"{why_classical} ({missing})"
    return ({"kind": "model", "arch": load_catalogue()[DEMO_REID].arch, "checkpoint": str(path),
             "checkpoint_kind": "native", "num_cameras": 0, "allow_pickle": False}, False,
            f"appearance: KeyRe-ID with its authors' MARS weights ({DEMO_REID}: {path})")


def yolo_weights_available(model: str, allow_pickle: bool = False) -> tuple[bool, str]:
    """Whether ultralytics can load ``model`` here, and why (a local file, its weights folder, or online)."""
    if Path(model).expanduser().is_file():
        if Path(model).suffix == ".pt" and not allow_pickle:
            return False, "a local .pt file is a pickle: set demo.allow_pickle=true to load one you trust"
        return True, "local file"
    try:
        from ultralytics import utils
    except ImportError:
        return False, "ultralytics is not installed"
    weights_dir = Path(str(utils.SETTINGS.get("weights_dir", ".")))
    if (weights_dir / model).is_file():
        return True, f"in ultralytics' weights folder {weights_dir}"
    if os.environ.get("YOLO_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False, "not on this machine and YOLO_OFFLINE is set"
    if not utils.is_online():
        return False, "not on this machine and no internet connection to download them"
    return True, "downloaded by ultralytics on first use"
