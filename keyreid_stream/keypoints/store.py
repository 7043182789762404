"""A compact on-disk store of dataset keypoints: 17 x 3 float16 per frame, indexed by image path.

Heatmaps are never stored; keypoints are (102 bytes a frame, about 120 MB for all of MARS), and the trainer
renders heatmaps next to the model. A store is a folder:

* ``store.json`` -- format, version, dataset, backend and its options (what produced the keypoints);
* ``shard-NNNNNN.npz`` -- whole tracklets: ``paths`` (frame image paths relative to the dataset root, UTF-8),
  ``tracklets`` (each frame's tracklet key), ``keypoints`` (N, 17, 3) float16 and ``status`` (N,) uint8
  (0 person found, 1 no person, 2 unreadable image).

Shards are written to a temporary name and renamed, so an interrupted writer leaves only complete shards, and a
resumed extraction skips the tracklets they hold. Shards are plain ``.npz`` arrays read without pickle.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS

__all__ = ["STATUS_NAMES", "KeypointStore", "StoreError", "StoreSummary"]

logger = logging.getLogger(__name__)

STORE_FORMAT = "keyreid-stream/keypoints"
STORE_VERSION = 1
MANIFEST = "store.json"
SHARD_PATTERN = re.compile(r"^shard-(\d{6})\.npz$")
STATUS_FOUND, STATUS_NO_PERSON, STATUS_UNREADABLE = 0, 1, 2
STATUS_NAMES = ("found", "no_person", "unreadable")
IDENTITY_FIELDS = ("dataset", "backend")


class StoreError(ValueError):
    """A keypoint store is missing, damaged, or belongs to another dataset or backend."""


@dataclass(frozen=True)
class StoreSummary:
    """Counts over a store: frames, tracklets, frames per status, mean joint confidence of found people."""

    frames: int
    tracklets: int
    no_person: int
    unreadable: int
    mean_confidence: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _atomic_write_json(path: Path, data: Mapping[str, Any]) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False, encoding="utf-8") as out:
        json.dump(data, out, indent=2, sort_keys=True)
    os.replace(out.name, path)


def _encode(strings: Sequence[str]) -> np.ndarray:
    encoded = [value.encode("utf-8") for value in strings]
    width = max((len(value) for value in encoded), default=1)
    return np.array(encoded, dtype=f"S{max(width, 1)}")


class KeypointStore:
    """Read and append keypoints of a dataset; ``store[path]`` is that frame's ``(17, 3)`` float32 keypoints."""

    def __init__(self, folder: Path, manifest: dict[str, Any]) -> None:
        self.folder = folder
        self.manifest = manifest
        self._shards: list[int] = []
        self._rows: dict[str, int] = {}
        self._paths: list[np.ndarray] = []
        self._keys: list[np.ndarray] = []
        self._keypoints: list[np.ndarray] = []
        self._status: list[np.ndarray] = []
        self._merged: tuple[np.ndarray, np.ndarray] | None = None
        for number, shard in self._shard_files():
            self._load_shard(number, shard)

    # ------------------------------------------------------------------ opening

    @classmethod
    def create(cls, folder: str | os.PathLike[str], **identity: Any) -> KeypointStore:
        """Open ``folder`` for appending, creating it; an existing store must have the same dataset and backend."""
        path = Path(folder)
        if (path / MANIFEST).exists():
            store = cls.open(path)
            for name in IDENTITY_FIELDS:
                if name in identity and store.manifest.get(name) != identity[name]:
                    raise StoreError(
                        f"{path} holds keypoints of {name} {store.manifest.get(name)!r}, not {identity[name]!r}; "
                        "choose another output folder"
                    )
            return store
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"{path} exists and is not a keypoint store (no {MANIFEST}); choose an empty folder")
        path.mkdir(parents=True, exist_ok=True)
        manifest = {"format": STORE_FORMAT, "version": STORE_VERSION, **identity}
        _atomic_write_json(path / MANIFEST, manifest)
        return cls(path, manifest)

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> KeypointStore:
        """Open an existing store for reading (and appending)."""
        path = Path(folder)
        try:
            manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"{path} is not a keypoint store: no {MANIFEST}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"{path / MANIFEST} is unreadable: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
            raise StoreError(f"{path / MANIFEST} is not a keyreid-stream keypoint store manifest")
        if manifest.get("version") != STORE_VERSION:
            raise StoreError(f"{path} has store version {manifest.get('version')}, this code reads {STORE_VERSION}")
        return cls(path, manifest)

    def _shard_files(self) -> list[tuple[int, Path]]:
        found = []
        for entry in self.folder.iterdir():
            match = SHARD_PATTERN.match(entry.name)
            if match:
                found.append((int(match.group(1)), entry))
            elif entry.name.endswith(".tmp"):
                logger.warning("removing %s, left by an interrupted writer", entry)
                entry.unlink(missing_ok=True)
        return sorted(found)

    def _load_shard(self, number: int, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as shard:
                paths, keys = shard["paths"], shard["tracklets"]
                keypoints, status = shard["keypoints"], shard["status"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise StoreError(f"{path} is damaged ({exc}); delete it and run the extraction again") from None
        count = len(paths)
        if keypoints.shape != (count, NUM_KEYPOINTS, 3) or keys.shape != (count,) or status.shape != (count,):
            raise StoreError(f"{path} is damaged: inconsistent array shapes; delete it and extract again")
        offset = len(self)
        for row, name in enumerate(paths):
            self._rows[name.decode("utf-8")] = offset + row
        self._paths.append(paths)
        self._keys.append(keys)
        self._keypoints.append(keypoints.astype(np.float16, copy=False))
        self._status.append(status.astype(np.uint8, copy=False))
        self._shards.append(number)
        self._merged = None

    # ------------------------------------------------------------------ writing

    def append(
        self, tracklet_keys: Sequence[str], paths: Sequence[str], keypoints: np.ndarray, status: np.ndarray,
    ) -> Path:
        """Add whole tracklets (one row per frame) as a new shard, written atomically."""
        keypoints = np.asarray(keypoints, dtype=np.float32)
        status = np.asarray(status, dtype=np.uint8)
        count = len(paths)
        if keypoints.shape != (count, NUM_KEYPOINTS, 3) or len(tracklet_keys) != count or status.shape != (count,):
            raise ValueError(
                f"append needs one tracklet key, keypoints (17, 3) and status per path: {count} paths, "
                f"{len(tracklet_keys)} keys, keypoints {keypoints.shape}, status {status.shape}"
            )
        number = (self._shards[-1] + 1) if self._shards else 1
        target = self.folder / f"shard-{number:06d}.npz"
        with tempfile.NamedTemporaryFile(dir=self.folder, suffix=".tmp", delete=False) as out:
            np.savez(out, paths=_encode(paths), tracklets=_encode(tracklet_keys),
                     keypoints=np.nan_to_num(keypoints).astype(np.float16), status=status)
        os.replace(out.name, target)
        self._load_shard(number, target)
        return target

    # ------------------------------------------------------------------ reading

    def __len__(self) -> int:
        return sum(len(paths) for paths in self._paths)

    def __contains__(self, path: object) -> bool:
        return path in self._rows

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._merged is None:
            empty = np.zeros((0, NUM_KEYPOINTS, 3), np.float16)
            self._merged = (
                np.concatenate(self._keypoints) if self._keypoints else empty,
                np.concatenate(self._status) if self._status else np.zeros(0, np.uint8),
            )
        return self._merged

    def __getitem__(self, path: str) -> np.ndarray:
        result: np.ndarray = self.get_many([path])[0]
        return result

    def get_many(self, paths: Iterable[str], missing: str = "error") -> np.ndarray:
        """``(N, 17, 3)`` float32 keypoints of ``paths``; a path not in the store raises (``missing="error"``)
        or reads as all zeros, i.e. no joint (``missing="zeros"``)."""
        if missing not in ("error", "zeros"):
            raise ValueError(f"missing must be 'error' or 'zeros', got {missing!r}")
        keypoints, _ = self._arrays()
        paths = list(paths)
        rows = np.array([self._rows.get(path, -1) for path in paths], dtype=np.int64)
        absent = rows < 0
        if absent.any() and missing == "error":
            first = paths[int(np.argmax(absent))]
            raise KeyError(f"{int(absent.sum())} of {len(paths)} frames are not in {self.folder}, e.g. {first!r}")
        out = keypoints[np.where(absent, 0, rows)].astype(np.float32) if len(keypoints) else (
            np.zeros((len(paths), NUM_KEYPOINTS, 3), np.float32))
        out[absent] = 0.0
        return out

    def status_of(self, path: str) -> str:
        """``found``, ``no_person`` or ``unreadable``."""
        _, status = self._arrays()
        return STATUS_NAMES[int(status[self._rows[path]])]

    def tracklet_keys(self) -> set[str]:
        """Keys of the tracklets the store holds (all of their frames)."""
        return {key.decode("utf-8") for keys in self._keys for key in np.unique(keys)}

    def summary(self) -> StoreSummary:
        keypoints, status = self._arrays()
        found = status == STATUS_FOUND
        confidence = float(keypoints[found][..., 2].astype(np.float32).mean()) if found.any() else 0.0
        return StoreSummary(
            frames=len(status), tracklets=len(self.tracklet_keys()),
            no_person=int((status == STATUS_NO_PERSON).sum()), unreadable=int((status == STATUS_UNREADABLE).sum()),
            mean_confidence=round(confidence, 4),
        )
