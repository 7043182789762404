"""KeyRe-ID / VID-Trans-ReID: shapes, TCSS, KPS alignment, flips, ablations, official parity (the contract every
architecture keeps -- gradients, determinism, losses, round trips -- is in test_contract.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from keyreid_stream.keypoints.heatmaps import PART_NAMES, flip_keypoints, render_part_heatmaps  # noqa: E402
from keyreid_stream.model import build_model, list_models, load_checkpoint  # noqa: E402
from keyreid_stream.model import parts as P  # noqa: E402
from keyreid_stream.model.backbone import cls_only_block  # noqa: E402
from keyreid_stream.model.keyreid import convert_official_state_dict  # noqa: E402

import authors_reference as authors  # noqa: E402  (tests/model/conftest.py puts it on the path)
from model_testing import randomise_batchnorm  # noqa: E402

H, W, T = 64, 32, 4


def _inputs(batch: int = 2, seed: int = 0, height: int = H, width: int = W):
    gen = torch.Generator().manual_seed(seed)
    frames = torch.randn(batch, T, 3, height, width, generator=gen)
    keypoints = torch.rand(batch, T, 17, 3, generator=gen) * torch.tensor([width - 1, height - 1, 1.0])
    return frames, keypoints, torch.arange(batch) % 3


# ----------------------------------------------------------------------------------------------- registry


def test_registry_lists_the_architectures_and_rejects_unknown_names() -> None:
    assert {"keyreid_vit_base", "vidtrans_vit_base", "keyreid_test", "vidtrans_test"} <= set(list_models())
    with pytest.raises(ValueError, match="known: .*keyreid_vit_base"):
        build_model("keyreid_vit_large", 10, 2)
    with pytest.raises(ValueError, match="unknown model option 'tcss_shfit'.*did you mean 'tcss_shift'"):
        build_model("keyreid_test", 10, 2, tcss_shfit=3)


# ----------------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(("overrides", "dim", "has_global", "has_parts", "num_parts"), [
    ({}, 32 + 6 * 128, True, True, 6),
    ({"compat": "official"}, 32 + 6 * 128, True, True, 6),
    ({"global_branch": False}, 6 * 128, False, True, 6),
    ({"local_branch": False}, 32, True, False, 0),
    ({"tcss": False}, 32 + 6 * 128, True, True, 6),
    ({"parts": "stripes", "num_parts": 4}, 32 + 4 * 128, True, True, 4),
])
def test_tiny_shapes_in_train_and_eval(overrides, dim, has_global, has_parts, num_parts) -> None:
    model = build_model("keyreid_test", 7, 3, **overrides)
    frames, keypoints, cams = _inputs(3)
    out = model.train()(frames, keypoints, cams)
    assert out.descriptor.shape == (3, dim) == (3, model.descriptor_dim)
    assert (out.global_logits is not None) == has_global and (out.attention_scores is not None) == has_global
    if has_global:
        assert out.global_logits.shape == (3, 7) and out.global_feat.shape == (3, 32)
        assert out.attention_scores.shape == (3, T) and bool((out.attention_scores >= 0).all())
    if has_parts:
        assert out.part_logits.shape == (3, num_parts, 7) and out.part_feats.shape == (3, num_parts, 128)
    else:
        assert out.part_logits is None and out.part_feats is None
    assert model.eval().embed(frames, keypoints, cams).shape == (3, dim)


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "compat", "dim"), [
    ("keyreid_vit_base", "paper", 19200), ("keyreid_vit_base", "official", 19200),
    ("vidtrans_vit_base", "paper", 768 + 4 * 3072),
])
def test_vit_base_shapes(arch: str, compat: str, dim: int) -> None:
    model = build_model(arch, 10, 6, compat=compat)
    frames, keypoints, cams = _inputs(2, height=256, width=128)
    with torch.no_grad():
        out = model.train()(frames, keypoints, cams)
        assert out.descriptor.shape == (2, dim)
        assert out.global_logits.shape == (2, 10) and out.part_logits.shape[::2] == (2, 10)
        assert model.eval().embed(frames[:1], keypoints[:1], cams[:1]).shape == (1, dim)


def test_heatmaps_keyword_equals_keypoints() -> None:
    model = build_model("keyreid_test", 5, 3).eval()
    frames, keypoints, cams = _inputs(2)
    with torch.no_grad():
        from_keypoints = model.embed(frames, keypoints, cams)
        from_heatmaps = model.embed(frames, camera_ids=cams, heatmaps=render_part_heatmaps(keypoints, H, W))
    assert torch.allclose(from_keypoints, from_heatmaps, atol=1e-6)


@pytest.mark.parametrize(("change", "match"), [
    (lambda f, k, c: (f, None, c), "KPS needs keypoints"),
    (lambda f, k, c: (f, k, c + 3), "camera id out of range"),
    (lambda f, k, c: (f, k, c.float()), "integer"),
])  # the errors every architecture gives are in test_contract.py
def test_bad_inputs_get_clear_errors(change, match: str) -> None:
    model = build_model("keyreid_test", 5, 3).eval()
    with pytest.raises(ValueError, match=match), torch.no_grad():
        model.embed(*change(*_inputs(2)))


@pytest.mark.parametrize(("overrides", "match"), [
    ({"parts": "keypoints", "num_parts": 4}, "Table 1"),
    ({"global_branch": False, "local_branch": False}, "at least one"),
    ({"compat": "official", "tcss": False}, "always uses TCSS"),
    ({"compat": "pytorch"}, "compat"),
    ({"camera_mix": 1.0}, "lambda"),
])
def test_bad_options_get_clear_errors(overrides: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("keyreid_test", 5, 3, **overrides)


# ----------------------------------------------------------------------------------------------- TCSS and KPS


@pytest.mark.parametrize(("num_patches", "shift"), [(128, 5), (32, 5), (31, 5), (8, 1), (2, 2), (129, 129)])
def test_tcss_is_a_permutation_with_an_inverse(num_patches: int, shift: int) -> None:
    perm = P.tcss_permutation(num_patches, shift)
    assert sorted(perm.tolist()) == list(range(num_patches))
    rows = torch.randn(2, num_patches, 3)
    assert torch.equal(rows[:, perm][:, torch.argsort(perm)], rows)
    if shift > 1 and num_patches > 2:
        assert not torch.equal(perm, torch.arange(num_patches))


def test_tcss_matches_the_shift_and_shuffle_of_vid_trans() -> None:
    assert P.tcss_permutation(8, 3).tolist() == [2, 6, 3, 7, 4, 0, 5, 1]
    # The authors pad an odd count with a copy of the second-to-last row.
    assert P.tcss_permutation(5, 2, official=True).tolist() == [1, 4, 2, 0, 3, 4]


def test_paper_kps_puts_each_weight_on_its_own_patch() -> None:
    model = build_model("keyreid_test", 5, 3)
    batch, n, dim = 2, model.num_patches, 32
    patch_value = torch.arange(1, n + 1, dtype=torch.float32)  # token of patch i holds i + 1 (all frames)
    tokens = torch.ones(batch * T, 1 + n, dim)
    tokens[:, 1:] *= patch_value[None, :, None]
    weights = torch.rand(batch, n, 6) + 0.5  # raster order
    cls_row, rows = P.temporal_rows(tokens, batch, T, official=False)
    perm = model.tcss_perm
    sequences = P.kps_sequences(cls_row, rows[:, perm], weights[:, perm]).reshape(batch, 6, 1 + n, T * dim)
    for k in range(6):
        for r in range(n):
            patch = int(perm[r])
            expected = patch_value[patch] * weights[:, patch, k]
            assert torch.allclose(sequences[:, k, 1 + r], expected[:, None].expand(batch, T * dim))


def _flip_invariant_model(compat: str) -> torch.nn.Module:
    """No positional/camera embedding: the backbone then commutes with any reordering of the patches."""
    torch.manual_seed(0)
    model = build_model("keyreid_test", 5, 0, compat=compat).eval()
    randomise_batchnorm(model)
    with torch.no_grad():
        model.backbone.pos_embed.zero_()
    return model


def _patchwise_constant_frames(batch: int) -> torch.Tensor:
    cells = torch.randn(batch, T, 3, H // 8, W // 8, generator=torch.Generator().manual_seed(5))
    return cells.repeat_interleave(8, dim=-2).repeat_interleave(8, dim=-1)


def _features_of_a_flip(compat: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Part features of patch-constant clips, and of the same clips flipped (frames and keypoints), with the
    left/right parts of the flipped ones swapped back."""
    model = _flip_invariant_model(compat)
    frames = _patchwise_constant_frames(2)
    keypoints = torch.rand(2, T, 17, 3, generator=torch.Generator().manual_seed(6)) * torch.tensor([W - 1, H - 1, 1])
    with torch.no_grad():
        original = model(frames, keypoints).part_feats
        flipped = model(frames.flip(-1), flip_keypoints(keypoints, W)).part_feats
    swap = [PART_NAMES.index(n) for n in ("head", "torso", "right_arm", "left_arm", "right_leg", "left_leg")]
    return original, flipped[:, swap]


def test_horizontal_flip_swaps_left_and_right_part_features() -> None:
    original, flipped_back = _features_of_a_flip("paper")
    assert torch.allclose(flipped_back, original, atol=1e-4)
    assert not torch.allclose(original[:, 2], original[:, 3], atol=1e-3)  # left and right really differ


def test_official_mode_does_not_keep_weights_on_their_tokens() -> None:
    # The same experiment breaks with the authors' forward: its raw view mixes frames and tokens, and its
    # raster-order weights land on shuffled rows (REFERENCE bugs 1 and 2).
    original, flipped_back = _features_of_a_flip("official")
    assert not torch.allclose(flipped_back, original, atol=1e-3)


@pytest.mark.parametrize("training", [False, True])
def test_cls_only_block_equals_the_full_block(training: bool) -> None:
    model = build_model("keyreid_test", 5, 3)
    block = model.part_block.train(training)
    tokens = torch.randn(6, 33, 128, requires_grad=True)
    fast = cls_only_block(block, tokens)
    full = block(tokens)[:, 0]
    assert torch.allclose(fast, full, atol=1e-5)
    grad_fast, = torch.autograd.grad(fast.square().sum(), tokens)
    grad_full, = torch.autograd.grad(full.square().sum(), tokens)
    assert torch.allclose(grad_fast, grad_full, atol=1e-5)


# ----------------------------------------------------------------------------------------------- official parity


@pytest.mark.parametrize(("reference_class", "arch"), [
    (authors.AuthorsKeyReID, "keyreid_test"), (authors.AuthorsVidTrans, "vidtrans_test"),
])
def test_authors_checkpoint_loads_and_reproduces_their_outputs(reference_class, arch, tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = reference_class(num_classes=5, num_cameras=3, **authors.tiny_kwargs())
    randomise_batchnorm(reference)
    path = tmp_path / "authors.pth"
    torch.save({"state_dict": reference.state_dict()}, path)
    model = build_model(arch, 5, 3, compat="official")
    report = load_checkpoint(model, path)  # kind detected from the key names
    assert report.kind == "official" and not report.left_at_init
    assert set(report.dropped) == {k for k in reference.state_dict() if k.startswith(
        ("base.blocks.2.", "base.norm.", "base.fc.", "block1."))}
    frames, keypoints, cams = _inputs(2)
    heatmaps = render_part_heatmaps(keypoints, H, W) * 2 - 1  # the authors' loader normalisation
    args = (frames, heatmaps, cams.repeat_interleave(T)) if arch == "keyreid_test" else (frames, cams.repeat_interleave(T))
    with torch.no_grad():
        expected = reference.eval()(*args)
        assert torch.allclose(model.eval().embed(frames, keypoints, cams), expected, atol=1e-5)
        logits, feats, scores = reference.train()(*args)
        out = model.train()(frames, keypoints, cams)
    assert torch.allclose(out.global_logits, logits[0], atol=1e-5)
    assert torch.allclose(out.part_logits, torch.stack(logits[1:], dim=1), atol=1e-5)
    assert torch.allclose(out.global_feat, feats[0], atol=1e-5)
    assert torch.allclose(out.part_feats, torch.stack(feats[1:], dim=1), atol=1e-5)
    assert torch.allclose(out.attention_scores, scores, atol=1e-5)


@pytest.mark.slow
def test_authors_vit_base_keys_map_one_to_one() -> None:
    reference = authors.AuthorsKeyReID(num_classes=625, num_cameras=6)
    converted, dropped = convert_official_state_dict(reference.state_dict(), depth=12)
    del reference
    model = build_model("keyreid_vit_base", 625, 6, compat="official")
    own = model.state_dict()
    assert set(converted) == set(own)
    assert all(converted[k].shape == own[k].shape for k in own)
    assert len(dropped) == 12 + 2 + 2 + 12  # base.blocks.11, base.norm, base.fc, block1 (twin of b2.0)
    assert model.descriptor_dim == 19200


@pytest.mark.gpu
@pytest.mark.parametrize("arch", ["keyreid_test", "vidtrans_test"])
def test_gpu_matches_cpu_and_runs_in_bf16(arch: str) -> None:
    model = build_model(arch, 5, 3).eval()
    randomise_batchnorm(model)
    frames, keypoints, cams = _inputs(3)
    with torch.no_grad():
        expected = model.embed(frames, keypoints, cams)
        model.cuda()
        on_gpu = model.embed(frames.cuda(), keypoints.cuda(), cams.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            in_bf16 = model.embed(frames.cuda(), keypoints.cuda(), cams.cuda())
    assert torch.allclose(on_gpu.cpu(), expected, atol=1e-4)
    assert torch.isfinite(in_bf16).all() and torch.allclose(in_bf16.float().cpu(), expected, atol=0.1, rtol=0.05)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("weight_range", [(0.0, 1.0), (-1.0, 1.0), (0.0, 1e-4)])
def test_weighted_cls_block_equals_the_per_part_sequences(training: bool, weight_range) -> None:
    from keyreid_stream.model.backbone import weighted_cls_block

    torch.manual_seed(1)
    block = build_model("keyreid_test", 5, 3).part_block.train(training)
    with torch.no_grad():  # non-trivial norm parameters
        block.norm1.weight.uniform_(0.5, 1.5)
        block.norm1.bias.normal_()
    cls_row = torch.randn(3, 1, 128, requires_grad=True)
    rows = torch.randn(3, 32, 128, requires_grad=True)
    low, high = weight_range
    weights = (torch.rand(3, 32, 6) * (high - low) + low).requires_grad_()
    weights.data[:, :4] = 0.0  # patches without any keypoint
    fast = weighted_cls_block(block, cls_row, rows, weights)
    slow = cls_only_block(block, P.kps_sequences(cls_row, rows, weights)).reshape(3, 6, 128)
    assert torch.allclose(fast, slow, atol=1e-4)
    probe = torch.randn_like(fast)
    grads_fast = torch.autograd.grad((fast * probe).sum(), (cls_row, rows, weights, block.attn.qkv.weight))
    grads_slow = torch.autograd.grad((slow * probe).sum(), (cls_row, rows, weights, block.attn.qkv.weight))
    for fast_grad, slow_grad in zip(grads_fast, grads_slow):
        assert torch.allclose(fast_grad, slow_grad, atol=1e-3, rtol=1e-3)
