"""Tests of pairwise_distances: every metric against a plain numpy formula (float64), across chunk
boundaries and input types, zero vectors under cosine, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from keyreid_stream.eval import pairwise_distances  # noqa: E402


def reference(query: np.ndarray, gallery: np.ndarray, metric: str) -> np.ndarray:
    q, g = query.astype(np.float64), gallery.astype(np.float64)
    if metric == "cosine":
        qn, gn = np.linalg.norm(q, axis=1), np.linalg.norm(g, axis=1)
        cos = (q @ g.T) / np.outer(np.where(qn > 0, qn, 1.0), np.where(gn > 0, gn, 1.0))
        return 1.0 - cos
    squared = ((q[:, None, :] - g[None, :, :]) ** 2).sum(axis=2)
    return np.sqrt(squared) if metric == "euclidean" else squared


@pytest.mark.parametrize("metric", ["squared_euclidean", "euclidean", "cosine"])
@pytest.mark.parametrize("num_q, num_g, dim, chunk_size", [
    (1, 1, 1, 4096),
    (7, 13, 5, 3),  # 3 chunks, the last one short
    (8, 5, 16, 4),  # 2 full chunks
    (33, 40, 64, 32),  # one row past a chunk
    (20, 9, 300, 1),
])
def test_matches_numpy_formula(metric, num_q, num_g, dim, chunk_size):
    rng = np.random.default_rng(num_q * 100 + dim)
    query = rng.normal(size=(num_q, dim)).astype(np.float32)
    gallery = rng.normal(size=(num_g, dim)).astype(np.float32)
    out = pairwise_distances(query, gallery, metric, chunk_size)
    assert out.shape == (num_q, num_g) and out.dtype == np.float32 and isinstance(out, np.ndarray)
    expected = reference(query, gallery, metric)
    scale = expected.max() if metric == "squared_euclidean" else 1.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5 * scale)


@pytest.mark.parametrize("to_input", [
    lambda a: a,
    lambda a: a.astype(np.float64),
    lambda a: torch.from_numpy(a),
    lambda a: torch.from_numpy(a).to(torch.float64).requires_grad_(),
    lambda a: torch.from_numpy(a).to(torch.bfloat16).float(),  # already float32 again
], ids=["numpy32", "numpy64", "tensor32", "tensor64-grad", "tensor-from-bf16"])
def test_input_types(to_input):
    rng = np.random.default_rng(1)
    query, gallery = rng.normal(size=(6, 12)).astype(np.float32), rng.normal(size=(9, 12)).astype(np.float32)
    out = pairwise_distances(to_input(query), to_input(gallery))
    np.testing.assert_allclose(out, pairwise_distances(query, gallery), rtol=1e-2, atol=1e-2)


@pytest.mark.gpu
@pytest.mark.parametrize("metric", ["squared_euclidean", "euclidean", "cosine"])
def test_cuda_tensors_match_cpu(metric):
    rng = np.random.default_rng(4)
    query = rng.normal(size=(70, 96)).astype(np.float32)
    gallery = rng.normal(size=(50, 96)).astype(np.float32)
    query[3] = 0.0
    out = pairwise_distances(torch.from_numpy(query).cuda(), torch.from_numpy(gallery), metric, chunk_size=32)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(out, pairwise_distances(query, gallery, metric), rtol=1e-4, atol=1e-3)


def test_identical_vectors_are_near_zero_and_never_negative():
    rng = np.random.default_rng(2)
    features = (rng.normal(size=(50, 768)) * 10).astype(np.float32)
    for metric in ("squared_euclidean", "euclidean", "cosine"):
        out = pairwise_distances(features, features, metric)
        assert (out >= 0).all()
        scale = {"cosine": 1.0, "euclidean": np.sqrt(out.max()), "squared_euclidean": out.max()}[metric]
        assert np.abs(np.diag(out)).max() <= 1e-2 * scale


def test_cosine_zero_vectors_have_distance_one():
    query = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]], dtype=np.float32)
    gallery = np.array([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, -3.0, 0.0], [-1.0, 0.0, 0.0]],
                       dtype=np.float32)
    out = pairwise_distances(query, gallery, "cosine")
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, [[1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 2.0]], atol=1e-6)


@pytest.mark.parametrize("query, gallery, kwargs, message", [
    (np.zeros((2, 3)), np.zeros((4, 5)), {}, "dimensions differ"),
    (np.zeros(3), np.zeros((4, 3)), {}, "query must have shape"),
    (np.zeros((2, 3)), np.zeros((4, 3, 1)), {}, "gallery must have shape"),
    (np.zeros((0, 3)), np.zeros((4, 3)), {}, "query is empty"),
    (np.zeros((2, 3)), np.zeros((0, 3)), {}, "gallery is empty"),
    (np.array([[np.nan, 0.0]]), np.zeros((1, 2)), {}, "NaN or infinite"),
    (np.zeros((1, 2)), np.array([[np.inf, 0.0]]), {}, "NaN or infinite"),
    (np.array([["a"]]), np.zeros((1, 1)), {}, "real-valued"),
    (np.zeros((1, 2)), np.zeros((1, 2)), {"metric": "manhattan"}, "metric must be one of"),
    (np.zeros((1, 2)), np.zeros((1, 2)), {"chunk_size": 0}, "chunk_size must be"),
])
def test_bad_input(query, gallery, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pairwise_distances(query, gallery, **kwargs)
