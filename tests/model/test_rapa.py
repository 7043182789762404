"""RAPA: reference-frame selection, the ROI split of the reference frame, ROI pooling, relation attention (eqs.
3-7), the inter-frame term (eq. 8), flips, ablation switches, ImageNet ResNet weights. The contract every
architecture keeps (shapes, gradients, determinism, losses, round trips) is in test_contract.py."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
timm = pytest.importorskip("timm")

from keyreid_stream.keypoints.heatmaps import flip_keypoints  # noqa: E402
from keyreid_stream.keypoints.pose import PRIOR_LAYOUT  # noqa: E402
from keyreid_stream.keypoints.regions import cell_masks, region_boxes  # noqa: E402
from keyreid_stream.model import CheckpointError, build_model, list_models, load_checkpoint  # noqa: E402
from keyreid_stream.model.rapa import (  # noqa: E402
    RelationAttention,
    inter_frame_regularisation,
    reference_weights,
    roi_pool,
)

from model_testing import randomise_batchnorm  # noqa: E402  (conftest.py puts it on the path)

H, W, T, STRIDE = 64, 32, 4, 8  # rapa_test: 64x32 input, an 8x4 map


def _model(seed: int = 0, **options: object) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("rapa_test", 5, 0, **options)


def _pedestrians(batch: int, seed: int) -> torch.Tensor:
    """The average pedestrian with a few pixels of noise per frame, every joint visible: ``(B, T, 17, 3)``."""
    gen = torch.Generator().manual_seed(seed)
    xy = torch.from_numpy(PRIOR_LAYOUT) * torch.tensor([W - 1.0, H - 1.0])
    xy = xy + torch.randn(batch, T, 17, 2, generator=gen) * 2.0
    return torch.cat([xy, torch.ones(batch, T, 17, 1)], dim=-1)


def _frames(batch: int, seed: int) -> torch.Tensor:
    return torch.randn(batch, T, 3, H, W, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------- registry


def test_registered_variants_and_their_sizes() -> None:
    assert {"rapa_resnet50", "rapa_test"} <= set(list_models())
    model = _model()
    assert model.grid == (8, 4) and model.backbone.stride == STRIDE and model.num_parts == 3
    assert model.descriptor_dim == 4 * 32 and model.needs_keypoints


@pytest.mark.slow
def test_resnet50_variant_matches_the_paper_sizes() -> None:
    model = build_model("rapa_resnet50", 625, 0)
    assert model.backbone.out_channels == 2048 and model.backbone.stride == 16 and model.grid == (16, 8)
    assert model.descriptor_dim == 4 * 1024  # [f_global, f_head, f_body, f_legs], C/s with s = 2
    assert (model.feature_dims.global_dim, model.feature_dims.part_dim) == (1024, 1024)
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 4, 3, 256, 128), torch.from_numpy(PRIOR_LAYOUT).new_zeros(1, 4, 17, 3))
    assert out.descriptor.shape == (1, 4096) and out.part_feats.shape == (1, 3, 1024)
    assert build_model("rapa_resnet50", 0, 0, last_stride=2).grid == (8, 4)


@pytest.mark.parametrize(("options", "cameras", "match"), [
    ({}, 6, "no camera embedding"),
    ({"global_branch": False, "local_branch": False}, 0, "at least one"),
    ({"part_split": "skeleton"}, 0, "part_split"),
    ({"reference": "best"}, 0, "reference"),
    ({"img_size": (60, 32)}, 0, "multiple of the backbone stride"),
    ({"img_size": (16, 32)}, 0, "at least 3 rows"),
    ({"block": "bottle"}, 0, "block"),
    ({"last_stride": 4}, 0, "last_stride"),
    ({"compat": "official"}, 0, "unknown model option 'compat'"),
])
def test_bad_options_get_clear_errors(options: dict, cameras: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_model("rapa_test", 5, cameras, **options)


@pytest.mark.parametrize(("keypoints", "heatmaps", "match"), [
    (None, None, "need keypoints"),
    ("ok", "ok", "not heatmaps"),
])
def test_pose_parts_need_keypoints_and_only_keypoints(keypoints, heatmaps, match: str) -> None:
    model = _model().eval()
    points = _pedestrians(2, 0) if keypoints else None
    maps = torch.rand(2, T, 6, H, W) if heatmaps else None
    with pytest.raises(ValueError, match=match), torch.no_grad():
        model.embed(_frames(2, 0), points, heatmaps=maps)


def test_stripes_need_no_keypoints() -> None:
    model = _model(part_split="stripes").eval()
    assert not model.needs_keypoints
    with torch.no_grad():
        assert model.embed(_frames(2, 0)).shape == (2, model.descriptor_dim)


# ----------------------------------------------------------------------------------------------- reference frame


@pytest.mark.parametrize(("scores", "chosen"), [
    ([[0.1, 0.9, 0.3, 0.2]], [1]),
    ([[0.8, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4]], [0, 3]),
    ([[0.5, 0.7, 0.7, 0.1]], [1]),  # ties: the first best frame
])
def test_reference_weights_are_the_one_hot_arg_max(scores: list, chosen: list) -> None:
    quality = torch.tensor(scores)
    weights = reference_weights(quality)
    assert torch.equal(weights, torch.nn.functional.one_hot(torch.tensor(chosen), 4).float())


def test_the_quality_scores_learn_through_the_straight_through_estimator() -> None:
    quality = torch.tensor([[0.2, 0.6, 0.4]], requires_grad=True)
    weights = reference_weights(quality)
    assert torch.equal(weights.detach(), torch.tensor([[0.0, 1.0, 0.0]]))  # the forward is the hard choice
    upstream = torch.tensor([[1.0, -2.0, 3.0]])
    (weights * upstream).sum().backward()
    assert torch.equal(quality.grad, upstream)  # the backward is that of the scores


def _quality_reads_channel(model: torch.nn.Module, channel: int) -> None:
    """q_t = sigmoid(mean of channel ``channel`` of frame t's map): a known quality score."""
    with torch.no_grad():
        model.quality.conv.weight.zero_()
        model.quality.conv.weight[0, channel] = 1.0
        norm = model.quality.norm
        norm.running_mean.zero_(), norm.running_var.fill_(1.0), norm.weight.fill_(1.0), norm.bias.zero_()


@pytest.mark.parametrize("training", [False, True])
def test_the_reference_is_the_best_frame_and_its_keypoints_split_the_body(training: bool) -> None:
    model = _model()
    _quality_reads_channel(model, channel=3)
    model.train(training)
    frames, keypoints = _frames(6, 1), _pedestrians(6, 2)
    with torch.no_grad():
        pooled = model.forward_features(frames).mean(dim=(-2, -1))
        weights, boxes = model.reference(pooled, keypoints)
    best = pooled[..., 3].argmax(dim=1)
    assert len(set(best.tolist())) > 1, "the test needs clips whose best frames differ"
    assert torch.equal(weights.argmax(dim=1), best)
    expected = region_boxes(keypoints[torch.arange(6), best], H, W, margin=model.roi_margin,
                            min_size=(STRIDE, STRIDE))
    assert torch.equal(boxes, expected)


def test_without_quality_evaluation_the_first_frame_is_the_reference() -> None:
    model = _model(reference="first").eval()
    assert model.quality is None
    frames, keypoints = _frames(3, 1), _pedestrians(3, 2)
    with torch.no_grad():
        weights, boxes = model.reference(model.forward_features(frames).mean(dim=(-2, -1)), keypoints)
    assert torch.equal(weights.argmax(dim=1), torch.zeros(3, dtype=torch.long))
    assert torch.equal(boxes, region_boxes(keypoints[:, 0], H, W, min_size=(STRIDE, STRIDE)))


def test_only_the_reference_frames_keypoints_matter() -> None:
    model = _model().eval()
    randomise_batchnorm(model)
    frames, keypoints = _frames(4, 3), _pedestrians(4, 4)
    with torch.no_grad():
        chosen, _ = model.reference(model.forward_features(frames).mean(dim=(-2, -1)), keypoints)
        chosen = chosen.argmax(dim=1)
        before = model.embed(frames, keypoints)
        others = keypoints.clone()
        others[..., 1] += 16.0  # every frame's people moved down two cells ...
        others[torch.arange(4), chosen] = keypoints[torch.arange(4), chosen]  # ... except the reference's
        assert torch.equal(model.embed(frames, others), before)
        moved = keypoints.clone()
        moved[torch.arange(4), chosen, :, 1] += 16.0
        after = model.embed(frames, moved)
    assert not torch.allclose(after[:, 32:], before[:, 32:])  # the parts changed ...
    assert torch.equal(after[:, :32], before[:, :32])  # ... the global feature did not


# ----------------------------------------------------------------------------------------------- RFL and PFD


def test_roi_pooling_takes_max_and_mean_inside_each_mask() -> None:
    gen = torch.Generator().manual_seed(0)
    maps = torch.randn(2, 5, 8, 4, generator=gen)
    boxes = region_boxes(_pedestrians(2, 1)[:, 0], H, W, min_size=(STRIDE, STRIDE))
    masks = cell_masks(boxes, (8, 4), (STRIDE, STRIDE))
    peak, mean = roi_pool(maps, masks)
    for b in range(2):
        for r in range(3):
            inside = maps[b][:, masks[b, r]]  # (C, cells)
            assert torch.equal(peak[b, r], inside.amax(dim=1))
            assert torch.allclose(mean[b, r], inside.mean(dim=1), atol=1e-6)


@pytest.mark.parametrize("temporal", [True, False])
def test_relation_attention_follows_equations_3_to_7(temporal: bool) -> None:
    torch.manual_seed(0)
    module = RelationAttention(dim=4, num_references=2, temporal=temporal).eval()
    randomise_batchnorm(module)
    maps, refs = torch.rand(1, 3, 4, 2, 2), torch.rand(1, 2, 4)
    frame_feats, clip = module(maps, refs)
    norm = module.norm
    for r in range(2):
        channels = slice(4 * r, 4 * r + 4)
        mean, var = norm.running_mean[channels], norm.running_var[channels]
        scale, shift = norm.weight[channels], norm.bias[channels]
        expected_frames, scores = [], []
        for t in range(3):
            relation = (maps[0, t] - refs[0, r][:, None, None]) ** 2  # eq. 3
            normed = (relation - mean[:, None, None]) / torch.sqrt(var[:, None, None] + norm.eps)
            attention = 1 - torch.sigmoid(normed * scale[:, None, None] + shift[:, None, None])  # eq. 4
            expected_frames.append((maps[0, t] * attention).amax(dim=(1, 2)))  # eq. 5
            scores.append(attention.mean(dim=(1, 2)))  # eq. 6
        stacked = torch.stack(expected_frames)
        expected_clip = (stacked * torch.stack(scores)).sum(0) if temporal else stacked.mean(0)  # eq. 7
        assert torch.allclose(frame_feats[0, :, r], stacked, atol=1e-6)
        assert torch.allclose(clip[0, r], expected_clip, atol=1e-6)


def test_inter_frame_term_is_equation_8() -> None:
    feats = torch.randn(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    expected = [sum(float(((feats[b, i, r] - feats[b, j, r]) ** 2).sum())
                    for i in range(3) for j in range(3) if i != j for r in range(6)) for b in range(2)]
    assert inter_frame_regularisation(feats).tolist() == pytest.approx(expected, rel=1e-5)


def test_identical_frames_have_no_inter_frame_penalty() -> None:
    model = _model().eval()
    still = _frames(2, 5)[:, :1].expand(-1, T, -1, -1, -1).contiguous()
    with torch.no_grad():
        out = model(still, _pedestrians(2, 6))
        moving = model(_frames(2, 5), _pedestrians(2, 6))
    assert torch.equal(out.inter_frame, torch.zeros(2)) and bool((moving.inter_frame > 0).all())


def test_a_horizontal_flip_changes_nothing_after_the_backbone() -> None:
    """Pooling, ROI boxes from mirrored keypoints, relation attention and GMP are all mirror-symmetric: the heads
    give the same features for the mirrored maps of a clip and its flipped keypoints (head/body/legs have no
    left and right to swap)."""
    model = _model().eval()
    randomise_batchnorm(model)
    maps = torch.rand(3, T, 64, 8, 4, generator=torch.Generator().manual_seed(7))
    keypoints = _pedestrians(3, 8)
    with torch.no_grad():
        original = model.forward_head(maps, keypoints)
        flipped = model.forward_head(maps.flip(-1), flip_keypoints(keypoints, W))
        shifted = model.forward_head(maps.roll(1, dims=-2), keypoints)  # a real change does show
    for name in ("descriptor", "global_feat", "part_feats", "inter_frame"):
        assert torch.allclose(getattr(flipped, name), getattr(original, name), atol=1e-5, rtol=1e-5), name
    assert not torch.allclose(shifted.part_feats, original.part_feats, atol=1e-3)


def test_part_attention_maps_for_figures() -> None:
    model = _model().eval()
    maps = model.part_attention(_frames(2, 0), _pedestrians(2, 1))
    assert maps.shape == (2, T, 3, 8, 4) and bool(((maps > 0) & (maps < 1)).all())
    with pytest.raises(ValueError, match="no local branch"):
        _model(local_branch=False, global_reduction=False).eval().part_attention(_frames(1, 0))


# ----------------------------------------------------------------------------------------------- weights


def _imagenet_resnet() -> torch.nn.Module:
    """A timm ResNet of rapa_test's shape with an ImageNet head (what a downloaded file holds, in timm's and
    torchvision's key names)."""
    from timm.models.resnet import BasicBlock, ResNet

    torch.manual_seed(3)
    return ResNet(block=BasicBlock, layers=(1, 1, 1, 1), channels=(8, 16, 32, 64), stem_width=8, num_classes=10)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_resnet_weights_fill_the_backbone(suffix: str, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    source = _imagenet_resnet().state_dict()
    path = tmp_path / f"resnet{suffix}"
    if suffix == ".pth":
        torch.save({f"module.{k}": v for k, v in source.items()}, path)  # DataParallel prefix too
    else:
        save_file({k: v.contiguous() for k, v in source.items()}, str(path))
    model = _model()
    report = load_checkpoint(model, path)
    assert report.kind == "imagenet" and set(report.dropped) == {"fc.weight", "fc.bias"}
    assert "relation.norm.weight" in report.left_at_init and "global_head.classifier.weight" in report.left_at_init
    own = model.state_dict()
    assert all(torch.equal(own[f"backbone.{k}"], v) for k, v in source.items() if not k.startswith("fc."))
    again = build_model("rapa_test", 5, 0, pretrained=path)
    assert torch.equal(again.state_dict()["backbone.conv1.weight"], source["conv1.weight"])


def test_foreign_checkpoints_are_refused_with_a_reason(tmp_path: Path) -> None:
    vit = timm.models.vision_transformer.VisionTransformer(img_size=64, patch_size=8, embed_dim=32, depth=2,
                                                           num_heads=2, num_classes=10)
    torch.save(vit.state_dict(), tmp_path / "vit.pth")
    with pytest.raises(CheckpointError, match="not an entry of this ResNet backbone"):
        load_checkpoint(_model(), tmp_path / "vit.pth")
    torch.save({"base.pos_embed": torch.zeros(1)}, tmp_path / "authors.pth")
    with pytest.raises(CheckpointError, match="published no code"):
        load_checkpoint(_model(), tmp_path / "authors.pth", "official")
    wider = _imagenet_resnet().state_dict()
    wider["conv1.weight"] = torch.zeros(16, 3, 7, 7)
    torch.save(wider, tmp_path / "wider.pth")
    with pytest.raises(CheckpointError, match="conv1.weight has shape"):
        load_checkpoint(_model(), tmp_path / "wider.pth")


def test_imagenet_weights_without_internet_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("no network")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(CheckpointError, match=r"resnet50.tv_in1k.*model.pretrained=PATH"):
        build_model("rapa_resnet50", 0, 0, pretrained=True)
