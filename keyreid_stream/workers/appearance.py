"""A classical appearance descriptor for machines without re-ID weights: keypoint-guided part histograms.

:class:`PartHistogramEmbedder` is a drop-in for :class:`~keyreid_stream.inference.embedder.TrackletEmbedder`
(``embedding.kind: part-histogram``). It needs no network, no download and no GPU, so a machine with no
internet still runs the whole system and links people by what they wear. It is far weaker than a trained
re-ID model: it sees colours and textures, not identities (two people in dark coats look alike to it).

Per observation (a crop and its 17 keypoints in crop pixels):

1. The crop is resized to 128 x 64 (height x width), the keypoints follow, and its brightness is normalised:
   a gain (0.5 to 2) brings the median of max(B, G, R) to 128, so that cameras with different exposure see the
   same colours (only the ``value`` histogram below keeps the brightness before the gain).
2. Four horizontal body parts, top to bottom: ``head`` (top to shoulders), ``torso`` (shoulders to hips),
   ``thighs`` (hips to knees), ``shins`` (knees to below the ankles). Each boundary is the mean height of
   its pair of joints when one of them has confidence > 0.1; otherwise, or when the parts come out in the
   wrong order or thinner than 4 % of the crop, the boundaries of the ``prior`` pose layout (0.19, 0.50,
   0.71, 1.0 of the height): a tracklet without keypoints gets the same descriptor as one from ``prior``.
3. Background suppression: every pixel is weighted by a Gaussian of its horizontal distance from the body's
   centre line (mean x of the visible shoulders and hips, else the crop centre); its sigma is 0.75 of the
   shoulder or hip width (within 0.2 to 0.45 of the crop width; without them, that of the prior layout).
4. Per part, four weighted histograms with soft (linearly interpolated) bins:

   * ``colour`` (32): 12 hues x 2 saturations for chromatic pixels, 8 brightness levels for achromatic
     ones (low saturation or dark); a pixel is split between the two by smooth ramps, so grey, black and
     white clothes are described by brightness, not by the noise of their hue;
   * ``value`` (8): brightness of all pixels before the gain, a weak cue of absolute brightness;
   * ``lbp`` (10): rotation-invariant uniform local binary patterns (8 neighbours, radius 1, a neighbour
     counts when it is at least 4 grey levels brighter), the texture;
   * ``gradient`` (9): 8 unsigned gradient orientations weighted by the edge strength (saturating at 48
     grey levels), plus one bin for the flat remainder: stripes, checks and plain cloth differ here.

The tracklet's histograms are the mean of its observations' (L1-normalised) histograms; each is then
Hellinger-normalised (square root: unit L2 norm), scaled by its part and feature weight, and the
concatenation is L2-normalised: ``4 parts x 59 bins = 236`` float32 values, part-major (head colour, head
value, head lbp, head gradient, torso colour, ...). Its cosine similarity is a weighted sum of Bhattacharyya
coefficients, so it is never negative and lies high: on the sample video different people score 0.60 / 0.82 /
0.92 (5th percentile / median / 95th percentile), and the matcher's threshold must be raised accordingly (about
0.93; docs/worker.md).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import cv2
import numpy as np

from keyreid_stream.contracts import NUM_KEYPOINTS, Tracklet
from keyreid_stream.inference.embedder import crop_keypoints
from keyreid_stream.keypoints.pose import PRIOR_LAYOUT

__all__ = ["BLOCKS", "DESCRIPTOR_DIM", "MODEL_NAME", "MODEL_VERSION", "PARTS", "PartHistogramEmbedder",
           "describe", "observation_histograms", "part_boundaries"]

logger = logging.getLogger(__name__)

MODEL_NAME = "part-histogram"
MODEL_VERSION = "1"  # bump whenever the features change: descriptors of different versions are not comparable

HEIGHT, WIDTH = 128, 64
MIN_CONFIDENCE = 0.1  # as the heatmap renderer: a joint at or below it is unknown

# (name, weight, the pair of joints whose mean height is the part's lower boundary), top to bottom
PARTS: tuple[tuple[str, float, tuple[int, int]], ...] = (
    ("head", 0.5, (5, 6)),
    ("torso", 1.0, (11, 12)),
    ("thighs", 0.8, (13, 14)),
    ("shins", 0.7, (15, 16)),
)
ANKLE_MARGIN = 0.08  # the shins part ends this fraction of the height below the ankles (the shoes)
MIN_PART = 0.04  # a part thinner than this fraction of the height means the keypoints are implausible
TORSO_JOINTS = (5, 6, 11, 12)
SIGMA_PER_WIDTH, SIGMA_RANGE = 0.75, (0.2, 0.45)  # background Gaussian: sigma per body width, bounds (crop widths)
# Without keypoints: the prior pose layout, so that missing joints and the ``prior`` backend agree.
FALLBACK_BOUNDARIES = np.array([0.0] + [float(PRIOR_LAYOUT[list(joints), 1].mean()) for *_, joints in PARTS])
FALLBACK_BOUNDARIES[-1] = min(FALLBACK_BOUNDARIES[-1] + ANKLE_MARGIN, 1.0)
SIGMA_DEFAULT = SIGMA_PER_WIDTH * float(abs(PRIOR_LAYOUT[5, 0] - PRIOR_LAYOUT[6, 0]))

# (name, bins, weight) of each part's histograms, in descriptor order
BLOCKS: tuple[tuple[str, int, float], ...] = (("colour", 32, 1.0), ("value", 8, 0.4), ("lbp", 10, 0.5),
                                              ("gradient", 9, 0.5))
HUE_BINS, SAT_BINS, GREY_BINS, VALUE_BINS, ORIENTATION_BINS = 12, 2, 8, 8, 8
CHROMA_SAT, CHROMA_VAL = (24.0, 64.0), (24.0, 56.0)  # ramps (0 -> 1) of saturation and brightness to chromatic
SAT_RANGE = (40.0, 255.0)
LBP_THRESHOLD, EDGE_SATURATION = 4, 48.0
GAIN_TARGET, GAIN_RANGE = 128.0, (0.5, 2.0)  # brightness normalisation: median brightness, bounds of the gain
CHUNK = 16  # observations per vectorised pass (its histograms stay in the CPU caches)

BINS = sum(bins for _, bins, _ in BLOCKS)
DESCRIPTOR_DIM = len(PARTS) * BINS
_OFFSETS = np.cumsum([0] + [bins for _, bins, _ in BLOCKS])
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))  # circular order


def _riu2_table() -> np.ndarray:
    """LBP code (0..255) -> rotation-invariant uniform label: the number of set bits when the circular pattern
    has at most two 0/1 transitions (0..8), else 9."""
    codes = np.arange(256)
    bits = (codes[:, None] >> np.arange(8)) & 1
    transitions = (bits != np.roll(bits, 1, axis=1)).sum(axis=1)
    return np.where(transitions <= 2, bits.sum(axis=1), 9).astype(np.int64)


_RIU2 = _riu2_table()


# -- geometry ---------------------------------------------------------------------------------------------------


def _canonical(crops: Sequence[np.ndarray], keypoints: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crops resized to HEIGHT x WIDTH and gain-normalised ``(N, H, W, 3)``, their brightness (max of B, G and R)
    before normalisation ``(N, H, W)``, and their keypoints scaled alike (unknown: confidence 0)."""
    images = np.empty((len(crops), HEIGHT, WIDTH, 3), np.uint8)
    brightness = np.empty((len(crops), HEIGHT, WIDTH), np.uint8)
    scale = np.empty((len(crops), 2), np.float32)
    for row, crop in enumerate(crops):
        interpolation = cv2.INTER_AREA if crop.shape[0] > HEIGHT else cv2.INTER_LINEAR
        resized = cv2.resize(np.ascontiguousarray(crop), (WIDTH, HEIGHT), interpolation=interpolation)
        images[row], brightness[row] = _normalise_gain(resized)
        scale[row] = (WIDTH / crop.shape[1], HEIGHT / crop.shape[0])
    points = np.array(keypoints, np.float32, copy=True).reshape(len(crops), NUM_KEYPOINTS, 3)
    points[~(np.isfinite(points).all(axis=-1) & (points[..., 2] > MIN_CONFIDENCE))] = 0.0
    points[..., :2] = np.clip(points[..., :2], -1e6, 1e6) * scale[:, None, :]  # absurd joints stay finite
    return images, brightness, points


def _normalise_gain(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``image`` (BGR uint8) scaled so that the median of its brightness (max of B, G and R) becomes GAIN_TARGET,
    by a gain within GAIN_RANGE (cameras with different exposure then see the same colours), and its brightness
    before scaling."""
    value = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 2]
    median = float(np.median(value[::2, ::2]))  # every 4th pixel is plenty
    gain = min(max(GAIN_TARGET / max(median, 1.0), GAIN_RANGE[0]), GAIN_RANGE[1])
    return cv2.convertScaleAbs(image, alpha=gain), value


def _joint_mean(points: np.ndarray, joints: Sequence[int], axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean coordinate ``axis`` of the known ``joints`` per row, and whether any was known."""
    selected = points[:, list(joints)]
    known = selected[..., 2] > 0
    count = known.sum(axis=1)
    total = np.where(known, selected[..., axis], 0.0).sum(axis=1)
    return total / np.maximum(count, 1), count > 0


def part_boundaries(points: np.ndarray) -> np.ndarray:
    """``(N, 5)`` row boundaries (in canonical pixels) of the parts from canonical keypoints ``(N, 17, 3)``;
    fixed fractions where joints are unknown, and for every part of a row whose parts come out implausible."""
    fallback = (FALLBACK_BOUNDARIES * HEIGHT).astype(np.float32)
    bounds = np.tile(fallback, (len(points), 1))
    for index, (_, _, joints) in enumerate(PARTS, start=1):
        height, known = _joint_mean(points, joints, 1)
        if index == len(PARTS):
            height = np.minimum(height + ANKLE_MARGIN * HEIGHT, HEIGHT)
        bounds[:, index] = np.where(known, height, fallback[index])
    plausible = (np.diff(bounds, axis=1) >= MIN_PART * HEIGHT).all(axis=1) & (bounds[:, -1] <= HEIGHT)
    bounds[~plausible] = fallback
    return bounds


def _pixel_parts(points: np.ndarray) -> np.ndarray:
    """``(N, H)`` part index of each pixel row (-1: below the last part)."""
    bounds = part_boundaries(points)
    centres = np.arange(HEIGHT, dtype=np.float32) + 0.5
    below = (centres[None, :, None] >= bounds[:, None, 1:]).sum(axis=2)  # boundaries passed: the part index
    return np.where(centres[None, :] < bounds[:, -1:], below, -1)


def _column_weights(points: np.ndarray) -> np.ndarray:
    """``(N, W)`` background suppression: a Gaussian around the body's centre line."""
    centre, known = _joint_mean(points, TORSO_JOINTS, 0)
    centre = np.clip(np.where(known, centre, WIDTH / 2.0), 0.0, WIDTH)  # a joint may lie outside its crop
    widths = [np.abs(points[:, a, 0] - points[:, b, 0]) * ((points[:, a, 2] > 0) & (points[:, b, 2] > 0))
              for a, b in ((5, 6), (11, 12))]
    width = np.maximum(*widths)
    sigma = np.where(width > 0, np.clip(SIGMA_PER_WIDTH * width / WIDTH, *SIGMA_RANGE), SIGMA_DEFAULT) * WIDTH
    offset = np.arange(WIDTH, dtype=np.float32)[None, :] + 0.5 - centre[:, None]
    result: np.ndarray = np.exp(-0.5 * (offset / sigma[:, None]) ** 2).astype(np.float32)
    return result


# -- per-pixel codes --------------------------------------------------------------------------------------------
# Every pixel is counted once per histogram in a fine, hard-binned code space (integer lookups, 4 bincounts);
# a fixed matrix then spreads the fine bins over the soft bins of the descriptor (linear interpolation between
# bin centres, as if each pixel had been soft-binned).

FINE_HUE, FINE_SAT, FINE_VAL, FINE_ORIENT, LBP_LABELS = 36, 8, 32, 36, 10
_FINE = {"chromatic": FINE_HUE * FINE_SAT, "achromatic": FINE_VAL, "value_lbp": FINE_VAL * LBP_LABELS,
         "orientation": FINE_ORIENT}
_FINE_START = dict(zip(_FINE, np.cumsum([0] + list(_FINE.values()))))
FINE_SIZE = sum(_FINE.values())


def _soft_rows(values: np.ndarray, bins: int, low: float, high: float, circular: bool = False) -> np.ndarray:
    """``(len(values), bins)``: linear interpolation of each value between the two nearest bin centres."""
    position = (np.asarray(values, np.float64) - low) / (high - low) * bins - 0.5
    if not circular:
        position = np.clip(position, 0.0, bins - 1.0)
    lower = np.floor(position)
    frac = position - lower
    rows = np.zeros((len(position), bins))
    upper = lower + 1 if circular else np.minimum(lower + 1, bins - 1)
    np.add.at(rows, (np.arange(len(rows)), lower.astype(int) % bins), 1.0 - frac)
    np.add.at(rows, (np.arange(len(rows)), upper.astype(int) % bins), frac)
    return rows


def _fine_rows(levels: int, fine: int, bins: int, low: float, high: float, circular: bool = False) -> np.ndarray:
    """``(fine, bins)``: the mean soft row of the integer levels ``0..levels-1`` that fall in each fine bin."""
    values = np.arange(levels)
    rows = _soft_rows(values, bins, low, high, circular)
    which = values * fine // levels
    return np.stack([rows[which == index].mean(axis=0) for index in range(fine)])


def _projection() -> np.ndarray:
    """``(FINE_SIZE, BINS)``: fine codes -> soft descriptor bins (the flat gradient bin is added apart)."""
    matrix = np.zeros((FINE_SIZE, BINS))
    hue = _fine_rows(180, FINE_HUE, HUE_BINS, 0.0, 180.0, circular=True)
    sat = _fine_rows(256, FINE_SAT, SAT_BINS, *SAT_RANGE)
    rows = slice(_FINE_START["chromatic"], _FINE_START["achromatic"])
    matrix[rows, :HUE_BINS * SAT_BINS] = np.einsum("ha,sb->hsab", hue, sat).reshape(FINE_HUE * FINE_SAT, -1)
    grey_start = _OFFSETS[0] + HUE_BINS * SAT_BINS
    matrix[_FINE_START["achromatic"]:_FINE_START["value_lbp"], grey_start:_OFFSETS[1]] = _fine_rows(
        256, FINE_VAL, GREY_BINS, 0.0, 256.0)
    value = _fine_rows(256, FINE_VAL, VALUE_BINS, 0.0, 256.0)
    rows = slice(_FINE_START["value_lbp"], _FINE_START["orientation"])
    matrix[rows, _OFFSETS[1]:_OFFSETS[2]] = np.repeat(value, LBP_LABELS, axis=0)
    matrix[rows, _OFFSETS[2]:_OFFSETS[3]] = np.tile(np.eye(LBP_LABELS), (FINE_VAL, 1))
    matrix[_FINE_START["orientation"]:, _OFFSETS[3]:_OFFSETS[3] + ORIENTATION_BINS] = _fine_rows(
        180, FINE_ORIENT, ORIENTATION_BINS, 0.0, 180.0, circular=True)
    return matrix


def _ramp(values: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((values - low) / (high - low), 0.0, 1.0).astype(np.float32)


_PROJECTION = _projection()
# cv2.LUT tables for the H, S, V channels: fine codes (hue code pre-multiplied) and the chromatic ramps
_CODE_LUT = np.stack([np.minimum(np.arange(256) * FINE_HUE // 180, FINE_HUE - 1) * FINE_SAT,  # hue is 0..179
                      np.arange(256) * FINE_SAT // 256, np.arange(256) * FINE_VAL // 256], axis=1)
_CODE_LUT = _CODE_LUT.astype(np.int32).reshape(1, 256, 3)
_RAMP_LUT = np.stack([np.ones(256), _ramp(np.arange(256.0), *CHROMA_SAT), _ramp(np.arange(256.0), *CHROMA_VAL)],
                     axis=1).astype(np.float32).reshape(1, 256, 3)
_VALUE_LUT = np.ascontiguousarray(_CODE_LUT[0, :, 2])
_RIU2_LUT = _RIU2.astype(np.uint8)


def _lbp_labels(padded: np.ndarray) -> np.ndarray:
    """Rotation-invariant uniform LBP label of every pixel of an edge-padded ``(N, H + 2, W + 2)`` int16 image."""
    centre = padded[:, 1:-1, 1:-1] + LBP_THRESHOLD
    code = np.zeros(centre.shape, np.uint8)
    for bit, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= (padded[:, 1 + dy:1 + dy + HEIGHT, 1 + dx:1 + dx + WIDTH] >= centre).view(np.uint8) << bit
    return cv2.LUT(code.reshape(-1, WIDTH), _RIU2_LUT).reshape(centre.shape)


def _gradient_codes(padded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fine orientation code and edge strength (0..1) of the central differences of every pixel."""
    gx = (padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2]).astype(np.float32).reshape(-1, WIDTH)
    gy = (padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]).astype(np.float32).reshape(-1, WIDTH)
    magnitude, degrees = cv2.cartToPolar(gx, gy, angleInDegrees=True)
    orientation = (degrees * (FINE_ORIENT / 180.0)).astype(np.int32) % FINE_ORIENT
    edge = np.minimum(magnitude * (1.0 / EDGE_SATURATION), 1.0)
    shape = (len(padded), HEIGHT, WIDTH)
    return (orientation + _FINE_START["orientation"]).reshape(shape), edge.reshape(shape)


def _pixel_codes(tall_hsv: np.ndarray, grey: np.ndarray, brightness: np.ndarray
                 ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """(fine code, weight factor or None for 1) of every pixel, one pair per bincount. ``tall_hsv``: the
    ``(N * H, W, 3)`` stack of the gain-normalised HSV crops; ``grey``: their grey levels ``(N, H, W)``;
    ``brightness``: the fine brightness code of the crops before normalisation (the ``value`` block)."""
    shape = grey.shape
    codes = cv2.LUT(tall_hsv, _CODE_LUT).reshape(*shape, 3)
    ramps = cv2.LUT(tall_hsv, _RAMP_LUT).reshape(*shape, 3)
    chroma = ramps[..., 1] * ramps[..., 2]
    padded = np.pad(grey.astype(np.int16), ((0, 0), (1, 1), (1, 1)), mode="edge")
    orientation, edge = _gradient_codes(padded)
    return [
        (codes[..., 0] + codes[..., 1], chroma),
        (_FINE_START["achromatic"] + codes[..., 2], 1.0 - chroma),
        (_FINE_START["value_lbp"] + brightness * LBP_LABELS + _lbp_labels(padded), None),
        (orientation, edge),
    ]


# -- histograms and descriptors ----------------------------------------------------------------------------------


def _pixel_weights(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(N, H, W)`` weight of every pixel (background suppression; 0 below the parts) and ``(N, H, 1)`` the
    index of its (observation, part) histogram."""
    parts = _pixel_parts(points)[:, :, None]
    weight = np.where(parts >= 0, _column_weights(points)[:, None, :], 0.0).astype(np.float32)
    return weight, np.arange(len(points))[:, None, None] * len(PARTS) + np.maximum(parts, 0)


def observation_histograms(crops: Sequence[np.ndarray], keypoints: np.ndarray) -> np.ndarray:
    """``(N, parts, BINS)`` float64 histograms of N crops (BGR uint8) with keypoints ``(N, 17, 3)`` in crop
    pixels; every block (colour, value, lbp, gradient) of every part sums to 1. Unknown or non-finite joints
    are ignored. Crops are processed ``CHUNK`` at a time (bounded memory)."""
    keypoints = np.asarray(keypoints, np.float32).reshape(len(crops), NUM_KEYPOINTS, 3)
    if len(crops) == 0:
        return np.zeros((0, len(PARTS), BINS))
    return np.concatenate([_chunk_histograms(crops[start:start + CHUNK], keypoints[start:start + CHUNK])
                           for start in range(0, len(crops), CHUNK)])


def _chunk_histograms(crops: Sequence[np.ndarray], keypoints: np.ndarray) -> np.ndarray:
    count = len(crops)
    images, brightness, points = _canonical(crops, keypoints)
    brightness = cv2.LUT(brightness.reshape(-1, WIDTH), _VALUE_LUT).reshape(count, HEIGHT, WIDTH)
    tall = images.reshape(count * HEIGHT, WIDTH, 3)  # one OpenCV call for all crops
    hsv = cv2.cvtColor(tall, cv2.COLOR_BGR2HSV)
    grey = cv2.cvtColor(tall, cv2.COLOR_BGR2GRAY).reshape(count, HEIGHT, WIDTH)
    weight, histogram = _pixel_weights(points)
    base, size = histogram * FINE_SIZE, count * len(PARTS) * FINE_SIZE
    fine: np.ndarray = np.zeros(size)
    for code, factor in _pixel_codes(hsv, grey, brightness):
        weights = weight if factor is None else weight * factor
        fine += np.bincount((base + code).ravel(), weights.ravel(), minlength=size)
    fine = fine.reshape(count * len(PARTS), FINE_SIZE)
    histograms = (fine @ _PROJECTION).reshape(count, len(PARTS), BINS)
    total = fine[:, _FINE_START["value_lbp"]:_FINE_START["orientation"]].sum(axis=1)
    edges = fine[:, _FINE_START["orientation"]:].sum(axis=1)
    histograms[..., -1] = np.maximum(total - edges, 0.0).reshape(count, len(PARTS))  # the flat gradient bin
    for start, stop in itertools.pairwise(_OFFSETS):
        block = histograms[..., start:stop]
        block /= np.maximum(block.sum(axis=-1, keepdims=True), 1e-12)
    result: np.ndarray = histograms
    return result


def describe(histograms: np.ndarray) -> np.ndarray:
    """``(..., parts, BINS)`` mean histograms -> ``(..., DESCRIPTOR_DIM)`` float32 descriptors: Hellinger per
    block, part and block weights, L2 normalisation."""
    block_weights = np.concatenate([np.full(bins, weight) for _, bins, weight in BLOCKS])
    part_weights = np.array([weight for _, weight, _ in PARTS])
    vector = np.sqrt(np.clip(histograms, 0.0, None)) * part_weights[:, None] * block_weights
    vector = vector.reshape(*histograms.shape[:-2], DESCRIPTOR_DIM)
    norm = np.linalg.norm(vector, axis=-1, keepdims=True)
    result: np.ndarray = (vector / np.maximum(norm, 1e-12)).astype(np.float32)
    return result


def _selection(length: int, limit: int) -> np.ndarray:
    """At most ``limit`` observation indices, evenly spread over the tracklet."""
    if length <= limit:
        return np.arange(length)
    return np.unique(np.round(np.linspace(0, length - 1, limit)).astype(np.int64))


class PartHistogramEmbedder:
    """Tracklet descriptors from part colour and texture histograms (see the module docstring); CPU only.

    The worker batches tracklets by "clips": here a clip is ``clip_length`` observations and at most
    ``max_clips`` of them are described per tracklet (``clip_length x max_clips`` observations, evenly spread).
    """

    model_name = MODEL_NAME
    model_version = MODEL_VERSION
    descriptor_dim = DESCRIPTOR_DIM
    device = "cpu"

    def __init__(self, *, max_clips: int = 8, clip_length: int = 4) -> None:
        if max_clips < 1 or clip_length < 1:
            raise ValueError(f"max_clips and clip_length must be >= 1, got {max_clips} and {clip_length}")
        self.max_clips, self.clip_length = max_clips, clip_length
        logger.info("embedding: %s (version %s) on the CPU, at most %d observations per tracklet, descriptor %d",
                    self.model_name, self.model_version, self.max_observations, self.descriptor_dim)

    @property
    def max_observations(self) -> int:
        return self.max_clips * self.clip_length

    def embed(self, tracklets: Sequence[Tracklet]) -> np.ndarray:
        """``(N, DESCRIPTOR_DIM)`` float32 unit-norm descriptors, one per tracklet (all need crops)."""
        if not tracklets:
            return np.zeros((0, self.descriptor_dim), np.float32)
        crops: list[np.ndarray] = []
        points, counts = [], []
        for tracklet in tracklets:
            if tracklet.crops is None:
                raise ValueError(f"tracklet {tracklet.camera_id}/{tracklet.track_id} has no crops to embed")
            used = _selection(len(tracklet), self.max_observations)
            crops.extend(tracklet.crops[i] for i in used)
            points.append(crop_keypoints(tracklet)[used])
            counts.append(len(used))
        histograms = observation_histograms(crops, np.concatenate(points))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        means = np.add.reduceat(histograms, starts, axis=0) / np.asarray(counts, np.float64)[:, None, None]
        return describe(means)

    def close(self) -> None:
        """Nothing to release (the same interface as the model embedder's owners expect)."""
