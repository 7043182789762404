"""Tests of k-reciprocal re-ranking (Zhong et al. 2017): against a plain per-probe loop written from the
paper's definitions, its effect on mAP, the lambda = 1 and symmetry properties, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("scipy")
pytest.importorskip("torch")

from keyreid_stream.eval import evaluate_rank, pairwise_distances, re_ranking
from keyreid_stream.eval import rerank as rerank_module


def reference_re_ranking(q_g, q_q, g_g, k1, k2, lam):
    """One probe at a time with Python sets; N(p, k) is the first k + 1 entries of p's stable ranking."""
    num_q = len(q_q)
    dist = np.block([[q_q, q_g], [q_g.T, g_g]]).astype(np.float64) ** 2
    dist = dist / dist.max(axis=1, keepdims=True)
    n = len(dist)
    ranking = [list(np.argsort(dist[p], kind="stable")) for p in range(n)]

    def reciprocal(p, k):
        return {g for g in ranking[p][:k + 1] if p in ranking[g][:k + 1]}

    half = round(k1 / 2)
    v = np.zeros((n, n))
    for p in range(n):
        base = reciprocal(p, k1)
        expanded = set(base)
        for q in base:
            candidate = reciprocal(q, half)
            if candidate and len(base & candidate) >= 2 / 3 * len(candidate):
                expanded |= candidate
        members = sorted(expanded)
        weights = np.exp(-dist[p, members])
        v[p, members] = weights / weights.sum()
    if k2 > 1:
        v = np.stack([v[ranking[p][:k2]].mean(axis=0) for p in range(n)])
    jaccard = np.empty((num_q, n - num_q))
    for i in range(num_q):
        for j in range(n - num_q):
            a, b = v[i], v[num_q + j]
            jaccard[i, j] = 1 - np.minimum(a, b).sum() / np.maximum(a, b).sum()
    return (1 - lam) * jaccard + lam * dist[:num_q, num_q:]


def clustered(seed, num_q, num_g, ids, dim=16, noise=1.0, noisy_queries=0):
    """Features around one centre per id; the first ``noisy_queries`` queries get 3x the noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim)) * 2.0
    q_pids, g_pids = rng.integers(0, ids, num_q), rng.integers(0, ids, num_g)
    query = centres[q_pids] + rng.normal(size=(num_q, dim)) * noise
    query[:noisy_queries] += rng.normal(size=(noisy_queries, dim)) * 2 * noise
    gallery = centres[g_pids] + rng.normal(size=(num_g, dim)) * noise
    return query, gallery, q_pids, g_pids, rng.integers(0, 6, num_q), rng.integers(0, 6, num_g)


def distances(query, gallery):
    return (pairwise_distances(query, gallery, "euclidean"), pairwise_distances(query, query, "euclidean"),
            pairwise_distances(gallery, gallery, "euclidean"))


@pytest.mark.parametrize("seed, num_q, num_g, ids, k1, k2, lam", [
    (0, 6, 25, 4, 20, 6, 0.3),  # k1 + 1 > N: every probe is a neighbour
    (1, 10, 40, 6, 5, 3, 0.3),
    (2, 12, 50, 8, 7, 1, 0.0),  # no query expansion, Jaccard only
    (3, 8, 30, 5, 4, 10, 0.5),  # k2 > k1 + 1
    (4, 1, 12, 3, 3, 2, 0.3),  # one query
    (5, 9, 1, 3, 2, 2, 0.3),  # one gallery item
])
def test_matches_reference_loop(seed, num_q, num_g, ids, k1, k2, lam):
    query, gallery, *_ = clustered(seed, num_q, num_g, ids)
    q_g, q_q, g_g = distances(query, gallery)
    out = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2, lambda_value=lam)
    assert out.shape == (num_q, num_g) and out.dtype == np.float32 and np.isfinite(out).all()
    np.testing.assert_allclose(out, reference_re_ranking(q_g, q_q, g_g, k1, k2, lam), atol=2e-6)


@pytest.mark.parametrize("k1, k2", [(4, 3), (9, 5)])
def test_tied_distances_match_reference_loop(k1, k2):
    # Distances rounded to 0.5: many ties, also at the k-th neighbour; both break them by the lower index.
    query, gallery, *_ = clustered(11, 10, 30, 4, dim=4)
    q_g, q_q, g_g = (np.round(block * 2) / 2 for block in distances(query, gallery))
    out = re_ranking(q_g, q_q, g_g, k1=k1, k2=k2)
    np.testing.assert_allclose(out, reference_re_ranking(q_g, q_q, g_g, k1, k2, 0.3), atol=2e-6)


def test_jaccard_blocks_split_the_same(monkeypatch):
    query, gallery, *_ = clustered(6, 40, 120, 10)
    q_g, q_q, g_g = distances(query, gallery)
    whole = re_ranking(q_g, q_q, g_g)
    monkeypatch.setattr(rerank_module, "PAIR_BUDGET", 50)  # many blocks, some of a single query
    monkeypatch.setattr(rerank_module, "MAX_BLOCK_ROWS", 3)
    monkeypatch.setattr(rerank_module, "SORT_ROWS", 7)
    np.testing.assert_array_equal(re_ranking(q_g, q_q, g_g), whole)


def test_raises_map_on_noisy_queries():
    query, gallery, q_pids, g_pids, q_cams, g_cams = clustered(7, 60, 400, 20, noise=1.6, noisy_queries=15)
    q_g, q_q, g_g = distances(query, gallery)
    before = evaluate_rank(q_g, q_pids, g_pids, q_cams, g_cams).mAP
    after = evaluate_rank(re_ranking(q_g, q_q, g_g), q_pids, g_pids, q_cams, g_cams).mAP
    assert after > before + 0.02, (before, after)


@pytest.mark.parametrize("seed", range(4))
def test_does_not_lower_map_much(seed):
    query, gallery, q_pids, g_pids, q_cams, g_cams = clustered(10 + seed, 40, 300, 15, noise=1.2,
                                                               noisy_queries=8)
    q_g, q_q, g_g = distances(query, gallery)
    before = evaluate_rank(q_g, q_pids, g_pids, q_cams, g_cams).mAP
    after = evaluate_rank(re_ranking(q_g, q_q, g_g, k1=10, k2=3), q_pids, g_pids, q_cams, g_cams).mAP
    assert after >= before - 0.02, (before, after)


def test_lambda_one_keeps_the_original_ranking():
    query, gallery, *_ = clustered(8, 20, 90, 6)
    q_g, q_q, g_g = distances(query, gallery)
    out = re_ranking(q_g, q_q, g_g, lambda_value=1.0)
    np.testing.assert_array_equal(np.argsort(out, axis=1, kind="stable"),
                                  np.argsort(q_g, axis=1, kind="stable"))


def test_jaccard_part_is_symmetric_in_queries_and_gallery():
    # With lambda = 0 only the Jaccard distance is left, which treats all probes alike: swapping the roles of
    # the query and the gallery transposes the result.
    query, gallery, *_ = clustered(9, 15, 35, 5)
    q_g, q_q, g_g = distances(query, gallery)
    forward = re_ranking(q_g, q_q, g_g, lambda_value=0.0)
    swapped = re_ranking(q_g.T, g_g, q_q, lambda_value=0.0)
    np.testing.assert_allclose(forward, swapped.T, atol=1e-6)


def test_same_set_as_query_and_gallery_gives_a_symmetric_jaccard_matrix():
    query, *_ = clustered(10, 25, 1, 5)
    dist = pairwise_distances(query, query, "euclidean")
    out = re_ranking(dist, dist, dist, lambda_value=0.0)
    np.testing.assert_allclose(out, out.T, atol=1e-6)
    np.testing.assert_allclose(np.diag(out), 0.0, atol=1e-6)  # each probe has the same encoding as itself


Q_G, Q_Q, G_G = np.ones((2, 3)), np.zeros((2, 2)), np.zeros((3, 3))


@pytest.mark.parametrize("args, kwargs, message", [
    ((Q_G, Q_Q, G_G), {"k1": 0}, "k1 must be"),
    ((Q_G, Q_Q, G_G), {"k2": 0}, "k2 must be"),
    ((Q_G, Q_Q, G_G), {"k1": 2.5}, "k1 must be"),
    ((Q_G, Q_Q, G_G), {"lambda_value": 1.5}, "lambda_value must be"),
    ((Q_G, np.zeros((3, 3)), G_G), {}, "q_q_dist must be \\(2, 2\\)"),
    ((Q_G, Q_Q, np.zeros((2, 2))), {}, "g_g_dist \\(3, 3\\)"),
    ((Q_G.T, Q_Q, G_G), {}, "q_q_dist must be"),
    ((np.ones(3), Q_Q, G_G), {}, "q_g_dist must be a non-empty 2-D"),
    ((np.ones((0, 3)), Q_Q, G_G), {}, "q_g_dist must be a non-empty 2-D"),
    ((np.full((2, 3), np.nan), Q_Q, G_G), {}, "NaN or infinite"),
    ((-Q_G, Q_Q, G_G), {}, "negative distances"),
])
def test_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        re_ranking(*args, **kwargs)
