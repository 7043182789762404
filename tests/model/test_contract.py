"""What every architecture promises the trainer, the evaluation and the worker (one table of tiny variants):
output shapes in train and eval, gradients to every trainable parameter, a loss built from ``feature_dims`` that
a few steps decrease, deterministic and batch-independent inference, a checkpoint round trip, clear input errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("timm")

from keyreid_stream.model import build_model, load_model, save_checkpoint  # noqa: E402
from keyreid_stream.model.losses import LossWeights, ReIDLoss  # noqa: E402

from model_testing import randomise_batchnorm  # noqa: E402  (conftest.py puts it on the path)

CLASSES = 5
RAPA_LOSS = LossWeights(combine="sum", beta=0.0, label_smoothing=0.0, triplet_margin=0.3, attention_weight=0.0,
                        inter_frame_weight=3e-4)
CASES = [
    ("keyreid_test", {}),
    ("keyreid_test", {"compat": "official"}),
    ("keyreid_test", {"tcss": False}),
    ("keyreid_test", {"global_branch": False}),
    ("keyreid_test", {"local_branch": False}),
    ("vidtrans_test", {}),
    ("rapa_test", {}),
    ("rapa_test", {"global_branch": False}),
    ("rapa_test", {"local_branch": False, "global_reduction": False}),
    ("rapa_test", {"temporal_channel_attention": False}),
    ("rapa_test", {"part_split": "stripes"}),
    ("rapa_test", {"reference": "first"}),
]
IDS = [f"{arch}-{'-'.join(f'{k}={v}' for k, v in options.items()) or 'default'}" for arch, options in CASES]


def _cameras(arch: str) -> int:
    return 0 if arch.startswith("rapa") else 3


def _model(arch: str, options: dict, num_classes: int = CLASSES, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(arch, num_classes, _cameras(arch), **options)


def _inputs(model: torch.nn.Module, batch: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    (height, width), frames = model.img_size, model.num_frames
    clips = torch.randn(batch, frames, 3, height, width, generator=gen)
    keypoints = torch.rand(batch, frames, 17, 3, generator=gen) * torch.tensor([width - 1.0, height - 1.0, 1.0])
    cameras = torch.arange(batch) % 3
    return clips, keypoints, cameras


def _loss(model: torch.nn.Module) -> ReIDLoss:
    dims = model.feature_dims
    weights = RAPA_LOSS if model.arch.startswith("rapa") else LossWeights()
    return ReIDLoss(CLASSES, dims.global_dim, dims.part_dim, dims.num_parts, weights)


@pytest.mark.parametrize(("arch", "options"), CASES, ids=IDS)
def test_output_shapes_follow_descriptor_dim_and_feature_dims(arch: str, options: dict) -> None:
    model = _model(arch, options)
    clips, keypoints, cameras = _inputs(model, 3)
    out = model.train()(clips, keypoints, cameras)
    dims = model.feature_dims
    assert out.descriptor.shape == (3, model.descriptor_dim)
    assert (out.global_feat is None) == (dims.global_dim is None) == (out.global_logits is None)
    if dims.global_dim is not None:
        assert out.global_feat.shape == (3, dims.global_dim) and out.global_logits.shape == (3, CLASSES)
    assert (out.part_feats is None) == (dims.part_dim is None) == (dims.num_parts == 0)
    if dims.part_dim is not None:
        assert out.part_feats.shape == (3, dims.num_parts, dims.part_dim)
        assert out.part_logits.shape == (3, dims.num_parts, CLASSES)
    with torch.no_grad():
        assert model.eval().embed(clips, keypoints, cameras).shape == (3, model.descriptor_dim)
    inference_only = build_model(arch, 0, _cameras(arch), **options).eval()
    with torch.no_grad():
        bare = inference_only(clips, keypoints, cameras)
    assert bare.global_logits is None and bare.part_logits is None  # num_classes=0: no classifiers


@pytest.mark.parametrize(("arch", "options"), CASES, ids=IDS)
def test_gradients_reach_every_trainable_parameter(arch: str, options: dict) -> None:
    model = _model(arch, options).train()
    clips, keypoints, cameras = _inputs(model, 4)
    out = model(clips, keypoints, cameras)
    fields = (out.descriptor, out.global_logits, out.global_feat, out.part_logits, out.part_feats, out.inter_frame)
    sum((t * torch.randn_like(t)).sum() for t in fields if t is not None).backward()
    without = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not without
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(n.endswith("bnneck.bias") for n in frozen)


@pytest.mark.parametrize(("arch", "options"), CASES, ids=IDS)
def test_a_few_steps_of_the_recipe_loss_fit_a_fixed_batch(arch: str, options: dict) -> None:
    """Each with its paper's optimiser: KeyRe-ID SGD + the centres on their own SGD, RAPA Adam (no centres)."""
    model = _model(arch, options).train()
    criterion = _loss(model)
    if arch.startswith("rapa"):
        optimisers = [torch.optim.Adam(model.parameters(), lr=1e-3)]
        assert not criterion.center_parameters()
    else:
        optimisers = [torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9),
                      torch.optim.SGD(criterion.center_parameters(), lr=0.5)]
    clips, keypoints, _ = _inputs(model, 8)
    targets, cameras = torch.arange(8) % 4, torch.arange(8) % 3
    erased = torch.zeros(8, model.num_frames, dtype=torch.bool)
    erased[0, 1] = True
    losses = []
    for _ in range(8):
        terms = criterion(model(clips, keypoints, cameras), targets, erased)
        for optimiser in optimisers:
            optimiser.zero_grad()
        terms["total"].backward()
        criterion.rescale_center_grads()
        for optimiser in optimisers:
            optimiser.step()
        losses.append(float(terms["total"].detach()))
    assert all(math.isfinite(v) for v in losses) and losses[-1] < 0.8 * losses[0]


@pytest.mark.parametrize(("arch", "options"), CASES, ids=IDS)
def test_eval_is_deterministic_and_batch_independent(arch: str, options: dict) -> None:
    model = _model(arch, options).eval()
    randomise_batchnorm(model)
    clips, keypoints, cameras = _inputs(model, 3)
    with torch.no_grad():
        whole = model.embed(clips, keypoints, cameras)
        assert torch.equal(whole, model.embed(clips, keypoints, cameras))
        alone = model.embed(clips[1:2], keypoints[1:2], cameras[1:2])
    assert torch.isfinite(whole).all()
    assert torch.allclose(whole[1:2], alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(("arch", "options"), CASES[::3] + CASES[6::2], ids=IDS[::3] + IDS[6::2])
def test_checkpoint_round_trip_gives_the_same_descriptors(arch: str, options: dict, tmp_path: Path) -> None:
    model = _model(arch, options).eval()
    randomise_batchnorm(model)
    path = save_checkpoint(model, tmp_path / "model.pt", extra={"input_mean": [0.1, 0.2, 0.3]})
    loaded = load_model(path).eval()
    assert loaded.arch == arch and loaded.checkpoint_extra["input_mean"] == [0.1, 0.2, 0.3]
    clips, keypoints, cameras = _inputs(model, 2)
    with torch.no_grad():
        assert torch.equal(model.embed(clips, keypoints, cameras), loaded.embed(clips, keypoints, cameras))


@pytest.mark.parametrize("arch", ["keyreid_test", "vidtrans_test", "rapa_test"])
@pytest.mark.parametrize(("change", "match"), [
    (lambda f, k, c: (f[:, :3], k[:, :3], c), "clips of 4 frames"),
    (lambda f, k, c: (f[..., :16], k, c), r"frames must be \(B, T, 3, 64, 32\)"),
    (lambda f, k, c: (f, k[..., :2], c), "keypoints must be"),
    (lambda f, k, c: (f, k, c[:1]), "camera_ids must be"),
    (lambda f, k, c: (f.index_fill(0, torch.tensor([1]), float("nan")), k, c), "NaN"),
], ids=["frames", "size", "keypoints", "cameras", "nan"])
def test_bad_inputs_get_clear_errors(arch: str, change, match: str) -> None:
    model = _model(arch, {}).eval()
    with pytest.raises(ValueError, match=match), torch.no_grad():
        model.embed(*change(*_inputs(model, 2)))
