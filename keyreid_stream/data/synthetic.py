"""A synthetic video re-ID dataset in the real MARS layout, for tests and a CPU learning check.

MARS (Zheng et al., "MARS: A Video Benchmark for Large-Scale Person Re-identification", ECCV 2016) is the
layout: ``bbox_{train,test}/<pid4>/<pid4>C<cam>T<tracklet4>F<frame3>.jpg`` (junk in ``00-1``) and ``info/``
with the name lists, the track tables and ``query_IDX`` as MATLAB v5 files, so ``read_split("mars", root)``
reads it like the real thing. A keypoint store (backend ``synthetic``) holds every frame's 17 COCO joints;
hidden ones are zero.

People are figures drawn with OpenCV from their own skeleton: head (skin, hair), upper clothing (colour,
texture in a second colour, sleeves), trousers or shorts, shoes, maybe a bag (seen from behind and the sides),
a build. The palettes are small on purpose: many people share each attribute, only combinations identify them.
A tracklet has a viewpoint (front, back, left, right; the side views mirror each other with anatomically right
joint labels) and a street; a frame a walking phase and box jitter; a camera its paving, windows, tint, colour
cast, brightness, and blur or noise; some frames an occluder (a pole, a car-coloured block or part of another
person).

Each test person has an anchor camera whose tracklets stay in the gallery; the first tracklet in each of its
other cameras is a query, so every query has a true match in another camera. The other test tracklets, the
distractors (pid 0) and the junk (pid -1) form the gallery.
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np
import scipy.io

from keyreid_stream.data.layouts import DatasetLayoutError
from keyreid_stream.keypoints.extract import default_store_folder
from keyreid_stream.keypoints.heatmaps import FLIP_PERMUTATION
from keyreid_stream.keypoints.store import KeypointStore

__all__ = ["SyntheticSpec", "SyntheticSummary", "write_synthetic_mars"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Colour = tuple[int, int, int]

MARKER = "synthetic.json"
MARKER_FORMAT = "keyreid-stream/synthetic-mars"
BACKEND = "synthetic"
VIEWS = ("front", "back", "left", "right")
TEXTURES = ("plain", "hstripes", "vstripes", "checks")
# BGR. Eight clothing colours: black, white, grey, navy, red, green, beige, brown.
PALETTE = ((30, 30, 30), (235, 235, 235), (128, 128, 128), (110, 40, 20), (40, 40, 200), (50, 130, 40),
           (150, 190, 215), (30, 60, 110))
SKIN = ((170, 200, 240), (120, 160, 210), (80, 120, 170), (50, 75, 110))
HAIR = ((20, 20, 20), (30, 55, 90), (90, 170, 210), (170, 170, 170))
SHOES = ((25, 25, 25), (230, 230, 230), (40, 70, 120))
BAGS = PALETTE[:4] + PALETTE[7:]
CARS = ((40, 40, 190), (190, 190, 190), (25, 25, 25), (150, 80, 30), (235, 235, 235))
POLES = ((90, 90, 90), (60, 100, 60), (150, 150, 160))
WINDOWS = ((40, 40, 50), (200, 210, 215), (90, 70, 60))
GROUNDS = ((120, 120, 120), (90, 140, 100), (70, 100, 140), (150, 140, 120), (180, 170, 160), (60, 60, 80))
JPEG_QUALITY = 90
# Street grain (std), camera colour cast (+- gain), tint and brightness (+- levels): mild enough that colour
# still carries identity across cameras (a plain colour histogram scores well above chance, far below 1).
LUMA_GRAIN, CHROMA_GRAIN, CAST, TINT, BRIGHTNESS = 20.0, 6.0, 0.04, 10.0, 6.0
# Front view, person 1 tall from the top of the head (y = 0) to the soles; the person's left is at +x.
_FRONT = np.array([  # COCO order, then the head centre
    (0.0, 0.085), (0.022, 0.065), (-0.022, 0.065), (0.05, 0.075), (-0.05, 0.075), (0.13, 0.2), (-0.13, 0.2),
    (0.155, 0.36), (-0.155, 0.36), (0.16, 0.5), (-0.16, 0.5), (0.08, 0.52), (-0.08, 0.52), (0.085, 0.73),
    (-0.085, 0.73), (0.085, 0.94), (-0.085, 0.94), (0.0, 0.075)])
_FLIP = np.array(list(FLIP_PERMUTATION) + [17])


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate; ranges are inclusive ``(low, high)``; ``image_size`` is ``(height, width)``."""

    train_ids: int = 24
    test_ids: int = 24
    distractor_tracklets: int = 6
    junk_tracklets: int = 4
    cameras: int = 4
    cameras_per_id: tuple[int, int] = (2, 3)
    tracklets_per_camera: tuple[int, int] = (1, 2)
    frames: tuple[int, int] = (8, 20)
    image_size: tuple[int, int] = (128, 64)
    occlusion_rate: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        if not (2 <= self.cameras_per_id[0] <= self.cameras_per_id[1] <= self.cameras <= 9
                and 1 <= min(self.train_ids, self.test_ids) and self.train_ids + self.test_ids <= 9999
                and all(1 <= low <= high <= 999 for low, high in (self.tracklets_per_camera, self.frames))
                and self.image_size[0] >= 32 and self.image_size[1] >= 16 and 0 <= self.occlusion_rate <= 1):
            raise ValueError(f"SyntheticSpec needs 2 <= cameras_per_id <= cameras <= 9, 1..9999 ids, 1..999 "
                             f"tracklets and frames, image_size >= (32, 16), occlusion_rate in [0, 1]: {self}")


@dataclass(frozen=True)
class SyntheticSummary:
    """What was written. Tracklet counts are those ``read_split`` returns (no junk); ``frames`` counts all."""

    root: Path
    keypoint_store: Path
    train_tracklets: int
    query_tracklets: int
    gallery_tracklets: int
    frames: int
    seconds: float


@dataclass(frozen=True)
class _Look:
    """One identity's appearance (BGR colours); ``second`` is the texture's colour; ``bag`` None for none."""

    skin: Colour
    hair: Colour
    upper: Colour
    second: Colour
    texture: str
    long_sleeves: bool
    lower: Colour
    shorts: bool
    shoes: Colour
    bag: Colour | None
    height: float
    width: float


@dataclass(frozen=True)
class _Track:
    split: str
    pid: int
    cam: int
    number: int
    frames: int
    view: str
    look: _Look
    query: bool = False

    @property
    def stem(self) -> str:
        return f"{'00-1' if self.pid == -1 else f'{self.pid:04d}'}C{self.cam}T{self.number:04d}"

    @property
    def names(self) -> list[str]:
        return [f"{self.stem}F{frame:03d}.jpg" for frame in range(1, self.frames + 1)]


@dataclass(frozen=True)
class _Camera:
    """A street style (paving period, share above the pavement, windows, tint) and a colour rendering."""

    paving: int
    horizon: float
    window: Colour
    tint: np.ndarray
    lut: np.ndarray
    blur: int
    noise: float


def _pick(rng: np.random.Generator, options: Sequence[T]) -> T:
    return options[int(rng.integers(len(options)))]


def _random_look(rng: np.random.Generator) -> _Look:
    upper, shift = int(rng.integers(len(PALETTE))), 1 + int(rng.integers(len(PALETTE) - 1))
    return _Look(
        skin=_pick(rng, SKIN), hair=_pick(rng, HAIR), upper=PALETTE[upper],
        second=PALETTE[(upper + shift) % len(PALETTE)], texture=_pick(rng, TEXTURES),
        long_sleeves=bool(rng.random() < 0.5), lower=_pick(rng, PALETTE), shorts=bool(rng.random() < 0.3),
        shoes=_pick(rng, SHOES), bag=_pick(rng, BAGS) if rng.random() < 0.4 else None,
        height=float(rng.uniform(0.9, 1.03)), width=float(rng.uniform(0.95, 1.3)))


def _camera(rng: np.random.Generator) -> _Camera:
    gains, brightness = rng.uniform(1 - CAST, 1 + CAST, 3), rng.uniform(-BRIGHTNESS, BRIGHTNESS)
    levels = np.arange(256.0)[:, None] * gains + brightness
    blur, noise = _pick(rng, ((0, 0.0), (3, 0.0), (0, 5.0)))  # a sharp, a soft or a noisy camera
    return _Camera(
        paving=int(rng.integers(10, 22)), horizon=float(rng.uniform(0.4, 0.65)), window=_pick(rng, WINDOWS),
        tint=rng.uniform(-TINT, TINT, 3), lut=np.clip(levels, 0, 255).astype(np.uint8).reshape(256, 1, 3),
        blur=blur, noise=noise)


def _scene(camera: _Camera, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """The street behind one tracklet: a facade (its own colour) with windows and signs over the pavement."""
    horizon = int(height * (camera.horizon + rng.uniform(-0.05, 0.05)))
    image = np.empty((height, width, 3), np.float32)
    image[:horizon] = np.array(_pick(rng, GROUNDS)) * rng.uniform(0.7, 1.2) + camera.tint
    image[horizon:] = rng.uniform(70, 190) + camera.tint  # the pavement in sun or shade
    rows, cols = np.mgrid[horizon:height, 0:width]
    image[horizon:][(rows % camera.paving == 0) | (cols % (2 * camera.paving) == 0)] *= 0.7  # paving
    step, window = int(rng.integers(14, 26)), np.array(camera.window) * rng.uniform(0.6, 1.3)
    rows, cols = np.mgrid[0:horizon - step // 2, 0:width] + rng.integers(0, step, 2)[:, None, None]
    image[:horizon - step // 2][(rows % step < step // 2) & (cols % step < step // 2)] = window
    for _ in range(int(rng.integers(1, 4))):  # shop signs, doors, parked things
        top, left = int(rng.integers(0, height - 8)), int(rng.integers(0, width - 8))
        sign_height, sign_width = int(rng.integers(6, max(7, height // 3))), int(rng.integers(8, width // 2))
        image[top:top + sign_height, left:left + sign_width] = _pick(rng, GROUNDS + CARS + PALETTE)
    grain = cv2.GaussianBlur(rng.normal(0, 1, (height, width, 3)).astype(np.float32), (0, 0), 1.2)
    luma = grain.mean(axis=2, keepdims=True)
    image += luma * (LUMA_GRAIN / luma.std()) + grain * (CHROMA_GRAIN / grain.std())
    return np.clip(image, 0, 255).astype(np.uint8)


def _skeleton(view: str, phase: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(18, 2) joints (17 COCO + head centre) in person-height units and their (17,) visibility."""
    points, visible = _FRONT.copy(), np.ones(17, bool)
    points[5:17, 0] *= width
    swing = 0.45 * np.sin(phase)
    for side, sign in ((0, 1.0), (1, -1.0)):  # COCO: left joints first
        leg, arm = sign * swing, -0.7 * sign * swing
        if view in ("front", "back"):  # limbs swing towards or away from the camera: they look shorter
            points[[13 + side, 7 + side], 1] = 0.52 + 0.21 * np.cos(leg), 0.2 + 0.16 * np.cos(arm)
            points[[15 + side, 9 + side], 1] = points[[13 + side, 7 + side], 1] + (0.21 * np.cos(leg),
                                                                                   0.14 * np.cos(arm))
            continue
        bend = 0.5 * max(0.0, -np.sin(phase * sign + 1.0))  # facing +x, the right side towards the camera
        points[[5 + side, 11 + side], 0] = 0.012 * (2 * side - 1)
        for joint, parent, angle, length in ((13, 11, leg, 0.21), (15, 13, leg - bend, 0.21),
                                             (7, 5, arm, 0.16), (9, 7, arm + 0.35, 0.14)):
            points[joint + side] = points[parent + side] + length * np.array([np.sin(angle), np.cos(angle)])
    if view in ("left", "right"):
        points[[0, 2, 4, 17]] = [(0.06, 0.085), (0.045, 0.068), (-0.005, 0.075), (0.01, 0.075)]
        visible[[1, 3]] = False
    if view == "back":
        points[:, 0] *= -1
        visible[[0, 1, 2]] = False
    if view == "left":  # the mirror image of "right", with the left and right joint labels swapped back
        points[:, 0] *= -1
        points, visible = points[_FLIP], visible[_FLIP[:17]]
    points[:, 1] += 0.01 * abs(np.sin(phase))
    return points, visible


def _texture(look: _Look, size: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[0:size[0], 0:size[1]] // max(3, size[0] // 25)
    second = {"plain": rows < 0, "hstripes": rows % 2 == 1, "vstripes": cols % 2 == 1,
              "checks": (rows + cols) % 2 == 1}[look.texture]
    return np.where(second[..., None], np.array(look.second, np.uint8), np.array(look.upper, np.uint8))


def _pt(point: np.ndarray) -> tuple[int, int]:
    return int(round(point[0] * 4)), int(round(point[1] * 4))  # 2 fractional bits: shift=2 below


def _segment(image: np.ndarray, a: np.ndarray, b: np.ndarray, colour: Colour, thickness: float) -> None:
    cv2.line(image, _pt(a), _pt(b), colour, max(1, int(round(thickness))), cv2.LINE_AA, 2)


def _limb(image: np.ndarray, p: np.ndarray, look: _Look, unit: float, part: str, side: int) -> None:
    if part == "leg":
        thick = 0.09 * unit * look.width
        _segment(image, p[11 + side], p[13 + side], look.lower, thick)
        _segment(image, p[13 + side], p[15 + side], look.skin if look.shorts else look.lower, thick * 0.85)
        axes = (int(round(0.045 * unit)) * 4, int(round(0.022 * unit)) * 4)
        shoe = _pt(p[15 + side] + (0, 0.02 * unit))
        cv2.ellipse(image, shoe, axes, 0, 0, 360, look.shoes, -1, cv2.LINE_AA, 2)
    else:
        thick = 0.06 * unit * look.width
        _segment(image, p[5 + side], p[7 + side], look.upper, thick)
        _segment(image, p[7 + side], p[9 + side], look.upper if look.long_sleeves else look.skin, thick * 0.9)
        cv2.circle(image, _pt(p[9 + side]), int(0.025 * unit * 4), look.skin, -1, cv2.LINE_AA, 2)


def _trunk(image: np.ndarray, p: np.ndarray, look: _Look, unit: float, texture: np.ndarray) -> None:
    top, hips = (p[5] + p[6]) / 2, (p[11] + p[12]) / 2
    half = max(abs(p[5, 0] - p[6, 0]) / 2 + 0.035 * unit, 0.1 * unit * look.width)
    pelvis = hips + np.array([(-0.85, -0.04), (0.85, -0.04), (0.8, 0.07), (-0.8, 0.07)]) * (half, unit)
    cv2.fillPoly(image, [np.round(pelvis * 4).astype(np.int32)], look.lower, cv2.LINE_AA, 2)
    torso = np.array([top + (-half, -0.01 * unit), top + (half, -0.01 * unit), hips + (half * 0.85, 0),
                      hips + (-half * 0.85, 0)])
    mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mask, [np.round(torso * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
    np.copyto(image, texture, where=mask[..., None].astype(bool))


def _head_and_bag(image: np.ndarray, p: np.ndarray, look: _Look, unit: float, view: str, part: str) -> None:
    if part == "bag" and look.bag is not None and view != "front":  # a backpack: seen from behind or a side
        facing = {"back": 0.0, "left": -1.0, "right": 1.0}[view]
        centre = (p[5] + p[6]) / 2 + (-facing * 0.1 * unit, 0.14 * unit)
        half = np.array((0.09 if view == "back" else 0.05, 0.1)) * unit
        cv2.rectangle(image, _pt(centre - half), _pt(centre + half), look.bag, -1, cv2.LINE_AA, 2)
    elif part == "head":
        radius = 0.065 * unit
        cv2.circle(image, _pt(p[17]), int(radius * 4), look.hair, -1, cv2.LINE_AA, 2)
        if view != "back":  # the face: below the hair from the front, ahead of it from a side
            shift = {"front": (0.0, 0.3), "left": (-0.3, 0.1), "right": (0.3, 0.1)}[view]
            face = p[17] + np.array(shift) * radius
            cv2.circle(image, _pt(face), int(radius * 0.85 * 4), look.skin, -1, cv2.LINE_AA, 2)


def _draw_person(image: np.ndarray, p: np.ndarray, look: _Look, view: str, unit: float,
                 texture: np.ndarray) -> None:
    """Draw the figure with pixel joints ``p`` (18, 2), back to front."""
    if view in ("front", "back"):
        order = [("leg", 0), ("leg", 1), ("trunk", 0), ("bag", 0), ("arm", 0), ("arm", 1), ("head", 0)]
    else:
        near = 0 if view == "left" else 1
        order = [("arm", 1 - near), ("leg", 1 - near), ("bag", 0), ("leg", near), ("trunk", 0), ("head", 0),
                 ("arm", near)]
    for part, side in order:
        if part in ("leg", "arm"):
            _limb(image, p, look, unit, part, side)
        elif part == "trunk":
            _trunk(image, p, look, unit, texture)
        else:
            _head_and_bag(image, p, look, unit, view, part)


def _place(points: np.ndarray, size: tuple[int, int], look: _Look, rng: np.random.Generator,
           offset: float = 0.0, scale: float = 1.0) -> tuple[np.ndarray, float]:
    """Person-height units to crop pixels, with box jitter; also returns the person's height in pixels."""
    height, width = size
    unit = height * 0.93 * look.height * scale * rng.uniform(0.97, 1.03)
    left, top = width / 2 + width * (offset + rng.uniform(-0.04, 0.04)), height * rng.uniform(0.03, 0.09)
    return np.column_stack([left + points[:, 0] * unit, top + points[:, 1] * unit]), unit


def _occlude(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draw a pole, a car-coloured block or part of another person; returns the mask of covered pixels."""
    size, before = image.shape[:2], image.copy()
    kind, share = int(rng.integers(3)), rng.uniform(0.2, 0.4)
    if kind == 0:
        left = int(rng.uniform(0, 1 - share) * size[1])
        image[:, left:left + max(1, int(share * size[1]))] = _pick(rng, POLES)
    elif kind == 1:
        image[size[0] - max(1, int(share * size[0])):] = _pick(rng, CARS)
    else:
        look, view = _random_look(rng), _pick(rng, VIEWS)
        points, _ = _skeleton(view, rng.uniform(0, 2 * np.pi), look.width)
        offset = (1 if rng.random() < 0.5 else -1) * (0.75 - share / 2)
        pixels, unit = _place(points, size, look, rng, offset, scale=1.1)
        _draw_person(image, pixels, look, view, unit, _texture(look, size))
    result: np.ndarray = np.any(image != before, axis=2)
    return result


def _keypoints(pixels: np.ndarray, hidden: np.ndarray, cover: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """(17, 3) ``(x, y, confidence)``; joints hidden, under ``cover`` or outside the image are zeros."""
    height, width = cover.shape
    shown = ~hidden & (pixels >= 0).all(axis=1) & (pixels[:, 0] <= width - 1) & (pixels[:, 1] <= height - 1)
    cols, rows = np.round(pixels[shown]).astype(int).T
    shown[shown] = ~cover[rows, cols]
    out = np.zeros((17, 3), np.float32)
    out[shown, :2] = pixels[shown]
    out[shown, 2] = rng.uniform(0.55, 0.98, int(shown.sum()))
    return out


def _render_track(track: _Track, camera: _Camera, spec: SyntheticSpec,
                  rng: np.random.Generator) -> tuple[list[bytes], np.ndarray]:
    """JPEG bytes and (N, 17, 3) keypoints of every frame of ``track``."""
    size, texture = spec.image_size, _texture(track.look, spec.image_size)
    drift = {"left": -1.0, "right": 1.0}.get(track.view, 0.3) * rng.uniform(1.0, 3.0)  # the box follows
    travel = int(abs(drift) * track.frames) + 1
    scene, start = _scene(camera, rng, size[0], size[1] + travel), (travel if drift < 0 else 0)
    phase, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.7)
    junk = track.pid == -1  # a bad detection: the person too large and half out of the box
    offset, scale = (float(rng.choice((-0.5, 0.5))), rng.uniform(1.3, 1.7)) if junk else (0.0, 1.0)
    frames, keypoints = [], np.zeros((track.frames, 17, 3), np.float32)
    for index in range(track.frames):
        left = int(np.clip(start + drift * index, 0, travel))
        image = scene[:, left:left + size[1]].copy()
        points, visible = _skeleton(track.view, phase + index * speed, track.look.width)
        pixels, unit = _place(points, size, track.look, rng, offset, scale)
        _draw_person(image, pixels, track.look, track.view, unit, texture)
        cover = _occlude(image, rng) if rng.random() < spec.occlusion_rate else np.zeros(size, bool)
        keypoints[index] = _keypoints(pixels[:17], ~visible, cover, rng)
        image = cv2.LUT(image, camera.lut)
        if camera.noise:
            image = np.clip(image + rng.normal(0, camera.noise, image.shape), 0, 255).astype(np.uint8)
        if camera.blur:
            image = cv2.GaussianBlur(image, (camera.blur, camera.blur), 0)
        frames.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])[1].tobytes())
    return frames, keypoints


def _plan(spec: SyntheticSpec, rng: np.random.Generator) -> list[_Track]:
    """Every tracklet to draw, sorted as MARS lists them (by split, then name)."""
    def draw(low_high: tuple[int, int]) -> int:
        return int(rng.integers(low_high[0], low_high[1] + 1))

    tracks: list[_Track] = []
    for pid in range(1, spec.train_ids + spec.test_ids + 1):
        split, look = ("bbox_train" if pid <= spec.train_ids else "bbox_test"), _random_look(rng)
        chosen = rng.choice(spec.cameras, draw(spec.cameras_per_id), replace=False)
        cameras = sorted(int(c) + 1 for c in chosen)
        anchor = _pick(rng, cameras)
        for cam in cameras:
            for number in range(1, draw(spec.tracklets_per_camera) + 1):
                query = split == "bbox_test" and cam != anchor and number == 1
                view = _pick(rng, VIEWS)
                tracks.append(_Track(split, pid, cam, number, draw(spec.frames), view, look, query))
    for pid, count in ((0, spec.distractor_tracklets), (-1, spec.junk_tracklets)):
        numbers = [0] * (spec.cameras + 1)
        for cam in (int(c) for c in rng.integers(1, spec.cameras + 1, count)):
            numbers[cam] += 1
            tracks.append(_Track("bbox_test", pid, cam, numbers[cam], draw(spec.frames), _pick(rng, VIEWS),
                                 _random_look(rng)))
    return sorted(tracks, key=lambda track: (track.split, track.stem))


def _savemat(path: Path, variable: str, value: np.ndarray) -> None:
    """A MATLAB v5 file whose 116-byte text header holds no date, so that equal data give equal bytes."""
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {variable: value})
    data = bytearray(buffer.getvalue())
    data[:116] = b"MATLAB 5.0 MAT-file, written by keyreid-stream (synthetic MARS)".ljust(116)
    path.write_bytes(bytes(data))


def _write_info(info: Path, tracks: list[_Track]) -> None:
    """The name lists, track tables and query rows, as in the MARS evaluation kit (1-based, doubles)."""
    info.mkdir(parents=True, exist_ok=True)
    for tag in ("train", "test"):
        names: list[str] = []
        rows, query = [], []
        for row, track in enumerate((t for t in tracks if t.split == f"bbox_{tag}"), start=1):
            rows.append([len(names) + 1, len(names) + track.frames, track.pid, track.cam])
            names.extend(track.names)
            query.extend([row] if track.query else [])
        (info / f"{tag}_name.txt").write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
        _savemat(info / f"tracks_{tag}_info.mat", f"track_{tag}_info", np.array(rows, float).reshape(-1, 4))
    _savemat(info / "query_IDX.mat", "query_IDX", np.array([query], float))  # rows of the test table


def _write_marker(root: Path, spec: SyntheticSpec, tracks: Sequence[_Track] = ()) -> None:
    marker = {"format": MARKER_FORMAT, "version": 1, "spec": asdict(spec),
              "identities": {str(t.pid): asdict(t.look) for t in tracks if t.pid > 0},
              "tracklets": {f"{t.split}/{t.stem}": {"view": t.view, "query": t.query} for t in tracks}}
    (root / MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True), encoding="utf-8")


_DATASET_ENTRIES = ("bbox_train", "bbox_test", "info")  # and the keypoint store and the marker


def _check_root(root: Path) -> None:
    """``root`` must be new, empty, or a previous synthetic dataset (which is replaced); refuse anything else."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        try:
            previous = json.loads((root / MARKER).read_text(encoding="utf-8")).get("format")
        except (OSError, ValueError, AttributeError):
            previous = None
        if previous != MARKER_FORMAT:
            found = sorted(entry.name for entry in root.iterdir())[:5] if root.is_dir() else "a file"
            raise DatasetLayoutError(f"synthetic dataset root {str(root)!r} must be a new or empty folder or "
                                     f"a previous synthetic dataset (with {MARKER}); found {found}")


def _partial_folder(root: Path) -> Path:
    """A new folder beside ``root`` (same file system) to write into; stale ones of interrupted runs go first."""
    root.parent.mkdir(parents=True, exist_ok=True)
    for stale in root.parent.glob(f".{root.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))


def _publish(partial: Path, root: Path) -> None:
    """Put the finished dataset in ``partial`` at ``root``: one rename for a new root; else the previous
    dataset's entries are replaced, its marker removed first and the new marker moved last, so a dataset with a
    marker is always complete."""
    if not root.exists():
        partial.rename(root)
        return
    (root / MARKER).unlink(missing_ok=True)
    entries = [*_DATASET_ENTRIES, default_store_folder(root, BACKEND).name]
    for name in entries:
        shutil.rmtree(root / name, ignore_errors=True)
    for name in entries:
        if (partial / name).exists():
            (partial / name).rename(root / name)
    (partial / MARKER).rename(root / MARKER)
    shutil.rmtree(partial, ignore_errors=True)


def write_synthetic_mars(root: str | os.PathLike[str],
                         spec: SyntheticSpec = SyntheticSpec()) -> SyntheticSummary:
    """Write the dataset of ``spec`` under ``root`` (empty, or holding a previous synthetic dataset).

    ``root/synthetic.json`` records the spec, every identity's appearance and every tracklet's viewpoint and
    query flag. The same spec always gives the same images and ``.mat`` files, byte for byte. The dataset is
    written into a temporary folder beside ``root`` and moved there at the end: an interrupted run leaves no
    half dataset at ``root`` (its temporary folder is removed by the next run).
    """
    started, final_root = time.perf_counter(), Path(root)
    _check_root(final_root)
    root_path = _partial_folder(final_root)
    try:
        summary = _write(root_path, spec)
        _publish(root_path, final_root)
    except BaseException:
        shutil.rmtree(root_path, ignore_errors=True)
        raise
    summary = replace(summary, root=final_root, keypoint_store=default_store_folder(final_root, BACKEND),
                      seconds=round(time.perf_counter() - started, 3))
    logger.info("synthetic MARS under %s: %d frames in %.1f s", final_root, summary.frames, summary.seconds)
    return summary


def _write(root_path: Path, spec: SyntheticSpec) -> SyntheticSummary:
    tracks = _plan(spec, np.random.default_rng([spec.seed, 0]))
    cameras = {cam: _camera(np.random.default_rng([spec.seed, 1, cam])) for cam in range(1, spec.cameras + 1)}
    keys: list[str] = []
    paths: list[str] = []
    keypoints = []
    for index, track in enumerate(tracks):
        rng = np.random.default_rng([spec.seed, 2, index])
        frames, points = _render_track(track, cameras[track.cam], spec, rng)
        (root_path / track.split / track.stem[:4]).mkdir(parents=True, exist_ok=True)
        for name, data in zip(track.names, frames):
            paths.append(f"{track.split}/{track.stem[:4]}/{name}")
            (root_path / paths[-1]).write_bytes(data)
        keys.extend([f"{track.split}/{track.stem}"] * track.frames)
        keypoints.append(points)
    _write_info(root_path / "info", tracks)
    store = KeypointStore.create(default_store_folder(root_path, BACKEND), dataset="mars", backend=BACKEND)
    store.append(keys, paths, np.concatenate(keypoints), np.zeros(len(paths), np.uint8))
    _write_marker(root_path, spec, tracks)  # last: a folder with the marker is a complete dataset
    summary = SyntheticSummary(
        root=root_path, keypoint_store=store.folder,
        train_tracklets=sum(t.split == "bbox_train" and t.pid > 0 for t in tracks),
        query_tracklets=sum(t.query for t in tracks),
        gallery_tracklets=sum(t.split == "bbox_test" and not t.query and t.pid >= 0 for t in tracks),
        frames=len(paths), seconds=0.0)
    return summary
