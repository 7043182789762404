"""Training losses of KeyRe-ID and RAPA: identity, triplet, centre and regularisation terms.

KeyRe-ID (Kim et al., "KeyRe-ID: Keypoint-Guided Person Re-Identification using Part-Aware Representation in
Videos"), eqs. 9-11. A clip gives one global feature and K part features; each is trained with

    L_branch = L_id (label-smoothed CE) + L_triplet (batch hard) + beta * L_center

The global branch adds the temporal-attention regularisation on randomly erased frames (eq. 10), the local
loss is the mean over the K parts (eq. 11) and the total is ``alpha * L_global + (1 - alpha) * L_local``
(eq. 9).

RAPA (Zhang et al., "Reference-Aided Part-Aligned Feature Disentangling for Video Person Re-Identification",
ICME 2021), eqs. 9-13, is the same family with ``combine="sum"``: every branch is ``L_triplet + L_softmax`` (no
label smoothing, no centre loss), the total is their plain sum ``L_global + sum_p L_part_p`` plus
``lambda * L_reg``, the mean over clips of the model's inter-frame term (``inter_frame_weight``).

References: batch-hard triplet loss with soft margin, Hermans et al. 2017 ("In Defense of the Triplet Loss
for Person Re-Identification"); centre loss, Wen et al. 2016 ("A Discriminative Feature Learning Approach
for Deep Face Recognition"); label smoothing, Szegedy et al. 2016 ("Rethinking the Inception Architecture
for Computer Vision"); attention regularisation of erased frames, Pathak et al. 2020 ("Video Person Re-ID:
Fantastic Techniques and Where to Find Them").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["CenterLoss", "LossWeights", "ReIDLoss", "attention_regularisation", "batch_hard_triplet",
           "cross_entropy_label_smooth"]


def _check_targets(targets: Tensor, batch: int, what: str) -> None:
    if targets.dim() != 1 or targets.shape[0] != batch:
        raise ValueError(f"targets must have shape ({batch},) to match {what}, got {tuple(targets.shape)}")


def cross_entropy_label_smooth(logits: Tensor, targets: Tensor, epsilon: float = 0.1) -> Tensor:
    """Cross entropy against ``(1 - epsilon) * onehot + epsilon / C``; ``logits`` (B, C), ``targets`` (B,)."""
    if logits.dim() != 2:
        raise ValueError(f"logits must have shape (B, C), got {tuple(logits.shape)}")
    _check_targets(targets, logits.shape[0], "logits")
    if not 0.0 <= epsilon < 1.0:
        raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
    log_probs = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=1)
    nll = -log_probs.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    uniform = -log_probs.mean(dim=1)
    return ((1.0 - epsilon) * nll + epsilon * uniform).mean()


def _pairwise_distances(features: Tensor) -> Tensor:
    """Euclidean distances (B, B), safe to differentiate when two rows are identical (clamped before sqrt)."""
    squared = features.pow(2).sum(dim=1)
    dist2 = squared.unsqueeze(0) + squared.unsqueeze(1) - 2.0 * features @ features.t()
    dist2 = dist2 * (1.0 - torch.eye(features.shape[0], device=features.device, dtype=features.dtype))
    return dist2.clamp(min=1e-12).sqrt()


def batch_hard_triplet(features: Tensor, targets: Tensor, margin: float | None = None) -> Tensor:
    """Batch-hard triplet loss: hardest positive and hardest negative per anchor.

    ``margin=None`` uses the soft margin ``softplus(d_ap - d_an)``, a float ``relu(d_ap - d_an + margin)``.
    Anchors with no negative in the batch are left out; with no valid anchor the loss is 0 (still in the
    graph). Distances are computed in at least float32; the masking stays on the device (no host sync).
    """
    if features.dim() != 2:
        raise ValueError(f"features must have shape (B, D), got {tuple(features.shape)}")
    _check_targets(targets, features.shape[0], "features")
    if margin is not None and margin <= 0:
        raise ValueError(f"margin must be None (soft margin) or > 0, got {margin}")
    dist = _pairwise_distances(features.to(torch.promote_types(features.dtype, torch.float32)))
    same = targets.unsqueeze(0) == targets.unsqueeze(1)
    hardest_pos = dist.masked_fill(~same, 0.0).max(dim=1).values  # distances are >= 0; self is a positive
    hardest_neg = dist.masked_fill(same, float("inf")).min(dim=1).values
    valid = (~same).any(dim=1)
    gap = torch.where(valid, hardest_pos - hardest_neg.masked_fill(~valid, 0.0), 0.0)
    per_anchor = F.softplus(gap) if margin is None else F.relu(gap + margin)
    return (per_anchor * valid).sum() / valid.sum().clamp(min=1)


class CenterLoss(nn.Module):
    """Centre loss: mean squared distance of each feature to the centre of its identity (Wen et al. 2016).

    ``centers`` is an ordinary parameter; the trainer gives it its own optimiser (SGD, lr 0.5). Targets must
    lie in ``[0, num_classes)``; they are not range-checked here, to avoid a device synchronisation.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        if num_classes < 1 or dim < 1:
            raise ValueError(f"num_classes and dim must be >= 1, got {num_classes} and {dim}")
        self.num_classes = num_classes
        self.dim = dim
        self.centers = nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, features: Tensor, targets: Tensor) -> Tensor:
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features must have shape (B, {self.dim}), got {tuple(features.shape)}")
        _check_targets(targets, features.shape[0], "features")
        diff = features - self.centers[targets.long()]
        return diff.pow(2).sum(dim=1).clamp(1e-12, 1e12).mean()

    def rescale_center_grads(self, weight: float) -> None:
        """Multiply ``centers.grad`` by ``1 / weight``.

        The centre loss enters the total scaled by ``weight`` (beta), which would also shrink the centres' own
        update to almost nothing; undoing the factor lets the centres follow the features at the rate set by
        their optimiser's learning rate, while the features still see the beta-weighted gradient.
        """
        if weight <= 0:
            raise ValueError(f"weight must be > 0, got {weight}")
        if self.centers.grad is not None:
            self.centers.grad.mul_(1.0 / weight)


def attention_regularisation(raw_scores: Tensor, erased: Tensor) -> Tensor:
    """Mean over clips of the summed raw (pre-softmax, non-negative) attention scores of erased frames."""
    if raw_scores.dim() != 2 or erased.shape != raw_scores.shape:
        raise ValueError(
            f"raw_scores and erased must both have shape (B, T), got {tuple(raw_scores.shape)} "
            f"and {tuple(erased.shape)}"
        )
    if erased.dtype != torch.bool:
        raise ValueError(f"erased must be a bool tensor, got {erased.dtype}")
    return (raw_scores * erased.to(raw_scores.dtype)).sum() / raw_scores.shape[0]


@dataclass(frozen=True)
class LossWeights:
    """Weights of KeyRe-ID's eqs. 9-11 and RAPA's eq. 13.

    ``combine``: ``"weighted"`` = ``alpha * global + (1 - alpha) * mean over parts`` (KeyRe-ID), ``"sum"`` =
    ``global + sum over parts`` (RAPA; ``alpha`` unused). ``beta``: centre loss (0 = no centres at all);
    ``triplet_margin`` None = soft margin; ``attention_weight``: the erased-frame attention term;
    ``inter_frame_weight``: lambda of RAPA's inter-frame regularisation.
    """

    alpha: float = 0.75
    beta: float = 0.0005
    label_smoothing: float = 0.1
    triplet_margin: float | None = None
    attention_weight: float = 1.0
    combine: Literal["weighted", "sum"] = "weighted"
    inter_frame_weight: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.triplet_margin is not None and self.triplet_margin <= 0:
            raise ValueError(f"triplet_margin must be None (soft margin) or > 0, got {self.triplet_margin}")
        if self.attention_weight < 0 or self.inter_frame_weight < 0:
            raise ValueError(f"attention_weight and inter_frame_weight must be >= 0, got {self.attention_weight} "
                             f"and {self.inter_frame_weight}")
        if self.combine not in ("weighted", "sum"):
            raise ValueError(f"combine must be 'weighted' or 'sum', got {self.combine!r}")


class ReIDLoss(nn.Module):
    """The KeyRe-ID / RAPA objective over a :class:`~keyreid_stream.model.heads.ReIDOutput` with ``global_logits``
    (B, C), ``global_feat`` (B, Dg), ``part_logits`` (B, K, C), ``part_feats`` (B, K, Dp), ``attention_scores``
    (B, T) and ``inter_frame`` (B,), any of which may be None.

    ``forward`` returns ``total``, ``global`` / ``local`` (for the branches present) and the unweighted
    components ``global_id``, ``global_triplet``, ``global_center``, ``attention``, ``local_id``,
    ``local_triplet``, ``local_center``, ``inter_frame`` (those computed; the local ones are means over the K
    parts). With ``beta > 0`` the centres are parameters of this module: keep them out of the model's optimiser,
    give :meth:`center_parameters` their own, and call :meth:`rescale_center_grads` between backward and its step.
    """

    def __init__(self, num_classes: int, global_dim: int | None, part_dim: int | None, num_parts: int,
                 weights: LossWeights = LossWeights()) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if num_parts < 0 or (part_dim is not None and num_parts < 1):
            raise ValueError(f"num_parts must be >= 1 with part_dim (>= 0 without), got {num_parts}")
        self.num_classes = num_classes
        self.num_parts = num_parts
        self.weights = weights
        centres = weights.beta > 0
        self.global_center = CenterLoss(num_classes, global_dim) if centres and global_dim is not None else None
        with_parts = centres and part_dim is not None
        parts = [CenterLoss(num_classes, part_dim) for _ in range(num_parts)] if with_parts else []  # type: ignore[arg-type]
        self.part_centers = nn.ModuleList(parts)

    def center_parameters(self) -> list[nn.Parameter]:
        centres = [] if self.global_center is None else [self.global_center.centers]
        # nn.ModuleList's stubs type items as Module; they are the CenterLosses built in __init__
        return centres + [cast(CenterLoss, module).centers for module in self.part_centers]

    def rescale_center_grads(self) -> None:
        """Undo the beta factor on the centres' gradients (no-op when beta is 0); see CenterLoss."""
        if self.weights.beta > 0:
            for module in [self.global_center, *self.part_centers]:
                if module is not None:
                    module.rescale_center_grads(self.weights.beta)

    def _branch(self, logits: Tensor | None, feats: Tensor | None, center: nn.Module | None,
                targets: Tensor, name: str) -> dict[str, Tensor]:
        w = self.weights
        out: dict[str, Tensor] = {}
        if logits is not None:
            if logits.shape[-1] != self.num_classes:
                raise ValueError(f"{name} logits: {logits.shape[-1]} classes, expected {self.num_classes}")
            out["id"] = cross_entropy_label_smooth(logits, targets, w.label_smoothing)
        if feats is not None:
            out["triplet"] = batch_hard_triplet(feats, targets, w.triplet_margin)
            if center is not None:
                out["center"] = center(feats, targets)
            elif w.beta > 0:
                raise ValueError(f"{name} features given but the loss was built without their dimension")
        return out

    def _global(self, output: Any, targets: Tensor, erased: Tensor | None) -> dict[str, Tensor]:
        logits, feats = getattr(output, "global_logits", None), getattr(output, "global_feat", None)
        parts = self._branch(logits, feats, self.global_center, targets, "global")
        result = {f"global_{key}": value for key, value in parts.items()}
        scores = getattr(output, "attention_scores", None)
        if scores is not None and erased is not None:
            if scores.shape[0] != targets.shape[0]:
                raise ValueError(f"attention_scores batch {scores.shape[0]} != targets {targets.shape[0]}")
            result["attention"] = attention_regularisation(scores, erased.to(scores.device))
        return result

    def _local(self, output: Any, targets: Tensor) -> dict[str, Tensor]:
        logits, feats = getattr(output, "part_logits", None), getattr(output, "part_feats", None)
        for name, tensor in (("part_logits", logits), ("part_feats", feats)):
            if tensor is not None and (tensor.dim() != 3 or tensor.shape[1] != self.num_parts):
                raise ValueError(f"{name} must be (B, {self.num_parts}, *), got {tuple(tensor.shape)}")
        if logits is None and feats is None:
            return {}
        per_part: dict[str, list[Tensor]] = {}
        for k in range(self.num_parts):
            center = self.part_centers[k] if len(self.part_centers) else None
            part_logits = None if logits is None else logits[:, k]
            part_feats = None if feats is None else feats[:, k]
            terms = self._branch(part_logits, part_feats, center, targets, f"part {k}")
            for key, value in terms.items():
                per_part.setdefault(key, []).append(value)
        return {f"local_{key}": torch.stack(values).mean() for key, values in per_part.items()}

    def _combine(self, terms: dict[str, Tensor], prefix: str) -> Tensor | None:
        scale = {"id": 1.0, "triplet": 1.0, "center": self.weights.beta}
        start = len(prefix) + 1
        values = [scale[key[start:]] * value for key, value in terms.items() if key.startswith(prefix)]
        if prefix == "global" and "attention" in terms:
            values.append(self.weights.attention_weight * terms["attention"])
        return sum(values[1:], values[0]) if values else None

    def _inter_frame(self, output: Any, targets: Tensor) -> dict[str, Tensor]:
        per_clip = getattr(output, "inter_frame", None)
        if per_clip is None:
            return {}
        if tuple(per_clip.shape) != tuple(targets.shape):
            raise ValueError(f"inter_frame must have shape {tuple(targets.shape)}, got {tuple(per_clip.shape)}")
        return {"inter_frame": per_clip.mean()}  # eq. 12

    def _total(self, global_loss: Tensor | None, local_loss: Tensor | None) -> Tensor:
        if global_loss is None and local_loss is None:
            raise ValueError("output has neither global nor part fields to compute a loss from")
        if global_loss is None or local_loss is None:
            return global_loss if global_loss is not None else local_loss  # type: ignore[return-value]
        if self.weights.combine == "sum":  # RAPA eq. 13: every branch counts once
            return global_loss + self.num_parts * local_loss
        return self.weights.alpha * global_loss + (1.0 - self.weights.alpha) * local_loss

    def forward(self, output: Any, targets: Tensor, erased: Tensor | None = None) -> dict[str, Tensor]:
        if targets.dim() != 1:
            raise ValueError(f"targets must have shape (B,), got {tuple(targets.shape)}")
        terms = {**self._global(output, targets, erased), **self._local(output, targets),
                 **self._inter_frame(output, targets)}
        global_loss, local_loss = self._combine(terms, "global"), self._combine(terms, "local")
        total = self._total(global_loss, local_loss)
        if "inter_frame" in terms and self.weights.inter_frame_weight > 0:
            total = total + self.weights.inter_frame_weight * terms["inter_frame"]
        branches = {"global": global_loss, "local": local_loss}
        return {"total": total, **{k: v for k, v in branches.items() if v is not None}, **terms}
