"""PNG reports of the evaluation: CMC curves, ranked lists (KeyRe-ID Fig. 3), part heatmaps, attention (Fig. 4).

Images are OpenCV BGR uint8 arrays. The image grids are drawn with numpy and OpenCV, so their pixel geometry is
deterministic: :class:`RankedListFigure` carries the box of every tile, :func:`mosaic_layout` the cells of the
overlay grids. The CMC plot uses matplotlib's object API (a ``Figure`` on an Agg canvas, no pyplot state), so
everything here is safe in threads and needs no display. :func:`attention_maps` reads the [CLS] attention of the
model's global block per frame and of its part block per body part, mapped back from TCSS order to patches.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from timm.models.vision_transformer import Block

from keyreid_stream.keypoints.heatmaps import (
    CONFIDENCE_THRESHOLD,
    PART_JOINTS,
    PART_NAMES,
    render_part_heatmaps,
    render_patch_weights,
)
from keyreid_stream.model import parts as P
from keyreid_stream.model.keyreid import KeyReID

__all__ = ["MATCH_COLOUR", "MISMATCH_COLOUR", "QUERY_COLOUR", "AttentionMaps", "MosaicLayout", "RankedListFigure",
           "attention_maps", "denormalise_frames", "mosaic_layout", "render_part_overlays",
           "save_attention_overlays", "save_cmc_curves", "save_ranked_lists"]

log = logging.getLogger(__name__)

# BGR border colours of the ranked lists: the query's identity, another identity, the query tile.
MATCH_COLOUR, MISMATCH_COLOUR, QUERY_COLOUR = (0, 255, 0), (0, 0, 255), (255, 128, 0)
BACKGROUND, TEXT_COLOUR, FONT = (255, 255, 255), (0, 0, 0), cv2.FONT_HERSHEY_SIMPLEX
MARGIN, CAPTION_LINE = 8, 14  # ranked lists: space between tiles, height of one caption line
CELL_HEIGHT, LABEL_WIDTH, TITLE_HEIGHT, GAP = 128, 72, 20, 4  # overlay grids
SKELETON_COLOUR = (255, 255, 0)
PART_COLOURS = ((0, 215, 255), (0, 128, 255), (255, 0, 255), (255, 0, 0), (128, 0, 128), (0, 160, 0))
# COCO skeleton (0-based joint indices).
SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
            (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))
JOINT_PART = {joint: part for part, joints in enumerate(PART_JOINTS) for joint in joints}
CMC_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


# ----------------------------------------------------------------------------------------------- shared helpers


def _png_path(path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    if out.suffix.lower() != ".png":
        raise ValueError(f"the output must be a .png file, got {str(out)!r}")
    return out


def _write_png(image: np.ndarray, path: Path) -> Path:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode a PNG for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())
    log.debug("wrote %s (%dx%d)", path, image.shape[1], image.shape[0])
    return path


def _put_text(image: np.ndarray, text: str, x: int, baseline: int, max_width: int, scale: float = 0.4) -> None:
    """Draw ``text`` from ``(x, baseline)``, shrunk to fit ``max_width`` pixels."""
    width = cv2.getTextSize(text, FONT, scale, 1)[0][0]
    if width > max_width:
        scale *= max_width / width
    cv2.putText(image, text, (x, baseline), FONT, scale, TEXT_COLOUR, 1, cv2.LINE_AA)


def _check_frames(frames: np.ndarray, alpha: float) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise ValueError(f"frames must be a (T, H, W, 3) BGR uint8 array, got {frames.dtype} {frames.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return frames


def _colourise(values: np.ndarray, frame: np.ndarray, alpha: float) -> np.ndarray:
    """A map in [0, 1] of the frame's size, jet-coloured and blended on the frame."""
    heat = cv2.applyColorMap(np.round(np.clip(values, 0.0, 1.0) * 255).astype(np.uint8), cv2.COLORMAP_JET)
    return cv2.addWeighted(frame, 1.0 - alpha, heat, alpha, 0.0)


def denormalise_frames(
    frames: torch.Tensor, mean: Sequence[float] = (0.5, 0.5, 0.5), std: Sequence[float] = (0.5, 0.5, 0.5)
) -> np.ndarray:
    """Model input ``(T, 3, H, W)`` (RGB, normalised with ``mean``/``std``) -> ``(T, H, W, 3)`` BGR uint8."""
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must be a (T, 3, H, W) tensor, got {getattr(frames, 'shape', type(frames))}")
    if len(mean) != 3 or len(std) != 3 or min(abs(s) for s in std) == 0:
        raise ValueError(f"mean and std need 3 values each, std non-zero; got {mean} and {std}")
    values = frames.detach().float().cpu()
    values = values * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    rgb = (values.clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return np.ascontiguousarray(rgb[..., ::-1])


# ----------------------------------------------------------------------------------------------- CMC curves


def _cmc_label(name: str, cmc: np.ndarray, queries: tuple[int, int] | None = None) -> str:
    counted = "" if queries is None else f", {queries[0]} of {queries[1]} queries"
    return f"{name} (R1 {100.0 * float(cmc[0]):.1f}%{counted})"


def _check_curve(name: str, cmc: np.ndarray) -> np.ndarray:
    values = np.asarray(cmc, dtype=np.float64)
    if values.ndim != 1 or not values.size or not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
        raise ValueError(f"CMC curve {name!r} must be a non-empty 1D array of values in [0, 1] "
                         f"(cmc[k-1] = rank-k accuracy), got shape {values.shape}")
    return values


def save_cmc_curves(
    curves: Mapping[str, np.ndarray], path: str | os.PathLike[str], *, max_rank: int = 20, title: str = "",
    queries: Mapping[str, tuple[int, int]] | None = None,
) -> Path:
    """Plot named CMC curves (values in [0, 1], ``cmc[k-1]`` = rank-k) over ranks 1..max_rank, in percent.

    The legend reads ``name (R1 xx.x%)``, or ``name (R1 xx.x%, V of Q queries)`` for a curve that ``queries``
    gives ``(valid, total)`` query counts (a protocol that skips queries says so). A curve shorter than ``max_rank`` (a small gallery) is drawn as far as
    it goes. The PNG is 800x500 pixels.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    out = _png_path(path)
    if not curves or max_rank < 1:
        raise ValueError(f"need at least one CMC curve and max_rank >= 1, got {len(curves)} and {max_rank}")
    checked = {name: _check_curve(name, cmc)[:max_rank] for name, cmc in curves.items()}
    figure = Figure(figsize=(8, 5), dpi=100)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for index, (name, values) in enumerate(checked.items()):
        axes.plot(np.arange(1, values.size + 1), 100.0 * values, marker="o", markersize=3,
                  color=CMC_COLOURS[index % len(CMC_COLOURS)],
                  label=_cmc_label(name, values, (queries or {}).get(name)))
    lowest = 5.0 * np.floor(20.0 * min(float(values.min()) for values in checked.values())) - 5.0
    axes.set(xlabel="rank", ylabel="matching rate (%)", title=title, xlim=(0.5, max_rank + 0.5),
             ylim=(max(0.0, lowest), 101.0))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower right")
    canvas.draw()  # type: ignore[no-untyped-call]  # matplotlib's Agg canvas is not annotated
    rgba = canvas.buffer_rgba()  # type: ignore[no-untyped-call]
    return _write_png(cv2.cvtColor(np.asarray(rgba), cv2.COLOR_RGBA2BGR), out)


# ----------------------------------------------------------------------------------------------- ranked lists


@dataclass(frozen=True)
class RankedListFigure:
    """A saved ranked-list figure and its geometry.

    ``tiles[row]`` holds ``(x, y, w, h)`` of the query tile then of the ``top_k`` gallery tiles, border included
    (``border`` pixels wide; the image lies inside it). ``correct[row, r]``: gallery tile r+1 is the query's id.
    """

    path: Path
    tiles: list[list[tuple[int, int, int, int]]]
    correct: np.ndarray
    border: int


def _ranked_gallery(distmat: np.ndarray, query: int, ids: Sequence[np.ndarray], top_k: int) -> np.ndarray:
    """The query's first ``top_k`` gallery indices: stable sort by distance, same id AND camera removed."""
    q_pids, g_pids, q_camids, g_camids = ids
    order = np.argsort(distmat[query], kind="stable")
    kept = order[~((g_pids[order] == q_pids[query]) & (g_camids[order] == q_camids[query]))]
    if kept.size < top_k:
        raise ValueError(f"query {query} has {kept.size} gallery entries after removing its own camera's matches, "
                         f"fewer than top_k={top_k}")
    top: np.ndarray = kept[:top_k]
    return top


def _check_ranking_inputs(distmat: np.ndarray, ids: Sequence[np.ndarray], query_indices: Sequence[int],
                          top_k: int, tile_size: tuple[int, int]) -> None:
    q_pids, g_pids, q_camids, g_camids = ids
    if distmat.ndim != 2 or distmat.shape != (len(q_pids), len(g_pids)):
        raise ValueError(f"distmat must be (num_query, num_gallery) = ({len(q_pids)}, {len(g_pids)}), "
                         f"got {distmat.shape}")
    if len(q_camids) != len(q_pids) or len(g_camids) != len(g_pids):
        raise ValueError("camera ids must have one entry per query and per gallery tracklet")
    if np.isnan(distmat).any():
        raise ValueError("distmat contains NaN")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if len(query_indices) == 0:
        raise ValueError("query_indices is empty")
    bad = [int(i) for i in query_indices if not 0 <= int(i) < len(q_pids)]
    if bad:
        raise ValueError(f"query index {bad[0]} is out of range for {len(q_pids)} queries")
    if len(tile_size) != 2 or min(tile_size) < 16:
        raise ValueError(f"tile_size must be (height, width), each >= 16 pixels, got {tile_size}")


def _fit_image(image: np.ndarray, size: tuple[int, int], what: str) -> np.ndarray:
    """A loaded BGR image resized to ``size`` = (height, width)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
        raise ValueError(f"{what} must be an (H, W, 3) BGR uint8 image, got {image.dtype} {image.shape}")
    shrink = image.shape[0] > size[0] or image.shape[1] > size[1]
    return cv2.resize(image, (size[1], size[0]), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _tile_box(row: int, col: int, cell_w: int, cell_h: int) -> tuple[int, int, int, int]:
    """Column 0 is the query; the gallery starts 2 margins further right. Captions lie below each tile."""
    x = MARGIN + col * (cell_w + MARGIN) + (2 * MARGIN if col else 0)
    return x, MARGIN + row * (cell_h + 2 * CAPTION_LINE + MARGIN), cell_w, cell_h


def _draw_tile(canvas: np.ndarray, box: tuple[int, int, int, int], border: int, image: np.ndarray,
               colour: tuple[int, int, int], caption: tuple[str, str]) -> None:
    x, y, w, h = box
    canvas[y:y + h, x:x + w] = colour
    canvas[y + border:y + h - border, x + border:x + w - border] = image
    for line, text in enumerate(caption):
        _put_text(canvas, text, x, y + h + (line + 1) * CAPTION_LINE - 3, w)


def save_ranked_lists(
    distmat: np.ndarray, q_pids: Sequence[int] | np.ndarray, g_pids: Sequence[int] | np.ndarray,
    q_camids: Sequence[int] | np.ndarray, g_camids: Sequence[int] | np.ndarray, *, query_indices: Sequence[int],
    load_query: Callable[[int], np.ndarray], load_gallery: Callable[[int], np.ndarray], path: str | os.PathLike[str],
    top_k: int = 10, tile_size: tuple[int, int] = (128, 64),
) -> RankedListFigure:
    """Fig. 3: per query a row with the query image and its ``top_k`` gallery tracklets in rank order.

    The ranking follows the evaluation protocol: gallery entries of the query's id seen by the query's camera are
    removed, the rest sorted by distance (stable, ties by gallery index). ``load_query(i)`` / ``load_gallery(j)``
    return one representative BGR frame of a tracklet, stretched to ``tile_size`` = (height, width). Gallery
    tiles get a green border when they show the query's id, red otherwise; captions give rank, id, camera and
    distance. Raises ValueError when a query has fewer than ``top_k`` gallery entries left.
    """
    out = _png_path(path)
    distmat = np.asarray(distmat, dtype=np.float64)
    ids = [np.asarray(values) for values in (q_pids, g_pids, q_camids, g_camids)]
    _check_ranking_inputs(distmat, ids, query_indices, top_k, tile_size)
    queries = [int(i) for i in query_indices]
    ranked = np.stack([_ranked_gallery(distmat, query, ids, top_k) for query in queries])
    correct = ids[1][ranked] == ids[0][queries][:, None]
    size = (int(tile_size[0]), int(tile_size[1]))
    border = max(2, round(min(size) / 16))
    tiles = [[_tile_box(row, col, size[1] + 2 * border, size[0] + 2 * border) for col in range(top_k + 1)]
             for row in range(len(queries))]
    x, y, w, h = tiles[-1][-1]
    canvas = np.full((y + h + 2 * CAPTION_LINE + MARGIN, x + w + MARGIN, 3), BACKGROUND, dtype=np.uint8)
    gallery = functools.lru_cache(maxsize=None)(lambda j: _fit_image(load_gallery(j), size, f"load_gallery({j})"))
    for row, query in enumerate(queries):
        image = _fit_image(load_query(query), size, f"load_query({query})")
        _draw_tile(canvas, tiles[row][0], border, image, QUERY_COLOUR,
                   ("query", f"id {ids[0][query]} cam {ids[2][query]}"))
        for rank, j in enumerate(int(j) for j in ranked[row]):
            caption = (f"#{rank + 1} id {ids[1][j]}", f"c{ids[3][j]} d {distmat[query, j]:.3g}")
            colour = MATCH_COLOUR if correct[row, rank] else MISMATCH_COLOUR
            _draw_tile(canvas, tiles[row][rank + 1], border, gallery(j), colour, caption)
    return RankedListFigure(_write_png(canvas, out), tiles, correct, border)


# ----------------------------------------------------------------------------------------------- overlay grids


@dataclass(frozen=True)
class MosaicLayout:
    """Pixel geometry of an overlay grid: row labels on the left, column titles on top, equal cells."""

    rows: int
    cols: int
    cell_h: int
    cell_w: int

    def cell(self, row: int, col: int) -> tuple[int, int, int, int]:
        """``(x, y, w, h)`` of a cell."""
        x = LABEL_WIDTH + GAP + col * (self.cell_w + GAP)
        return x, TITLE_HEIGHT + GAP + row * (self.cell_h + GAP), self.cell_w, self.cell_h

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` of the whole image."""
        return (TITLE_HEIGHT + GAP + self.rows * (self.cell_h + GAP),
                LABEL_WIDTH + GAP + self.cols * (self.cell_w + GAP))


def mosaic_layout(frame_size: tuple[int, int], rows: int, cols: int) -> MosaicLayout:
    """The grid of frames of ``frame_size`` = (H, W): cells are the frames scaled to 128 pixels high."""
    height, width = frame_size
    return MosaicLayout(rows, cols, CELL_HEIGHT, max(1, round(width * CELL_HEIGHT / height)))


def _compose(cells: list[list[np.ndarray]], layout: MosaicLayout, titles: Sequence[str],
             labels: Sequence[str]) -> np.ndarray:
    canvas = np.full((*layout.shape, 3), BACKGROUND, dtype=np.uint8)
    for row, row_cells in enumerate(cells):
        for col, image in enumerate(row_cells):
            x, y, w, h = layout.cell(row, col)
            canvas[y:y + h, x:x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        _put_text(canvas, labels[row], GAP, layout.cell(row, 0)[1] + layout.cell_h // 2, LABEL_WIDTH - GAP)
    for col, title in enumerate(titles):
        _put_text(canvas, title, layout.cell(0, col)[0], TITLE_HEIGHT - 4, layout.cell_w)
    return canvas


def _draw_skeleton(frame: np.ndarray, keypoints: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The frame scaled to ``size`` = (h, w) with the visible joints and the bones between them."""
    height, width = frame.shape[:2]
    image = cv2.resize(frame, (size[1], size[0]), interpolation=cv2.INTER_LINEAR)
    scale = np.array([size[1] / width, size[0] / height])
    visible = np.isfinite(keypoints).all(axis=1) & (np.nan_to_num(keypoints[:, 2]) > CONFIDENCE_THRESHOLD)
    xy = (np.clip(np.nan_to_num(keypoints[:, :2]), -1e4, 1e4) + 0.5) * scale - 0.5  # cell pixels
    points = [(int(x), int(y)) for x, y in np.round(xy)]
    for a, b in SKELETON:
        if visible[a] and visible[b]:
            cv2.line(image, points[a], points[b], SKELETON_COLOUR, 1, cv2.LINE_AA)
    for joint in np.flatnonzero(visible):
        cv2.circle(image, points[joint], 3, PART_COLOURS[JOINT_PART[int(joint)]], -1, cv2.LINE_AA)
    return image


def render_part_overlays(
    frames: np.ndarray, keypoints: np.ndarray, path: str | os.PathLike[str], *, alpha: float = 0.5
) -> Path:
    """One row per frame: the frame with its skeleton, then each body part's heatmap blended on the frame.

    ``frames`` ``(T, H, W, 3)`` BGR uint8, ``keypoints`` ``(T, 17, 3)`` in pixels of those frames. Heatmaps come
    from :func:`~keyreid_stream.keypoints.heatmaps.render_part_heatmaps` at frame resolution, are not rescaled
    (a part without visible joints shows the colour of 0), jet-coloured and blended with weight ``alpha``.
    Columns are titled ``keypoints`` and the part names; cells follow :func:`mosaic_layout` with 7 columns.
    """
    out, frames, points = _png_path(path), _check_frames(frames, alpha), np.asarray(keypoints, dtype=np.float32)
    if points.shape != (frames.shape[0], 17, 3):
        raise ValueError(f"keypoints must be ({frames.shape[0]}, 17, 3), got {points.shape}")
    count, height, width = frames.shape[:3]
    heatmaps = render_part_heatmaps(torch.from_numpy(points), height, width).numpy()
    layout = mosaic_layout((height, width), count, 1 + len(PART_NAMES))
    cells = [
        [_draw_skeleton(frames[t], points[t], (layout.cell_h, layout.cell_w))]
        + [_colourise(heatmaps[t, part], frames[t], alpha) for part in range(len(PART_NAMES))]
        for t in range(count)
    ]
    canvas = _compose(cells, layout, ("keypoints", *PART_NAMES), [f"frame {t + 1}" for t in range(count)])
    return _write_png(canvas, out)


def _check_map(name: str, values: np.ndarray, count: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float32)
    if values.ndim == 2:
        values = np.broadcast_to(values, (count, *values.shape))
    if values.ndim != 3 or values.shape[0] != count or 0 in values.shape or not np.isfinite(values).all():
        raise ValueError(f"map {name!r} must be finite, (T={count}, gh, gw) or (gh, gw), got {values.shape}")
    return values


def save_attention_overlays(
    frames: np.ndarray, maps: Mapping[str, np.ndarray], path: str | os.PathLike[str], *, alpha: float = 0.5
) -> Path:
    """Fig. 4: the frames on the first row, then one row per named attention map blended on the frames.

    ``maps``: name -> ``(T, gh, gw)`` or ``(gh, gw)`` (the same map for every frame). Each map is scaled to
    [0, 1] over all its frames (min to max; a constant map becomes 0), upsampled bilinearly to the frame size,
    jet-coloured and blended with weight ``alpha``. Rows are labelled ``input`` and the names; cells follow
    :func:`mosaic_layout` with T columns.
    """
    out, frames = _png_path(path), _check_frames(frames, alpha)
    if not maps:
        raise ValueError("no attention maps to draw")
    count, height, width = frames.shape[:3]
    rows = [list(frames)]
    for name, values in maps.items():
        values = _check_map(name, values, count)
        low, span = float(values.min()), float(values.max() - values.min())
        scaled = (values - low) / span if span > 0 else np.zeros_like(values)
        rows.append([_colourise(cv2.resize(scaled[t], (width, height), interpolation=cv2.INTER_LINEAR),
                                frames[t], alpha) for t in range(count)])
    layout = mosaic_layout((height, width), len(rows), count)
    canvas = _compose(rows, layout, [f"t={t + 1}" for t in range(count)], ["input", *maps])
    return _write_png(canvas, out)


# ----------------------------------------------------------------------------------------------- attention


@dataclass(frozen=True)
class AttentionMaps:
    """[CLS] attention of the two branches on the patch grid ``(gh, gw)`` (float32, on the CPU).

    ``global_maps`` ``(B, T, gh, gw)``: per frame, the global block's [CLS]-to-patch attention (heads averaged).
    ``part_maps`` ``(B, K, gh, gw)``: per part (or stripe), the part block's [CLS]-to-row attention, each row put
    back on its patch (a stripe's map is 0 outside the stripe). ``part_weights`` ``(B, K, gh, gw)``: the KPS
    weights per patch in [0, 1] (part heatmaps pooled to patches, averaged over T; the official mode feeds
    ``2w - 1`` of these to its shuffled rows). Each is None when the model has no such branch or no keypoint parts.
    """

    global_maps: torch.Tensor | None
    part_maps: torch.Tensor | None
    part_weights: torch.Tensor | None


def _cls_attention(block: Block, tokens: torch.Tensor) -> torch.Tensor:
    """Softmax attention of token 0 over all tokens in a timm block, averaged over heads: ``(N, L)``."""
    attn: Any = block.attn  # a timm Attention (nn.Module.__getattr__ would type it Tensor | Module)
    batch, length, _ = tokens.shape
    qkv = attn.qkv(block.norm1(tokens)).reshape(batch, length, 3, attn.num_heads, attn.head_dim)
    query, key = attn.q_norm(qkv[:, :1, 0].transpose(1, 2)), attn.k_norm(qkv[:, :, 1].transpose(1, 2))
    probs: torch.Tensor = ((query @ key.transpose(-2, -1)).float() * attn.scale).softmax(dim=-1)  # (N, heads, 1, L)
    return probs[:, :, 0].mean(dim=1)


def _part_maps(model: KeyReID, tokens: torch.Tensor, batch: int, count: int,
               weights: torch.Tensor | None) -> torch.Tensor | None:
    """Part block [CLS] attention over each part's rows, scattered back to raster patch positions: ``(B, K, n)``."""
    if not model.use_local or model.compat == "official":
        return None
    cls_row, rows = P.temporal_rows(tokens, batch, count, official=False)
    perm = model.tcss_perm
    rows, parts, num_rows = rows[:, perm], model.num_parts, rows.shape[1]
    if weights is None:  # stripes (no KPS weights): stripe k holds the shuffled rows k*L .. (k+1)*L-1
        sequences = P.stripe_sequences(cls_row, rows, parts)
        positions = perm[: parts * (num_rows // parts)].reshape(parts, -1)
    else:
        sequences = P.kps_sequences(cls_row, rows, weights[:, perm])
        positions = perm.expand(parts, num_rows)
    probs = _cls_attention(model.part_block, sequences)[:, 1:].reshape(batch, parts, -1)
    maps = probs.new_zeros(batch, parts, num_rows)
    return maps.scatter_(2, positions.unsqueeze(0).expand(batch, -1, -1), probs)


def attention_maps(
    model: KeyReID, frames: torch.Tensor, keypoints: torch.Tensor | None = None,
    camera_ids: torch.Tensor | None = None,
) -> AttentionMaps:
    """The [CLS] attention maps of a :class:`KeyReID` in eval mode (see :class:`AttentionMaps`).

    Inputs as for the model's forward: frames ``(B, T, 3, H, W)`` normalised, keypoints ``(B, T, 17, 3)`` in
    pixels (needed by keypoint parts), camera ids ``(B,)``. Attention probabilities are recomputed from each
    block's qkv projection on ``norm1`` of its input (softmax per head, mean over heads); the [CLS] column is
    dropped, so a map sums to at most 1. The part rows are TCSS-shuffled, the inverse permutation puts them
    back on their patches. With ``compat="official"`` the part rows are the authors' raw reshape of the token
    sequence, not patches, so ``part_maps`` is None there (the global maps are still patch attention).
    """
    if not isinstance(model, KeyReID):
        raise ValueError(f"attention_maps needs a KeyReID model, got {type(model).__name__}")
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() first")
    with torch.no_grad():
        batch, count = model._check_inputs(frames, keypoints, camera_ids, None)
        frame_cams = None if camera_ids is None else camera_ids.repeat_interleave(count)
        tokens = model.backbone.forward_tokens(frames.flatten(0, 1), frame_cams)
        global_maps = _cls_attention(model.global_block, tokens)[:, 1:] if model.use_global else None
        weights = None
        if model.needs_keypoints:
            assert keypoints is not None  # _check_inputs requires them
            pooled = render_patch_weights(keypoints.to(tokens.dtype), *model.img_size, model.patch_size)
            weights = P.part_weights(pooled, official=False)
        part_maps = _part_maps(model, tokens, batch, count, weights)
    found = (global_maps, part_maps, None if weights is None else weights.transpose(1, 2))
    grid = model.backbone.grid_size
    return AttentionMaps(*(None if m is None else m.reshape(batch, -1, *grid).float().cpu() for m in found))
