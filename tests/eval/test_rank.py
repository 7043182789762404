"""Tests of the ranking metrics: the vectorised evaluate_rank against a plain per-query loop written from the
textbook definitions, hand-computed cases, the authors' camera-id behaviour, aggregation and bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from keyreid_stream.eval import RankResult, aggregate_results, evaluate_rank, official_camera_ids
from keyreid_stream.eval import rank as rank_module
from keyreid_stream.eval.rank import stable_argsort


def reference_rank(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """One query at a time: stable sort, drop same id + same camera, skip queries without a match."""
    length = min(max_rank, distmat.shape[1])
    cmcs, aps, inps, valid = [], [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        matches = (g_pids[order] == q_pids[i])[keep]
        valid.append(bool(matches.any()))
        if not matches.any():
            continue
        hits = np.flatnonzero(matches)  # 0-based positions among the kept entries
        cmc = np.zeros(length)
        cmc[hits[0]:] = 1.0
        cmcs.append(cmc)
        aps.append(sum((j + 1) / (pos + 1) for j, pos in enumerate(hits)) / len(hits))
        inps.append(len(hits) / (hits[-1] + 1))
    if not aps:
        return None  # every query skipped
    return np.mean(cmcs, axis=0), float(np.mean(aps)), float(np.mean(inps)), np.array(aps), np.array(valid)


def random_case(seed: int, num_q: int, num_g: int, ids: int, cams: int, dtype=np.float64, levels: int = 0):
    """Random ids/cameras, every 7th gallery item from index 3 a distractor (pid 0, no query has it);
    ``levels`` > 0 draws distances from that many values (many ties)."""
    rng = np.random.default_rng(seed)
    q_pids, g_pids = rng.integers(1, ids + 1, num_q), rng.integers(1, ids + 1, num_g)
    g_pids[3::7] = 0
    q_camids, g_camids = rng.integers(0, cams, num_q), rng.integers(0, cams, num_g)
    dist = rng.integers(0, levels, (num_q, num_g)) if levels else rng.random((num_q, num_g))
    return dist.astype(dtype), q_pids, g_pids, q_camids, g_camids


CASES = [  # seed, Q, G, ids, cameras, dtype, levels, max_rank
    (0, 1, 30, 3, 2, np.float64, 0, 50),
    (1, 20, 1, 1, 2, np.float64, 0, 50),  # G = 1: about half the queries skipped (same camera)
    (2, 40, 200, 10, 6, np.float64, 0, 50),
    (3, 40, 200, 10, 6, np.float32, 0, 20),
    (4, 60, 150, 8, 3, np.float32, 5, 50),  # heavy ties, float32 path
    (5, 60, 150, 8, 3, np.float64, 5, 50),  # heavy ties, generic path
    (6, 50, 80, 6, 2, np.int64, 7, 10),
    (7, rank_module.CHUNK_ROWS + 1, 64, 12, 4, np.float32, 0, 50),  # one row past a chunk
    (8, 2 * rank_module.CHUNK_ROWS, 40, 12, 4, np.float64, 0, 100),  # exactly two chunks, max_rank > G
    (9, 30, 300, 40, 2, np.float16, 0, 50),
    (11, 30, 300, 40, 1, np.float32, 0, 50),  # one camera: every match is junk, all queries skipped
    (10, 30, 300, 5, 6, np.float32, 0, 5),
]


@pytest.mark.parametrize("seed, num_q, num_g, ids, cams, dtype, levels, max_rank", CASES)
def test_matches_reference_loop(seed, num_q, num_g, ids, cams, dtype, levels, max_rank):
    dist, q_pids, g_pids, q_camids, g_camids = random_case(seed, num_q, num_g, ids, cams, dtype, levels)
    expected = reference_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank)
    if expected is None:
        with pytest.raises(ValueError, match="no query has a true match"):
            evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank)
        return
    cmc, mAP, mINP, aps, valid = expected
    result = evaluate_rank(dist, q_pids, g_pids, q_camids, g_camids, max_rank)
    assert result.cmc.shape == (min(max_rank, num_g),) and result.cmc.dtype == np.float64
    np.testing.assert_allclose(result.cmc, cmc, rtol=0, atol=1e-12)
    assert result.mAP == pytest.approx(mAP, abs=1e-12)
    assert result.mINP == pytest.approx(mINP, abs=1e-12)
    np.testing.assert_allclose(result.average_precision, aps, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(result.valid, valid)
    assert result.num_valid_queries == valid.sum() and result.num_skipped_queries == (~valid).sum()


def test_all_queries_skipped_raises():
    dist = np.random.default_rng(0).random((3, 5))
    with pytest.raises(ValueError, match="all 3 queries skipped"):  # the only true matches share the camera
        evaluate_rank(dist, np.array([1, 1, 2]), np.array([1, 2, 3, 4, 5]), np.zeros(3, int),
                      np.zeros(5, int))


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int8, np.int64])
def test_stable_argsort_equals_numpy_stable(dtype):
    rng = np.random.default_rng(3)
    values = (rng.normal(size=(17, 300)) * 20).astype(dtype)
    values[::2] = np.round(values[::2] / 4)  # every other row with many ties, the others (floats) with few
    if np.issubdtype(dtype, np.floating):
        values[:, ::5] = -0.0  # equal to 0.0: a tie, not an order
        values[0, :3] = [np.inf, -np.inf, np.inf]
    np.testing.assert_array_equal(stable_argsort(values), np.argsort(values, axis=1, kind="stable"))


def ids(*values):
    return np.array(values, dtype=np.int64)


def test_perfect_ranking():
    # Query pid 1 cam 0; gallery pids [1, 1, 2, 3] cams [1, 2, 0, 0]; both matches first:
    # AP = (1/1 + 2/2)/2 = 1, INP = 2 / 2 = 1, CMC = [1, 1, 1, 1] (G = 4 < max_rank: the CMC has 4 entries).
    result = evaluate_rank(np.array([[0.1, 0.2, 0.3, 0.4]]), ids(1), ids(1, 1, 2, 3), ids(0), ids(1, 2, 0, 0))
    assert result.mAP == 1.0 and result.mINP == 1.0
    np.testing.assert_array_equal(result.cmc, [1.0, 1.0, 1.0, 1.0])
    assert result.rank(1) == 1.0 and result.num_valid_queries == 1 and result.num_skipped_queries == 0


def test_ties_rank_lower_gallery_index_first():
    # All distances equal: the ranking is the gallery order [0, 1, 2, 3]. The match is at index 2 -> rank 3:
    # CMC [0, 0, 1, 1], AP = 1/3, INP = 1/3. Moving the match to index 0 gives rank 1.
    dist = np.full((1, 4), 0.5)
    late = evaluate_rank(dist, ids(7), ids(1, 2, 7, 3), ids(0), ids(1, 1, 1, 1))
    np.testing.assert_array_equal(late.cmc, [0.0, 0.0, 1.0, 1.0])
    assert late.mAP == pytest.approx(1 / 3) and late.mINP == pytest.approx(1 / 3)
    early = evaluate_rank(dist, ids(7), ids(7, 2, 1, 3), ids(0), ids(1, 1, 1, 1))
    assert early.mAP == 1.0 and early.rank(1) == 1.0


def test_query_with_only_same_camera_match_is_skipped(caplog):
    # Query 0 (pid 1, cam 0): its only true match (gallery 0) is also cam 0 -> removed, no match -> skipped.
    # Query 1 (pid 2, cam 0): gallery order by distance [1, 2, 0]; gallery 1 is pid 2 cam 1 -> rank 1, AP 1.
    dist = np.array([[0.1, 0.2, 0.3], [0.3, 0.1, 0.2]])
    with caplog.at_level(logging.WARNING, logger="keyreid_stream.eval.rank"):
        result = evaluate_rank(dist, ids(1, 2), ids(1, 2, 3), ids(0, 0), ids(0, 1, 1))
    assert result.num_skipped_queries == 1 and result.num_valid_queries == 1
    np.testing.assert_array_equal(result.valid, [False, True])
    assert result.mAP == 1.0 and result.average_precision.shape == (1,)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 of 2 queries" in warnings[0].getMessage()


def test_junk_removal_shifts_positions():
    # Query pid 5 cam 0. Gallery sorted by distance: g0 (pid 5, cam 0: junk, removed), g1 (pid 9, cam 1),
    # g2 (pid 5, cam 0: junk), g3 (pid 5, cam 2: match), g4 (pid 9), g5 (pid 5, cam 1: match).
    # Kept order: g1, g3, g4, g5 -> matches at ranks 2 and 4 (they would be 4 and 6 without removal).
    # AP = (1/2 + 2/4) / 2 = 0.5; INP = 2 / 4 = 0.5; CMC = [0, 1, 1, 1, ...].
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]])
    result = evaluate_rank(dist, ids(5), ids(5, 9, 5, 5, 9, 5), ids(0), ids(0, 1, 0, 2, 1, 1), max_rank=3)
    assert result.mAP == pytest.approx(0.5) and result.mINP == pytest.approx(0.5)
    np.testing.assert_array_equal(result.cmc, [0.0, 1.0, 1.0])


def test_minp_with_two_matches():
    # Two queries. Q0 (pid 1, cam 0): order g0 (pid 1 cam 1, match), g1, g2, g3 (pid 1 cam 2, match) ->
    # matches at ranks 1 and 4: INP = 2/4 = 0.5, AP = (1/1 + 2/4)/2 = 0.75.
    # Q1 (pid 2, cam 0): order g1 (pid 2 cam 1, match), g2 (pid 2 cam 1, match), ... -> INP = 2/2 = 1, AP 1.
    # mINP = 0.75, mAP = 0.875.
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.9, 0.1, 0.2, 0.8]])
    result = evaluate_rank(dist, ids(1, 2), ids(1, 2, 2, 1), ids(0, 0), ids(1, 1, 1, 2))
    assert result.mINP == pytest.approx(0.75) and result.mAP == pytest.approx(0.875)
    np.testing.assert_allclose(result.average_precision, [0.75, 1.0])


def test_short_gallery_logs_info_once(caplog):
    """Said once per process, not at every validation of a training run (a size no other test uses)."""
    with caplog.at_level(logging.DEBUG, logger="keyreid_stream.eval.rank"):
        for _ in range(3):
            result = evaluate_rank(np.array([[0.2, 0.1, 0.3]]), ids(1), ids(1, 2, 3), ids(0), ids(1, 1, 1),
                                   max_rank=47)
    assert len(result.cmc) == 3
    notes = [r.levelno for r in caplog.records if "fewer than max_rank=47" in r.getMessage()]
    assert notes == [logging.INFO, logging.DEBUG, logging.DEBUG]


def test_result_views():
    result = evaluate_rank(np.random.default_rng(0).random((4, 30)), ids(1, 2, 3, 1),
                           np.arange(30) % 4, ids(0, 0, 0, 0), np.ones(30, int), max_rank=10)
    as_dict = result.as_dict()
    assert list(as_dict) == ["mAP", "mINP", "rank1", "rank5", "rank10", "valid_queries", "skipped_queries"]
    assert as_dict["rank5"] == result.rank(5) == result.cmc[4] and as_dict["valid_queries"] == 4.0
    with pytest.raises(ValueError, match="k must be in"):
        result.rank(11)
    with pytest.raises(ValueError):
        result.cmc[0] = 0.5  # read-only


def test_official_camera_ids_hand_case():
    # Tracklets with cameras [3, 5, 6, 1] and 2, 1, 4, 2 frames -> per-frame list [3, 3, 5, 6, 6, 6, 6, 1, 1];
    # the authors' code reads its first 4 entries: [3, 3, 5, 6].
    out = official_camera_ids(ids(3, 5, 6, 1), ids(2, 1, 4, 2))
    np.testing.assert_array_equal(out, [3, 3, 5, 6])


def test_official_camera_ids_can_change_the_result():
    # Queries: Q0 pid 1 cam 0 (2 frames), Q1 pid 2 cam 1 (1 frame) -> the authors' code reads cams [0, 0].
    # Gallery: g0 pid 2 cam 0, g1 pid 2 cam 1, g2 pid 1 cam 1.
    # Standard: Q0 order g2 (match) -> AP 1. Q1 order g1 (pid 2 cam 1: junk), g2 (wrong), g0 (match) ->
    #   kept g2, g0 -> rank 2, AP 1/2. mAP 0.75, rank-1 0.5.
    # Official: Q1 read as cam 0: g1 is now a match at rank 1 and g0 (pid 2 cam 0) junk -> AP 1. mAP 1.
    dist = np.array([[0.5, 0.6, 0.1], [0.3, 0.1, 0.2]])
    q_pids, g_pids, q_cams, g_cams = ids(1, 2), ids(2, 2, 1), ids(0, 1), ids(0, 1, 1)
    standard = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
    official = evaluate_rank(dist, q_pids, g_pids, official_camera_ids(q_cams, ids(2, 1)), g_cams)
    assert standard.mAP == pytest.approx(0.75) and standard.rank(1) == 0.5
    assert official.mAP == 1.0 and official.rank(1) == 1.0


def test_aggregate_results_mean_and_population_std():
    results = [evaluate_rank(np.array([[0.1, 0.2]]), ids(1), gallery, ids(0), ids(1, 1), max_rank=1)
               for gallery in (ids(1, 2), ids(2, 1))]  # AP 1 (rank 1) and 1/2 (rank 2)
    summary = aggregate_results(results)
    assert summary["mAP"] == pytest.approx((0.75, 0.25))  # population std of [1, 0.5]
    assert summary["rank1"] == pytest.approx((0.5, 0.5))
    assert summary["valid_queries"] == (1.0, 0.0)
    assert set(summary) == set(results[0].as_dict())


@pytest.mark.parametrize("results, message", [
    ([], "results is empty"),
])
def test_aggregate_results_bad_input(results, message):
    with pytest.raises(ValueError, match=message):
        aggregate_results(results)


def test_aggregate_results_rejects_different_metrics():
    short = evaluate_rank(np.array([[0.1, 0.2]]), ids(1), ids(1, 2), ids(0), ids(1, 1), max_rank=1)
    long = evaluate_rank(np.random.default_rng(0).random((1, 30)), ids(1), np.ones(30, int), ids(0),
                         np.ones(30, int))
    with pytest.raises(ValueError, match="different metrics"):
        aggregate_results([short, long])


GOOD = dict(distmat=np.zeros((2, 3)), q_pids=ids(1, 2), g_pids=ids(1, 2, 3), q_camids=ids(0, 0),
            g_camids=ids(1, 1, 1))


@pytest.mark.parametrize("change, message", [
    ({"distmat": np.zeros(3)}, "distmat must have shape"),
    ({"distmat": np.zeros((2, 0)), "g_pids": ids(), "g_camids": ids()}, "empty"),
    ({"distmat": np.zeros((0, 3)), "q_pids": ids(), "q_camids": ids()}, "empty"),
    ({"distmat": np.array([[0.0, np.nan, 1.0], [0.0, 1.0, 2.0]])}, "NaN"),
    ({"distmat": np.array([["a", "b", "c"], ["d", "e", "f"]])}, "real-valued"),
    ({"q_pids": ids(1, 2, 3)}, "q_pids has 3 entries, expected 2"),
    ({"g_pids": ids(1, 2)}, "g_pids has 2 entries, expected 3"),
    ({"q_camids": ids(0)}, "q_camids has 1 entries"),
    ({"g_camids": ids(0, 0, 0, 0)}, "g_camids has 4 entries"),
    ({"q_pids": np.array([[1, 2]])}, "1-D integer"),
    ({"g_pids": np.array([1.0, 2.0, 3.0])}, "1-D integer"),
    ({"max_rank": 0}, "max_rank must be"),
    ({"max_rank": 2.5}, "max_rank must be"),
])
def test_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        evaluate_rank(**{**GOOD, **change})


@pytest.mark.parametrize("camids, counts, message", [
    (ids(1, 2), ids(1), "frame_counts has 1 entries, expected 2"),
    (ids(1, 2), ids(1, -1), ">= 0"),
    (ids(1, 2, 3), ids(0, 1, 0), "fewer than the 3 tracklets"),
    (np.array([1.5]), ids(1), "1-D integer"),
])
def test_official_camera_ids_bad_input(camids, counts, message):
    with pytest.raises(ValueError, match=message):
        official_camera_ids(camids, counts)


def test_result_is_a_frozen_dataclass():
    result = evaluate_rank(np.array([[0.1]]), ids(1), ids(1), ids(0), ids(1))
    assert isinstance(result, RankResult)
    with pytest.raises(AttributeError):
        result.mAP = 0.0  # type: ignore[misc]
