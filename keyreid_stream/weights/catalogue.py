"""The weights catalogue: every pretrained file the project can use, where it comes from and how it is pinned.

One table, :data:`CATALOGUE`. An entry is either fetched by the project's own fetcher (``downloader="keyreid"``:
exact size and sha256 of the installed file, sources tried in order, each source one pinned download, or one
member of a pinned archive) or by the downloader of the library that reads it (``ultralytics``, ``torch-hub``),
which puts it where that library looks and checks what it checks (ultralytics: nothing beyond a minimum size;
torch hub: the sha256 prefix in the file name).

A site can add or override entries (an internal mirror, its own fine-tuned model) with a YAML file named by
``$KEYREID_STREAM_WEIGHTS_CATALOGUE``: ``entries: [{name, filename, description, sha256, size, sources: [{urls,
sha256, size, member}], convert, arch, licence, reported}]``; unknown keys are errors.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from keyreid_stream.fetch import RemoteFile

__all__ = ["CATALOGUE", "CATALOGUE_ENV", "GROUPS", "CatalogueError", "Source", "WeightsEntry", "load_catalogue"]

CATALOGUE_ENV = "KEYREID_STREAM_WEIGHTS_CATALOGUE"
Downloader = Literal["keyreid", "ultralytics", "torch-hub"]


class CatalogueError(ValueError):
    """A catalogue file or entry that cannot be used (one readable line)."""


@dataclass(frozen=True)
class Source:
    """One way to get an entry's file: a pinned download, or (``member``) a file inside a pinned zip/tar archive."""

    remote: RemoteFile
    member: str = ""

    def describe(self) -> str:
        what = f"{self.member} inside " if self.member else ""
        size = f"{self.remote.size:,} bytes, " if self.remote.size else ""
        pin = f"sha256 {self.remote.sha256}" if self.remote.sha256 else "checked by its own downloader"
        return f"{what}{' or '.join(self.remote.urls)} ({size}{pin})"


@dataclass(frozen=True)
class WeightsEntry:
    """One catalogue entry. ``sha256``/``size``: of the installed file (empty/0 when it is converted or when its own
    downloader checks it). ``convert``: how the download becomes a checkpoint the project loads."""

    name: str
    filename: str
    description: str
    licence: str
    sources: tuple[Source, ...]
    reported: str = ""
    sha256: str = ""
    size: int = 0
    convert: Literal["", "keyreid-official"] = ""
    arch: str = ""  # the architecture a converted checkpoint holds
    downloader: Downloader = "keyreid"
    hash_prefix: str = ""  # torch-hub entries: the sha256 prefix torch checks
    notes: str = ""

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(url for source in self.sources for url in source.remote.urls)


_KEYREID_REPO = "JinSeong0115/KeyRe-ID"
_LFS = (f"https://github.com/{_KEYREID_REPO}/raw/main/weights/{{}}",
        f"https://media.githubusercontent.com/media/{_KEYREID_REPO}/main/weights/{{}}")
_MEDIAPIPE_WHEEL = RemoteFile(
    urls=(("https://files.pythonhosted.org/packages/ad/83/56f760fecdc60de84c529d6c05c9dfc7d972617c6632bd254d5e021e5b16/"
           "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl"),),
    sha256="05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3", size=35_622_638)
_MEDIAPIPE_NPM = RemoteFile(
    urls=("https://registry.npmjs.org/@mediapipe/pose/-/pose-0.5.1675469404.tgz",),
    sha256="8bb349a7b3a3ba699df23be804ddd3b3eab810b50b15406894be257859388a84", size=40_985_403)
_BLAZEPOSE = {  # variant: (bytes, sha256) of pose_landmark_{variant}.tflite, the same in the wheel and on npm
    "lite": (2_819_824, "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61"),
    "full": (6_440_512, "e9a5c5cb17f736fafd4c2ec1da3b3d331d6edbe8a0d32395855aeb2cdfd64b9f"),
    "heavy": (27_709_200, "59e42d71bcd44cbdbabc419f0ff76686595fd265419566bd4009ef703ea8e1fe"),
}
_ULTRALYTICS = "https://github.com/ultralytics/assets/releases/download/v8.4.0/{}"
_PIFPAF = ("http://github.com/openpifpaf/torchhub/releases/download/v0.13/"
           "shufflenetv2k16-210820-232500-cocokp-slurm726069-edge513-o10s-7189450a.pkl")


def _blazepose(variant: str) -> WeightsEntry:
    size, sha256 = _BLAZEPOSE[variant]
    member = f"mediapipe/modules/pose_landmark/pose_landmark_{variant}.tflite"
    sources: tuple[Source, ...] = (Source(_MEDIAPIPE_NPM, f"package/pose_landmark_{variant}.tflite"),)
    if variant == "full":  # the 0.10.21 wheel carries only the full landmark model
        sources = (Source(_MEDIAPIPE_WHEEL, member), *sources)
    return WeightsEntry(
        name=f"blazepose-{variant}", filename=f"pose_landmark_{variant}.tflite",
        description=f"Google BlazePose GHUM 3D landmark model ({variant}): 33 body landmarks with visibility from a "
                    "256x256 person crop (TFLite); the `blazepose` pose backend", licence="Apache-2.0",
        sources=sources, sha256=sha256, size=size,
        reported="Bazarevsky et al. 2020 (BlazePose); accuracy in Google's BlazePose GHUM 3D model card",
        notes="extracted from the PyPI wheel mediapipe==0.10.21 or npm @mediapipe/pose 0.5.1675469404")


CATALOGUE_ENTRIES: tuple[WeightsEntry, ...] = (
    WeightsEntry(
        name="keyreid-mars", filename="keyreid_vit_base_mars.pt",
        description="KeyRe-ID (ViT-B/16, 256x128, T=4, 6 keypoint parts) trained on MARS by its authors "
                    "(weights/Marsbest.pth of github.com/JinSeong0115/KeyRe-ID)",
        licence="not stated in the authors' repository (research use; check before redistributing)",
        sources=(Source(RemoteFile(tuple(url.format("Marsbest.pth") for url in _LFS),
                                   "7a0d89837d748550eff770899622b43672391463d42b0873bdf794e2923b3272", 876_788_212)),),
        reported="the authors report MARS mAP 91.73 / rank-1 97.32 and iLIDS-VID rank-1 96.00 (paper, README)",
        convert="keyreid-official", arch="keyreid_vit_base",
        notes="converted on fetch into a keyreid-stream checkpoint (compat=official; classes and cameras read from "
              "the state dict)"),
    WeightsEntry(
        name="vit-base-imagenet", filename="jx_vit_base_p16_224-80ecf9dd.pth",
        description="ViT-B/16 at 224, ImageNet-21k pre-trained and ImageNet-1k fine-tuned (Google's JAX weights as "
                    "ported by timm): the starting point of KeyRe-ID training (model.pretrained=PATH)",
        licence="Apache-2.0",
        sources=(Source(RemoteFile(
            (*(url.format("jx_vit_base_p16_224-80ecf9dd.pth") for url in _LFS),
             ("https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-vitjx/"
              "jx_vit_base_p16_224-80ecf9dd.pth")),
            "80ecf9dd5e3a58895e959af554c5666c4e7b4da4410de4f1f2b0025e93435d8c", 346_292_833)),),
        sha256="80ecf9dd5e3a58895e959af554c5666c4e7b4da4410de4f1f2b0025e93435d8c", size=346_292_833,
        reported="Dosovitskiy et al. 2021 (ViT); the KeyRe-ID authors start from this file"),
    WeightsEntry(
        name="resnet50-imagenet", filename="resnet50-0676ba61.pth",
        description="ResNet-50, ImageNet-1k (torchvision IMAGENET1K_V1, timm resnet50.tv_in1k): RAPA's backbone",
        licence="BSD-3-Clause (torchvision)",
        sources=(Source(RemoteFile(("https://download.pytorch.org/models/resnet50-0676ba61.pth",), "")),),
        reported="torchvision reports ImageNet top-1 76.13 / top-5 92.86", downloader="torch-hub",
        hash_prefix="0676ba61"),
    WeightsEntry(
        name="yolo11n-pose", filename="yolo11n-pose.pt",
        description="Ultralytics YOLO11n-pose: person boxes and 17 COCO keypoints in one pass (the demo's detector)",
        licence="AGPL-3.0 (Ultralytics)", sources=(Source(RemoteFile((_ULTRALYTICS.format("yolo11n-pose.pt"),), "")),),
        reported="Ultralytics report COCO pose mAP50-95 50.0", downloader="ultralytics"),
    WeightsEntry(
        name="yolo11n", filename="yolo11n.pt",
        description="Ultralytics YOLO11n: COCO object detector (the worker's person detector, class 0)",
        licence="AGPL-3.0 (Ultralytics)", sources=(Source(RemoteFile((_ULTRALYTICS.format("yolo11n.pt"),), "")),),
        reported="Ultralytics report COCO box mAP50-95 39.5", downloader="ultralytics"),
    WeightsEntry(
        name="pifpaf-shufflenetv2k16", filename=_PIFPAF.rsplit("/", 1)[-1],
        description="OpenPifPaf 0.13 ShuffleNetV2-K16 COCO keypoints: the paper's pose estimator (keypoint "
                    "extraction of re-ID datasets)",
        licence="AGPL-3.0 (openpifpaf)", sources=(Source(RemoteFile((_PIFPAF,), "")),),
        reported="see openpifpaf's model table (COCO val keypoint AP)", downloader="torch-hub",
        hash_prefix="7189450a", notes="a pickle: load it only as a trusted file (--allow-pickle) or convert it with "
                                      "'keyreid-stream keypoints convert-pifpaf'"),
    *(_blazepose(variant) for variant in ("lite", "full", "heavy")),
)

CATALOGUE: dict[str, WeightsEntry] = {entry.name: entry for entry in CATALOGUE_ENTRIES}
GROUPS: dict[str, tuple[str, ...]] = {"demo": ("yolo11n-pose", "keyreid-mars")}
"""Names that stand for several entries (besides ``all``)."""


# --------------------------------------------------------------------------------------- a site's extra entries


def load_catalogue(path: str | os.PathLike[str] | None = None) -> dict[str, WeightsEntry]:
    """The built-in catalogue plus the entries of the YAML file ``path`` (default: ``$KEYREID_STREAM_WEIGHTS_
    CATALOGUE``; none when unset), which replace built-in ones of the same name."""
    path = path if path is not None else os.environ.get(CATALOGUE_ENV) or None
    catalogue = dict(CATALOGUE)
    if path is None:
        return catalogue
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"cannot read the weights catalogue {path}: {exc}") from exc
    if not isinstance(data, dict) or set(data) - {"entries"} or not isinstance(data.get("entries", []), list):
        raise CatalogueError(f"{path}: expected 'entries: [...]' and nothing else")
    for number, raw in enumerate(data.get("entries", []), 1):
        entry = _entry(raw, f"{path}: entry {number}")
        catalogue[entry.name] = entry
    return catalogue


def _entry(raw: Any, where: str) -> WeightsEntry:
    if not isinstance(raw, dict):
        raise CatalogueError(f"{where}: expected a mapping")
    _known(raw, {f.name for f in dataclasses.fields(WeightsEntry)}, where)
    sources = []
    for source in raw.get("sources") or []:
        if not isinstance(source, dict):
            raise CatalogueError(f"{where}: a source must be a mapping")
        _known(source, {"urls", "sha256", "size", "member"}, where)
        urls = source.get("urls") or []
        if isinstance(urls, str) or not urls:
            raise CatalogueError(f"{where}: a source needs 'urls', a list")
        sources.append(Source(RemoteFile(tuple(str(u) for u in urls), str(source.get("sha256", "")),
                                         int(source.get("size", 0))), str(source.get("member", ""))))
    try:
        entry = WeightsEntry(**{**raw, "sources": tuple(sources)})
    except TypeError as exc:
        raise CatalogueError(f"{where}: {exc}") from exc
    if entry.downloader == "keyreid" and not all(source.remote.sha256 for source in entry.sources):
        raise CatalogueError(f"{where} ({entry.name}): every source needs its sha256")
    if not entry.convert and entry.downloader == "keyreid" and not entry.sha256:
        raise CatalogueError(f"{where} ({entry.name}): the installed file needs its sha256")
    return entry


def _known(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise CatalogueError(f"{where}: unknown key(s) {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")

