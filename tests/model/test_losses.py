"""Tests of the training losses (KeyRe-ID eqs. 9-11, RAPA eqs. 9-13): each term against a direct reference
computation, the branch combinations, the centre update path and input validation. Tiny CPU tensors only."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from keyreid_stream.model.losses import (  # noqa: E402
    CenterLoss,
    LossWeights,
    ReIDLoss,
    attention_regularisation,
    batch_hard_triplet,
    cross_entropy_label_smooth,
)

B, C, K, DG, DP, T = 6, 5, 3, 8, 4, 4
TARGETS = [0, 0, 1, 1, 2, 2]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)  # centre initialisation and the unseeded tensors below


def _output(global_branch: bool = True, local_branch: bool = True, grad: bool = True,
            **overrides: Any) -> Any:
    gen = torch.Generator().manual_seed(0)

    def leaf(*shape: int) -> Any:
        return torch.randn(*shape, generator=gen).requires_grad_(grad)

    fields = {
        "global_logits": leaf(B, C) if global_branch else None,
        "global_feat": leaf(B, DG) if global_branch else None,
        "attention_scores": leaf(B, T).abs().detach().requires_grad_(grad) if global_branch else None,
        "part_logits": leaf(B, K, C) if local_branch else None,
        "part_feats": leaf(B, K, DP) if local_branch else None,
    }
    fields.update(overrides)
    return SimpleNamespace(**fields)


def _erased() -> Any:
    erased = torch.zeros(B, T, dtype=torch.bool)
    erased[0, 1] = erased[3, 2] = erased[3, 3] = True
    return erased


def _reference_triplet(features: Any, targets: list[int], margin: float | None) -> float:
    terms = []
    for i in range(len(targets)):
        dists = [float((features[i] - features[j]).norm()) for j in range(len(targets))]
        negatives = [d for d, t in zip(dists, targets) if t != targets[i]]
        if not negatives:
            continue
        gap = max(d for d, t in zip(dists, targets) if t == targets[i]) - min(negatives)
        terms.append(math.log1p(math.exp(gap)) if margin is None else max(0.0, gap + margin))
    return sum(terms) / len(terms) if terms else 0.0


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.1, 0.3, 0.9])
def test_label_smoothing_matches_torch(eps: float) -> None:
    logits = torch.randn(7, 5, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1, 2, 3, 4, 0, 2])
    expected = F.cross_entropy(logits, targets, label_smoothing=eps)
    assert torch.allclose(cross_entropy_label_smooth(logits, targets, eps), expected, atol=1e-6)


def test_label_smoothing_zero_is_plain_cross_entropy() -> None:
    logits, targets = torch.randn(4, 3) * 5, torch.tensor([2, 0, 1, 1])
    assert torch.allclose(cross_entropy_label_smooth(logits, targets, 0.0), F.cross_entropy(logits, targets))


@pytest.mark.parametrize("margin", [None, 0.3, 2.0])
@pytest.mark.parametrize("targets", [TARGETS, [0, 1, 2, 3], [0, 0, 0, 1], [3, 1, 3, 1, 3]])
def test_batch_hard_triplet_matches_loop(margin: float | None, targets: list[int]) -> None:
    features = torch.randn(len(targets), 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    loss = batch_hard_triplet(features, torch.tensor(targets), margin)
    # abs: the self-distance is sqrt(1e-12), not 0, after the clamp that keeps gradients finite
    assert loss.item() == pytest.approx(_reference_triplet(features, targets, margin), rel=1e-6, abs=1e-5)


@pytest.mark.parametrize("margin", [None, 0.5])
def test_batch_hard_triplet_identical_features_finite_grads(margin: float | None) -> None:
    features = torch.ones(4, 3, requires_grad=True)
    loss = batch_hard_triplet(features, torch.tensor([0, 0, 1, 1]), margin)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(features.grad).all()


def test_batch_hard_triplet_single_identity_is_zero() -> None:
    features = torch.randn(4, 3, requires_grad=True)
    loss = batch_hard_triplet(features, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and torch.equal(features.grad, torch.zeros(4, 3))


def test_center_loss_value() -> None:
    module, features, targets = CenterLoss(3, 4), torch.randn(5, 4), torch.tensor([0, 2, 2, 1, 0])
    centers = module.centers.detach()
    expected = sum(float(((features[i] - centers[t]) ** 2).sum()) for i, t in enumerate(targets)) / 5
    assert module(features, targets).item() == pytest.approx(expected, rel=1e-6)


def test_rescaled_center_grads_equal_unweighted_grads() -> None:
    loss_fn = ReIDLoss(C, DG, None, 0, LossWeights(beta=0.01))
    output = _output(local_branch=False, grad=False)
    targets = torch.tensor(TARGETS)
    loss_fn(output, targets)["total"].backward()
    loss_fn.rescale_center_grads()
    reference = CenterLoss(C, DG)
    reference.centers.data.copy_(loss_fn.global_center.centers.data)
    reference(output.global_feat, targets).backward()
    assert torch.allclose(loss_fn.global_center.centers.grad, reference.centers.grad, atol=1e-6)


def test_centers_are_optimised_toward_features() -> None:
    loss_fn, output, targets = ReIDLoss(C, DG, DP, K), _output(), torch.tensor(TARGETS)
    ids = {id(p) for p in loss_fn.parameters()}
    assert len(loss_fn.center_parameters()) == 1 + K
    assert all(id(p) in ids for p in loss_fn.center_parameters())

    def distances() -> list[float]:
        with torch.no_grad():
            feats = [output.global_feat] + [output.part_feats[:, k] for k in range(K)]
            centres = loss_fn.center_parameters()
            return [((f - p[targets]) ** 2).sum().item() for f, p in zip(feats, centres)]

    before = distances()
    optimiser = torch.optim.SGD(loss_fn.center_parameters(), lr=0.5)
    loss_fn(output, targets)["total"].backward()
    loss_fn.rescale_center_grads()
    optimiser.step()
    after = distances()
    assert all(a < b for a, b in zip(after, before))
    assert after[0] < 0.9 * before[0]  # without the 1/beta rescale the centres would barely move


def test_attention_regularisation_counts_only_erased_frames() -> None:
    scores = torch.arange(1.0, 1.0 + B * T).reshape(B, T).requires_grad_(True)
    erased = _erased()
    loss = attention_regularisation(scores, erased)
    assert loss.item() == pytest.approx((scores[0, 1] + scores[3, 2] + scores[3, 3]).item() / B)
    loss.backward()
    assert torch.equal(scores.grad != 0, erased)


def test_attention_regularisation_zero_without_erasing() -> None:
    scores = torch.rand(B, T, requires_grad=True)
    loss = attention_regularisation(scores, torch.zeros(B, T, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0 and scores.grad is not None


def test_total_is_weighted_sum_of_components() -> None:
    weights = LossWeights(alpha=0.6, beta=0.01, triplet_margin=0.3, attention_weight=0.5)
    out = ReIDLoss(C, DG, DP, K, weights)(_output(), torch.tensor(TARGETS), _erased())
    glob = out["global_id"] + out["global_triplet"] + 0.01 * out["global_center"] + 0.5 * out["attention"]
    local = out["local_id"] + out["local_triplet"] + 0.01 * out["local_center"]
    assert torch.allclose(out["global"], glob) and torch.allclose(out["local"], local)
    assert torch.allclose(out["total"], 0.6 * glob + 0.4 * local)
    assert all(value.dim() == 0 for value in out.values())


def test_local_components_are_means_over_parts() -> None:
    loss_fn, output, targets = ReIDLoss(C, None, DP, K), _output(global_branch=False), torch.tensor(TARGETS)
    out = loss_fn(output, targets)
    ids = [cross_entropy_label_smooth(output.part_logits[:, k], targets) for k in range(K)]
    tri = [batch_hard_triplet(output.part_feats[:, k], targets) for k in range(K)]
    assert torch.allclose(out["local_id"], torch.stack(ids).mean())
    assert torch.allclose(out["local_triplet"], torch.stack(tri).mean())
    assert set(out) == {"total", "local", "local_id", "local_triplet", "local_center"}
    assert torch.allclose(out["total"], out["local"])


def test_global_only_model() -> None:
    out = ReIDLoss(C, DG, None, 0)(_output(local_branch=False), torch.tensor(TARGETS), _erased())
    assert set(out) == {"total", "global", "global_id", "global_triplet", "global_center", "attention"}
    assert torch.allclose(out["total"], out["global"])


def test_gradient_reaches_every_input_and_centre() -> None:
    loss_fn, output = ReIDLoss(C, DG, DP, K), _output()
    loss_fn(output, torch.tensor(TARGETS), _erased())["total"].backward()
    for name in ("global_logits", "global_feat", "part_logits", "part_feats", "attention_scores"):
        grad = getattr(output, name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    for param in loss_fn.center_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("overrides", "targets", "match"),
    [
        ({}, torch.tensor(TARGETS[:4]), "targets"),
        ({}, torch.tensor([TARGETS]), "targets"),
        ({"global_logits": torch.randn(B, C + 1)}, None, "classes"),
        ({"part_logits": torch.randn(B, K + 1, C)}, None, "part_logits"),
        ({"part_feats": torch.randn(B, K, DP + 1)}, None, "features"),
        ({"global_feat": torch.randn(B, DG - 1)}, None, "features"),
        ({"attention_scores": torch.rand(B, T + 1)}, None, "erased"),
        ({"global_logits": None, "global_feat": None, "attention_scores": None, "part_logits": None,
          "part_feats": None}, None, "neither"),
    ],
)
def test_wrong_shapes_raise(overrides: dict[str, Any], targets: Any, match: str) -> None:
    targets = torch.tensor(TARGETS) if targets is None else targets
    with pytest.raises(ValueError, match=match):
        ReIDLoss(C, DG, DP, K)(_output(**overrides), targets, _erased())


@pytest.mark.parametrize(
    "kwargs",
    [{"alpha": -0.1}, {"alpha": 1.5}, {"beta": -1e-4}, {"label_smoothing": 1.0}, {"label_smoothing": -0.1},
     {"triplet_margin": 0.0}, {"triplet_margin": -0.3}, {"attention_weight": -1.0}, {"inter_frame_weight": -1e-4},
     {"combine": "mean"}],
)
def test_loss_weights_reject_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LossWeights(**kwargs)


RAPA_WEIGHTS = LossWeights(combine="sum", beta=0.0, label_smoothing=0.0, triplet_margin=0.3, attention_weight=0.0,
                           inter_frame_weight=0.01)


def _rapa_output(**overrides: Any) -> Any:
    inter_frame = torch.rand(B, generator=torch.Generator().manual_seed(1)).requires_grad_()
    return _output(inter_frame=inter_frame, **overrides)


def test_rapa_total_is_the_sum_of_the_four_branches_plus_lambda_reg() -> None:
    """Eq. 13: L_total = sum over the global and the K part branches of (triplet + softmax) + lambda * L_reg."""
    output, targets = _rapa_output(), torch.tensor(TARGETS)
    out = ReIDLoss(C, DG, DP, K, RAPA_WEIGHTS)(output, targets, _erased())
    branches = [F.cross_entropy(output.global_logits, targets)
                + batch_hard_triplet(output.global_feat, targets, margin=0.3)]
    branches += [F.cross_entropy(output.part_logits[:, k], targets)
                 + batch_hard_triplet(output.part_feats[:, k], targets, margin=0.3) for k in range(K)]
    expected = sum(branches) + 0.01 * output.inter_frame.mean()  # eq. 12: the mean over the P x K clips
    assert torch.allclose(out["total"], expected, atol=1e-6)
    assert torch.allclose(out["inter_frame"], output.inter_frame.mean())
    assert not any("center" in key for key in out) and "attention" in out  # logged, weighted 0


def test_no_centres_without_a_centre_loss() -> None:
    loss_fn = ReIDLoss(C, DG, DP, K, RAPA_WEIGHTS)
    assert loss_fn.center_parameters() == [] and not list(loss_fn.parameters())


def test_the_inter_frame_term_is_logged_but_not_added_at_lambda_zero() -> None:
    output, targets = _rapa_output(), torch.tensor(TARGETS)
    weights = LossWeights(combine="sum", beta=0.0, inter_frame_weight=0.0)
    out = ReIDLoss(C, DG, DP, K, weights)(output, targets)
    assert torch.allclose(out["total"], out["global"] + K * out["local"]) and out["inter_frame"] > 0


def test_the_inter_frame_term_must_have_one_value_per_clip() -> None:
    with pytest.raises(ValueError, match="inter_frame must have shape"):
        ReIDLoss(C, DG, DP, K, RAPA_WEIGHTS)(_output(inter_frame=torch.rand(B, 2)), torch.tensor(TARGETS))
