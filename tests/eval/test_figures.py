"""PNG reports: CMC curves, ranked lists, part overlays, attention maps and their overlays (read back with cv2)."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
pytest.importorskip("matplotlib")

from keyreid_stream.eval import figures as F  # noqa: E402
from keyreid_stream.keypoints.heatmaps import PART_NAMES, render_part_heatmaps  # noqa: E402
from keyreid_stream.model import parts as P  # noqa: E402
from keyreid_stream.model.registry import build_model  # noqa: E402

H, W, T = 64, 32, 4
JET_LOW, JET_HIGH = (128, 0, 0), (0, 0, 128)  # BGR of the jet colour map at 0 and at 1


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


def _gray_frames(count: int = 2, value: int = 128) -> np.ndarray:
    return np.full((count, H, W, 3), value, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------- CMC


def test_cmc_plot_has_both_curves_and_is_thread_safe(tmp_path: Path) -> None:
    curves = {"KeyRe-ID": np.linspace(0.9, 1.0, 50), "VID-Trans": np.linspace(0.6, 0.95, 12)}  # one short curve
    with ThreadPoolExecutor(2) as pool:
        paths = list(pool.map(lambda i: F.save_cmc_curves(curves, tmp_path / f"cmc{i}.png", title="MARS"), (0, 1)))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    image = _read(paths[0])
    assert image.shape == (500, 800, 3)
    for colour in F.CMC_COLOURS[:2]:  # matplotlib hex -> BGR, each curve's colour is drawn
        bgr = np.array([int(colour[i:i + 2], 16) for i in (5, 3, 1)])
        assert (np.abs(image.astype(int) - bgr).sum(axis=-1) < 30).sum() > 100
    assert F._cmc_label("KeyRe-ID", curves["KeyRe-ID"]) == "KeyRe-ID (R1 90.0%)"


def test_cmc_legend_names_the_query_counts(tmp_path: Path) -> None:
    """A protocol that skips queries says how many it kept, in the legend (issue: 'official 78.25' on 10 of 35)."""
    curve = np.linspace(0.78, 1.0, 20)
    assert F._cmc_label("official protocol", curve, (10, 35)) == "official protocol (R1 78.0%, 10 of 35 queries)"
    with_counts = F.save_cmc_curves({"standard": curve, "official protocol": curve}, tmp_path / "a.png",
                                    queries={"standard": (35, 35), "official protocol": (10, 35)})
    without = F.save_cmc_curves({"standard": curve, "official protocol": curve}, tmp_path / "b.png")
    assert _read(with_counts).shape == _read(without).shape and not np.array_equal(_read(with_counts),
                                                                                  _read(without))


# ----------------------------------------------------------------------------------------------- ranked lists

# Query 0 (id 1, camera 0): gallery 0 is its own camera's match (skipped); galleries 2 and 3 tie at 0.3.
# Query 1 (id 2, camera 1): gallery 5 is skipped, gallery 3 (id 2, camera 0) is the correct rank 1.
Q_PIDS, Q_CAMS = [1, 2], [0, 1]
G_PIDS, G_CAMS = [1, 1, 3, 2, 4, 2], [0, 1, 1, 0, 0, 1]
DISTMAT = np.array([[0.0, 0.5, 0.3, 0.3, 0.9, 0.8],
                    [0.2, 0.7, 0.3, 0.1, 0.6, 0.05]])
EXPECTED = {0: [2, 3, 1], 1: [3, 0, 2]}  # query -> gallery indices at ranks 1..3


def _solid(index: int, offset: int) -> np.ndarray:
    """A tile whose colour encodes its index, at a size unlike the tiles (the figure resizes it)."""
    return np.full((100, 40, 3), (offset + 20 * index, 50, 90), dtype=np.uint8)


def _ranked(tmp_path: Path, **kwargs) -> F.RankedListFigure:
    args = dict(query_indices=[0, 1], load_query=lambda i: _solid(i, 200), load_gallery=lambda j: _solid(j, 10),
                path=tmp_path / "ranked.png", top_k=3, tile_size=(64, 32))
    return F.save_ranked_lists(DISTMAT, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, **{**args, **kwargs})


def test_ranked_lists_follow_the_protocol_and_colour_the_borders(tmp_path: Path) -> None:
    loaded: list[int] = []
    figure = _ranked(tmp_path, load_gallery=lambda j: loaded.append(j) or _solid(j, 10))
    image = _read(figure.path)
    assert figure.correct.tolist() == [[False, False, True], [True, False, False]]
    assert sorted(loaded) == sorted(set(loaded)) == [0, 1, 2, 3]  # each gallery tracklet loaded once
    last = figure.tiles[-1][-1]
    assert image.shape[1] == last[0] + last[2] + F.MARGIN and image.shape[0] > last[1] + last[3]
    for row, query in enumerate((0, 1)):
        assert len(figure.tiles[row]) == 4
        for col, (x, y, w, h) in enumerate(figure.tiles[row]):
            if col == 0:
                colour, content = F.QUERY_COLOUR, _solid(query, 200)[0, 0]
            else:
                colour = F.MATCH_COLOUR if figure.correct[row, col - 1] else F.MISMATCH_COLOUR
                content = _solid(EXPECTED[query][col - 1], 10)[0, 0]
            half = figure.border // 2
            for px, py in ((x + half, y + h // 2), (x + w - 1 - half, y + h // 2), (x + w // 2, y + half)):
                assert tuple(image[py, px]) == colour, (row, col)
            assert tuple(image[y + h // 2, x + w // 2]) == tuple(content), (row, col)


def test_ranked_lists_default_tiles_match_the_paper_layout(tmp_path: Path) -> None:
    distmat = np.tile(np.arange(12, dtype=float), (1, 1))
    figure = F.save_ranked_lists(distmat, [0], np.arange(12) % 3, [0], np.ones(12), query_indices=[0],
                                 load_query=lambda i: _solid(0, 0), load_gallery=lambda j: _solid(j, 0),
                                 path=tmp_path / "fig3.png")
    assert len(figure.tiles[0]) == 11 and figure.correct.shape == (1, 10)
    assert all((w, h) == (64 + 2 * figure.border, 128 + 2 * figure.border) for _, _, w, h in figure.tiles[0])
    assert figure.correct[0].tolist() == [j % 3 == 0 for j in range(10)]


# ----------------------------------------------------------------------------------------------- part overlays


def _pose() -> np.ndarray:
    """A standing person in a 64x32 frame: (17, 3) pixel keypoints, all visible."""
    xy = [(16, 6), (14, 5), (18, 5), (12, 6), (20, 6), (10, 14), (22, 14), (8, 22), (24, 22), (7, 30), (25, 30),
          (12, 32), (20, 32), (12, 44), (20, 44), (12, 56), (20, 56)]
    return np.array([(x, y, 0.9) for x, y in xy], dtype=np.float32)


def _near(image: np.ndarray, x: int, y: int, colour: tuple[int, int, int], radius: int = 1) -> bool:
    patch = image[y - radius:y + radius + 1, x - radius:x + radius + 1].reshape(-1, 3)
    return any(tuple(pixel) == colour for pixel in patch)


def test_part_overlays_show_skeleton_and_heatmaps_and_skip_missing_joints(tmp_path: Path) -> None:
    keypoints = np.stack([_pose(), _pose()])
    keypoints[1, [7, 9], :] = (2.0, 60.0, 0.0)  # frame 2: no left arm (joints placed far from anything)
    keypoints[1, 8, 2] = np.nan  # and a non-finite right elbow
    path = F.render_part_overlays(_gray_frames(), keypoints, tmp_path / "parts.png", alpha=1.0)
    image = _read(path)
    layout = F.mosaic_layout((H, W), 2, 7)
    assert image.shape[:2] == layout.shape and (layout.cell_h, layout.cell_w) == (128, 64)
    heatmaps = render_part_heatmaps(torch.from_numpy(keypoints), H, W).numpy()
    left_arm = 1 + PART_NAMES.index("left_arm")
    for frame in range(2):
        x, y, w, h = layout.cell(frame, 0)
        ankle = keypoints[frame, 15]
        assert _near(image, x + int(2 * ankle[0]), y + int(2 * ankle[1]), F.PART_COLOURS[4])
        wrist = _pose()[9]  # frame 2 has no left wrist, neither here nor where its keypoint was put
        assert _near(image, x + int(2 * wrist[0]), y + int(2 * wrist[1]), F.PART_COLOURS[2]) == (frame == 0)
        assert not _near(image, x + 4, y + 120, F.PART_COLOURS[2], radius=3)
        for part in range(6):
            cx, cy, _, _ = layout.cell(frame, 1 + part)
            cell = image[cy:cy + h, cx:cx + w].astype(int)
            if heatmaps[frame, part].max() == 0:
                assert (frame, 1 + part) == (1, left_arm) and (cell == JET_LOW).all()
            else:  # the hottest pixel of the part is red, not blue
                row, col = np.unravel_index(heatmaps[frame, part].argmax(), (H, W))
                hot = cell[2 * row, 2 * col]
                assert hot[2] > 100 and hot[0] < 100, (frame, part, hot)


# ----------------------------------------------------------------------------------------------- attention overlays


def test_attention_overlays_put_each_map_on_its_row(tmp_path: Path) -> None:
    peak = np.zeros((8, 4), dtype=np.float32)
    peak[0, 0] = 0.2  # any scale: maps are normalised
    maps = {"peak": peak, "random": np.random.default_rng(0).random((3, 8, 4)), "flat": np.ones((3, 8, 4))}
    path = F.save_attention_overlays(_gray_frames(3, 100), maps, tmp_path / "attention.png", alpha=1.0)
    image = _read(path)
    layout = F.mosaic_layout((H, W), 4, 3)
    assert image.shape[:2] == layout.shape
    for t in range(3):
        x, y, w, h = layout.cell(0, t)
        assert (image[y:y + h, x:x + w] == 100).all()  # the input row
        x, y, w, h = layout.cell(1, t)
        assert tuple(image[y, x]) == JET_HIGH and tuple(image[y + h - 1, x + w - 1]) == JET_LOW
        x, y, w, h = layout.cell(3, t)
        assert (image[y:y + h, x:x + w] == JET_LOW).all()  # a constant map is 0 everywhere


def test_denormalise_frames_inverts_the_normalisation() -> None:
    bgr = np.random.default_rng(1).integers(0, 256, (2, H, W, 3), dtype=np.uint8)
    rgb = torch.from_numpy(bgr[..., ::-1].copy()).permute(0, 3, 1, 2).float() / 255.0
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = (rgb - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert np.array_equal(F.denormalise_frames(normalised, mean, std), bgr)
    assert np.array_equal(F.denormalise_frames(rgb * 2 - 1), bgr)


# ----------------------------------------------------------------------------------------------- attention maps


def _model_inputs(batch: int = 2):
    gen = torch.Generator().manual_seed(3)
    frames = torch.randn(batch, T, 3, H, W, generator=gen)
    keypoints = torch.rand(batch, T, 17, 3, generator=gen) * torch.tensor([W - 1, H - 1, 1.0])
    return frames, keypoints, torch.arange(batch) % 3


def _attention_probs(block: torch.nn.Module, sequence: torch.Tensor) -> torch.Tensor:
    """Run timm's unfused attention path and capture its probabilities ``(N, heads, L, L)``."""
    captured: list[torch.Tensor] = []
    block.attn.fused_attn = False
    handle = block.attn.attn_drop.register_forward_hook(lambda module, args, output: captured.append(output))
    try:
        block(sequence)
    finally:
        handle.remove()
        block.attn.fused_attn = True
    return captured[0]


def _brute_force(model, frames, keypoints, cams, perm: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Global and part maps with the full timm blocks on sequences built one row at a time."""
    batch, gh, gw = frames.shape[0], H // 8, W // 8
    tokens = model.backbone.forward_tokens(frames.flatten(0, 1), cams.repeat_interleave(T))
    global_maps = _attention_probs(model.global_block, tokens)[:, :, 0, 1:].mean(1).reshape(batch, T, gh, gw)
    heat = render_part_heatmaps(keypoints, H, W)
    parts = model.num_parts
    part_maps = torch.zeros(batch, parts, gh * gw)
    for b in range(batch):
        frame_tokens = tokens[b * T:(b + 1) * T]
        cls = torch.cat(list(frame_tokens[:, 0]))
        for k in range(parts):
            if model.parts == "stripes":
                length = len(perm) // parts
                patches = perm[k * length:(k + 1) * length]
                weights = [1.0] * length
            else:
                patches = perm
                weights = [heat[b, :, k, (p // gw) * 8:(p // gw + 1) * 8, (p % gw) * 8:(p % gw + 1) * 8].mean()
                           for p in patches]
            rows = [torch.cat(list(frame_tokens[:, 1 + p])) * wt for p, wt in zip(patches, weights)]
            probs = _attention_probs(model.part_block, torch.stack([cls, *rows])[None])[0, :, 0, 1:].mean(0)
            for j, p in enumerate(patches):
                part_maps[b, k, p] = probs[j]
    return global_maps, part_maps.reshape(batch, parts, gh, gw)


TCSS = P.tcss_permutation(32, 5).tolist()


@pytest.mark.parametrize(("arch", "overrides", "perm"), [
    ("keyreid_test", {}, TCSS),
    ("vidtrans_test", {}, TCSS),
    ("keyreid_test", {"tcss": False}, list(range(32))),
])
def test_attention_maps_equal_a_brute_force_computation(arch: str, overrides: dict, perm: list[int]) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=0, num_cameras=3, **overrides).eval()
    frames, keypoints, cams = _model_inputs()
    maps = F.attention_maps(model, frames, keypoints, cams)
    with torch.no_grad():
        expected_global, expected_parts = _brute_force(model, frames, keypoints, cams, perm)
    assert torch.allclose(maps.global_maps, expected_global, atol=1e-6)
    assert torch.allclose(maps.part_maps, expected_parts, atol=1e-6)
    for values in (maps.global_maps, maps.part_maps):
        sums = values.flatten(2).sum(-1)
        assert (sums > 0).all() and (sums <= 1 + 1e-6).all()
    if model.parts == "keypoints":
        pooled = torch.nn.functional.avg_pool2d(render_part_heatmaps(keypoints, H, W).flatten(0, 1), 8)
        assert torch.allclose(maps.part_weights, pooled.reshape(2, T, 6, 8, 4).mean(1), atol=1e-6)
    else:
        assert maps.part_weights is None
    again = F.attention_maps(model, frames, keypoints, cams)
    assert torch.equal(again.global_maps, maps.global_maps) and torch.equal(again.part_maps, maps.part_maps)


@pytest.mark.parametrize(("overrides", "has_global", "has_parts"), [
    ({"compat": "official"}, True, False),
    ({"global_branch": False}, False, True),
    ({"local_branch": False}, True, False),
])
def test_attention_maps_of_official_mode_and_ablations(overrides: dict, has_global: bool, has_parts: bool) -> None:
    model = build_model("keyreid_test", num_classes=0, num_cameras=0, **overrides).eval()
    frames, keypoints, _ = _model_inputs(3)
    maps = F.attention_maps(model, frames, keypoints)
    assert (maps.global_maps is not None) == has_global and (maps.part_maps is not None) == has_parts
    if has_global:
        assert maps.global_maps.shape == (3, T, 8, 4)
    if has_parts:
        assert maps.part_maps.shape == (3, 6, 8, 4)
    assert (maps.part_weights is None) == (overrides == {"local_branch": False})
    if maps.part_weights is not None:
        assert maps.part_weights.shape == (3, 6, 8, 4) and 0 <= maps.part_weights.min() <= maps.part_weights.max() <= 1


def test_attention_maps_feed_the_overlays(tmp_path: Path) -> None:
    model = build_model("keyreid_test", num_classes=0, num_cameras=0).eval()
    frames, keypoints, _ = _model_inputs(1)
    maps = F.attention_maps(model, frames, keypoints)
    named = {"global": maps.global_maps[0].numpy(), **{n: m.numpy() for n, m in zip(PART_NAMES, maps.part_maps[0])}}
    path = F.save_attention_overlays(F.denormalise_frames(frames[0]), named, tmp_path / "fig4.png")
    assert _read(path).shape[:2] == F.mosaic_layout((H, W), 1 + len(named), T).shape


# ----------------------------------------------------------------------------------------------- bad inputs


def _tiny_model():
    return build_model("keyreid_test", num_classes=0, num_cameras=0).eval()


BAD_INPUTS: list[tuple[str, Callable[[Path], object], str]] = [
    ("top_k < 1", lambda tmp: _ranked(tmp, top_k=0), "top_k must be >= 1"),
    ("top_k > gallery", lambda tmp: _ranked(tmp, top_k=6), "fewer than top_k=6"),
    ("no queries", lambda tmp: _ranked(tmp, query_indices=[]), "query_indices is empty"),
    ("query out of range", lambda tmp: _ranked(tmp, query_indices=[0, 2]), "query index 2 is out of range"),
    ("tiny tiles", lambda tmp: _ranked(tmp, tile_size=(8, 4)), "tile_size"),
    ("bad gallery image", lambda tmp: _ranked(tmp, load_gallery=lambda j: np.zeros((9, 9))), r"load_gallery\(2\)"),
    ("distmat shape", lambda tmp: F.save_ranked_lists(DISTMAT.T, Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, query_indices=[0],
                                                      load_query=_solid, load_gallery=_solid, path=tmp / "x.png"),
     "distmat must be"),
    ("not a png", lambda tmp: _ranked(tmp, path=tmp / "ranked.jpg"), r"\.png"),
    ("frames not uint8", lambda tmp: F.render_part_overlays(_gray_frames().astype(float), np.zeros((2, 17, 3)),
                                                           tmp / "x.png"), r"\(T, H, W, 3\) BGR uint8"),
    ("frames 3D", lambda tmp: F.save_attention_overlays(_gray_frames()[..., 0], {"a": np.zeros((8, 4))},
                                                        tmp / "x.png"), r"\(T, H, W, 3\)"),
    ("keypoints shape", lambda tmp: F.render_part_overlays(_gray_frames(), np.zeros((2, 17, 2)), tmp / "x.png"),
     r"keypoints must be \(2, 17, 3\)"),
    ("alpha", lambda tmp: F.render_part_overlays(_gray_frames(), np.zeros((2, 17, 3)), tmp / "x.png", alpha=2.0),
     "alpha"),
    ("map frames", lambda tmp: F.save_attention_overlays(_gray_frames(), {"a": np.zeros((3, 8, 4))}, tmp / "x.png"),
     "map 'a'"),
    ("no maps", lambda tmp: F.save_attention_overlays(_gray_frames(), {}, tmp / "x.png"), "no attention maps"),
    ("cmc range", lambda tmp: F.save_cmc_curves({"a": np.array([50.0, 90.0])}, tmp / "x.png"), r"\[0, 1\]"),
    ("no curves", lambda tmp: F.save_cmc_curves({}, tmp / "x.png"), "at least one CMC curve"),
    ("max_rank", lambda tmp: F.save_cmc_curves({"a": np.ones(3)}, tmp / "x.png", max_rank=0), "max_rank >= 1"),
    ("training model", lambda tmp: F.attention_maps(_tiny_model().train(), *_model_inputs()[:2]), "model.eval()"),
    ("model frames", lambda tmp: F.attention_maps(_tiny_model(), _model_inputs()[0][:, :2], _model_inputs()[1]),
     "clips of 4 frames"),
    ("no keypoints", lambda tmp: F.attention_maps(_tiny_model(), _model_inputs()[0]), "KPS needs keypoints"),
    ("model frame size", lambda tmp: F.attention_maps(_tiny_model(), _model_inputs()[0][..., :16], _model_inputs()[1]),
     r"frames must be \(B, T, 3, 64, 32\)"),
    ("model keypoints", lambda tmp: F.attention_maps(_tiny_model(), _model_inputs()[0], _model_inputs()[1][..., :2]),
     "keypoints must be"),
    ("not a KeyReID", lambda tmp: F.attention_maps(torch.nn.Linear(2, 2), _model_inputs()[0]), "KeyReID"),
    ("denormalise shape", lambda tmp: F.denormalise_frames(torch.zeros(3, H, W)), r"\(T, 3, H, W\)"),
]


@pytest.mark.parametrize(("case", "call", "match"), BAD_INPUTS, ids=[case for case, _, _ in BAD_INPUTS])
def test_bad_inputs_get_one_clear_error(case: str, call, match: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=match):
        call(tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written on bad input"
