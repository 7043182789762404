"""The vector index: exact, IVF and HNSW search against numpy brute force, removal and compaction, the auto switch
to IVF and its retraining, input validation, per-space (and truncated) galleries, the index settings and concurrent
add/search."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from keyreid_stream.matcher.config import IndexConfig  # noqa: E402
from keyreid_stream.matcher.index import GalleryIndex, VectorIndex, VectorIndexError  # noqa: E402

KINDS = ["flat", "ivf", "hnsw"]
LOGGER = "keyreid_stream.matcher.index"


def clustered(n: int, dim: int, *, clusters: int = 40, spread: float = 0.35, seed: int = 0) -> np.ndarray:
    """``n`` L2-normalised float32 vectors around ``clusters`` random centres (like descriptors of people)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    points = centres[rng.integers(0, clusters, n)] + noise
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def make_ids(n: int, start: int = 0) -> list[str]:
    return [f"{i:032x}" for i in range(start, start + n)]


def brute_force(ids: list[str], data: np.ndarray, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    scores = queries @ data.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(ids[j], float(scores[q, j])) for j in row] for q, row in enumerate(order)]


def recall(found: list[list[tuple[str, float]]], truth: list[list[tuple[str, float]]]) -> float:
    hits = sum(len({i for i, _ in f} & {i for i, _ in t}) for f, t in zip(found, truth))
    return hits / sum(len(t) for t in truth)


def assert_same_results(found: list[list[tuple[str, float]]], truth: list[list[tuple[str, float]]]) -> None:
    assert len(found) == len(truth)
    for f, t in zip(found, truth):
        assert len(f) == len(t)
        np.testing.assert_allclose([s for _, s in f], [s for _, s in t], atol=1e-5)
        scores = np.array([s for _, s in t])
        for pos, ((fid, _), (tid, _)) in enumerate(zip(f, t)):
            gaps = np.abs(scores - scores[pos])
            if np.sort(gaps)[1:2].min(initial=1.0) > 1e-5:  # not a near-tie: the id must match exactly
                assert fid == tid, f"position {pos}: {fid} != {tid}"


def queries_near(data: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picked = data[rng.choice(len(data), n, replace=False)]
    noisy = picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32)
    return (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", params=["ivf", "hnsw"])
def approx_20k(request: pytest.FixtureRequest) -> tuple[VectorIndex, list[str], np.ndarray, np.ndarray]:
    """An approximate index over 20k overlapping clusters and 200 held-out queries from the same distribution
    (recall@10 at the defaults: IVF about 0.99, HNSW about 0.99; see APPROX_KNOBS for the low settings)."""
    points = clustered(20_200, 64, clusters=200, spread=1.3, seed=3)
    data, queries = points[:20_000], points[20_000:]
    ids = make_ids(len(data))
    index = VectorIndex(64, kind=request.param)
    assert index.add(ids, data) == len(data)
    return index, ids, data, queries


# ---------------------------------------------------------------------- exactness and recall


def test_flat_equals_brute_force() -> None:
    data, ids = clustered(3000, 48), make_ids(3000)
    index = VectorIndex(48, kind="flat")
    index.add(ids, data)
    queries = queries_near(data, 60)
    assert_same_results(index.search(queries, 10), brute_force(ids, data, queries, 10))
    assert index.kind_in_use == "flat" and len(index) == 3000


# kind -> the live search setting and a value low enough to lose recall (so the recall test can fail)
APPROX_KNOBS = {"ivf": ("nprobe", 1), "hnsw": ("ef_search", 10)}


def test_approximate_recall_at_10(approx_20k: tuple[VectorIndex, list[str], np.ndarray, np.ndarray]) -> None:
    index, ids, data, queries = approx_20k
    truth = brute_force(ids, data, queries, 10)
    found = index.search(queries, 10)
    assert recall(found, truth) >= 0.95
    assert index.kind_in_use == index.kind
    assert all(scores == sorted(scores, reverse=True) for scores in ([s for _, s in row] for row in found))
    knob, low = APPROX_KNOBS[index.kind]
    default = getattr(index, knob)
    setattr(index, knob, low)  # settable on a live index
    try:
        assert recall(index.search(queries, 10), truth) < 0.9
    finally:
        setattr(index, knob, default)
    assert recall(index.search(queries, 10), truth) >= 0.95


def test_memory_accounts_for_vectors_and_structure(
    approx_20k: tuple[VectorIndex, list[str], np.ndarray, np.ndarray],
) -> None:
    index, _, data, _ = approx_20k
    assert data.nbytes < index.memory_bytes < 4 * data.nbytes + 20_000 * 600


def test_auto_switches_past_flat_max(caplog: pytest.LogCaptureFixture) -> None:
    data, ids = clustered(1500, 32), make_ids(1500)
    index = VectorIndex(32, kind="auto", flat_max=1000)
    index.add(ids[:1000], data[:1000])
    assert index.kind_in_use == "flat"
    with caplog.at_level(logging.INFO, logger=LOGGER):
        index.add(ids[1000:1200], data[1000:1200])
        index.add(ids[1200:], data[1200:])
    assert index.kind_in_use == "ivf" and len(index) == 1500
    assert index.nlist_in_use == round(4 * np.sqrt(1200))  # trained on the 1200 held when flat_max was passed
    assert sum("switching from exact search to IVF" in r.getMessage() for r in caplog.records) == 1
    queries = queries_near(data, 100)
    found, truth = index.search(queries, 10), brute_force(ids, data, queries, 10)
    assert recall(found, truth) >= 0.95
    assert [row[0][0] for row in index.search(data[:50], 1)] == ids[:50]  # every vector finds itself


def test_ivf_retrains_after_8x_growth(caplog: pytest.LogCaptureFixture) -> None:
    data, ids = clustered(6500, 32, clusters=100), make_ids(6500)
    gone = ids[:800:40]
    index = VectorIndex(32, kind="ivf")
    with caplog.at_level(logging.INFO, logger=LOGGER):
        index.add(ids[:50], data[:50])
        assert index.kind_in_use == "flat"  # fewer vectors than the 64 lists it would train
        index.add(ids[50:100], data[50:100])
        assert index.kind_in_use == "ivf" and index.nlist_in_use == 64  # clamp(round(4 * sqrt(100)), 64, 4096)
        for start in range(100, 6500, 100):
            if start == 800:
                assert index.nlist_in_use == round(4 * np.sqrt(800))  # retrained at 8 x 100
                assert index.remove(gone) == 20  # 780 live: the next retraining at 8 x 800
            assert index.nlist_in_use == (64 if start < 800 else round(4 * np.sqrt(800)))
            index.add(ids[start : start + 100], data[start : start + 100])
    retrains = [r.getMessage() for r in caplog.records if "retrain rebuilt" in r.getMessage()]
    assert len(retrains) == 2 and "rebuilt 800 vectors" in retrains[0] and "rebuilt 6480 vectors" in retrains[1]
    assert index.nlist_in_use == round(4 * np.sqrt(6480)) and len(index) == 6480
    live = [j for j, i in enumerate(ids) if i not in set(gone)]
    queries = queries_near(data, 200)
    found = index.search(queries, 10)
    assert recall(found, brute_force([ids[j] for j in live], data[live], queries, 10)) >= 0.95
    assert all(i not in gone for row in index.search(data[:100], 50) for i, _ in row)
    sample = live[::40]
    assert [row[0][0] for row in index.search(data[sample], 1)] == [ids[j] for j in sample]


def test_ivf_with_a_fixed_nlist() -> None:
    data, ids = clustered(2000, 16), make_ids(2000)
    index = VectorIndex(16, kind="ivf", nlist=100, nprobe=500)  # nprobe above nlist: every list, exact results
    index.add(ids[:99], data[:99])
    assert index.kind_in_use == "flat"
    index.add(ids[99:], data[99:])
    assert index.kind_in_use == "ivf" and index.nlist_in_use == 100
    assert_same_results(index.search(data[:30], 10), brute_force(ids, data, data[:30], 10))


# ---------------------------------------------------------------------- updates


@pytest.mark.parametrize("kind", KINDS)
def test_add_is_idempotent(kind: str) -> None:
    data, ids = clustered(200, 16), make_ids(200)
    index = VectorIndex(16, kind=kind)
    assert index.add(ids[:150], data[:150]) == 150
    assert index.kind_in_use == kind
    assert index.add(ids, data) == 50  # only the new ones
    assert index.add(ids[:10], -data[:10]) == 0  # a present id keeps its first vector
    assert index.add(ids[200:] + ["a" * 32, "a" * 32], data[:2]) == 1  # repeats within a batch: the first wins
    assert len(index) == 201 and ids[0] in index and "a" * 32 in index and "b" * 32 not in index
    best = index.search(data[:10], 1)
    assert [row[0][0] for row in best] == ids[:10]
    assert all(abs(row[0][1] - 1.0) < 1e-5 for row in best)


@pytest.mark.parametrize("kind", KINDS)
def test_removed_ids_are_never_returned(kind: str) -> None:
    data, ids = clustered(400, 16), make_ids(400)
    index = VectorIndex(16, kind=kind)
    index.add(ids, data)
    assert index.kind_in_use == kind
    gone = set(ids[::7])
    assert index.remove(list(gone) + ["f" * 32]) == len(gone)
    assert index.remove(gone) == 0
    with pytest.raises(VectorIndexError, match="single string"):
        index.remove(ids[0])
    assert len(index) == 400 - len(gone) and all(i not in index for i in gone)
    found = index.search(data, 400)
    assert all(i not in gone for row in found for i, _ in row)
    assert all(len(row) == 10 for row in index.search(data[::7], 10))  # masked inside the search, not after it
    assert all(len(row) == 400 - len(gone) or kind != "flat" for row in found)
    keep = [j for j, i in enumerate(ids) if i not in gone]
    truth = brute_force([ids[j] for j in keep], data[keep], data[:40], 10)
    assert recall(index.search(data[:40], 10), truth) >= (1.0 if kind == "flat" else 0.95)


@pytest.mark.parametrize("kind", KINDS)
def test_remove_then_readd_uses_the_new_vector(kind: str) -> None:
    data, ids = clustered(300, 16), make_ids(300)
    index = VectorIndex(16, kind=kind)
    index.add(ids, data)
    assert index.kind_in_use == kind
    assert index.remove([ids[5]]) == 1
    assert index.add([ids[5]], data[6:7]) == 1
    assert len(index) == 300
    hits = index.search(data[6:7], 300)[0]  # at the new vector (IVF scans only the lists near the query)
    assert {i: s for i, s in hits if abs(s - 1.0) < 1e-5}.keys() >= {ids[5], ids[6]}
    assert [i for i, _ in hits].count(ids[5]) == 1
    old = index.search(data[5:6], 300)[0]  # at the old vector: gone (found only as the new one, if at all)
    assert all(abs(s - float(data[5] @ data[6])) < 1e-5 for i, s in old if i == ids[5])
    assert old[0][0] != ids[5]


def test_hnsw_compaction_keeps_results_correct(caplog: pytest.LogCaptureFixture) -> None:
    data, ids = clustered(2000, 24), make_ids(2000)
    index = VectorIndex(24, kind="hnsw")
    index.add(ids, data)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        index.remove(ids[:400])  # 20 %: masked only
        assert not any("compaction" in r.getMessage() for r in caplog.records)
        index.remove(ids[400:700])  # 35 % of the stored vectors: the graph is rebuilt
        assert any("compaction rebuilt 1300 vectors as hnsw" in r.getMessage() for r in caplog.records)
    assert len(index) == 1300 and index.kind_in_use == "hnsw"
    found = index.search(data[:700], 5)  # queries at removed vectors
    assert all(int(i, 16) >= 700 for row in found for i, _ in row)
    truth = brute_force(ids[700:], data[700:], data[:200], 10)
    assert recall(index.search(data[:200], 10), truth) >= 0.95
    assert index.add(ids[:100], data[:100]) == 100  # removed ids can come back after a compaction
    assert [row[0][0] for row in index.search(data[:100], 1)] == ids[:100]


def test_auto_goes_back_to_flat_below_half_flat_max() -> None:
    data, ids = clustered(600, 16), make_ids(600)
    index = VectorIndex(16, kind="auto", flat_max=500)
    index.add(ids, data)
    assert index.kind_in_use == "ivf"
    index.remove(ids[:300])
    assert index.kind_in_use == "ivf" and len(index) == 300  # above flat_max // 2: no flapping
    index.remove(ids[300:400])
    assert index.kind_in_use == "flat" and len(index) == 200
    assert_same_results(index.search(data[:20], 10), brute_force(ids[400:], data[400:], data[:20], 10))
    index.add(ids[:400], data[:400])  # past flat_max again: trained anew
    assert index.kind_in_use == "ivf" and len(index) == 600


# ---------------------------------------------------------------------- edges and bad input


@pytest.mark.parametrize("kind", KINDS)
def test_k_larger_than_index_and_empty_index(kind: str) -> None:
    index = VectorIndex(8, kind=kind)
    queries = clustered(3, 8)
    assert index.search(queries, 5) == [[], [], []]
    assert index.search(np.zeros((0, 8), np.float32), 5) == []
    index.add(make_ids(4), clustered(4, 8, seed=2))
    found = index.search(queries, 50)
    assert [len(row) for row in found] == [4, 4, 4]
    assert index.kind_in_use == ("flat" if kind == "ivf" else kind)  # too few to train an IVF: exact
    index.remove(make_ids(4))
    assert index.search(queries, 5) == [[], [], []] and len(index) == 0


def test_vectors_are_renormalised() -> None:
    data, ids = clustered(50, 8), make_ids(50)
    index = VectorIndex(8, kind="flat")
    index.add(ids, data.astype(np.float64) * 7.0)
    best = index.search(data[:5] * 0.1, 1)
    assert [row[0][0] for row in best] == ids[:5] and all(abs(row[0][1] - 1.0) < 1e-5 for row in best)


BAD_INPUTS = [
    ("add", {"ids": make_ids(2), "vectors": np.ones((2, 9), np.float32)}, "dimension 9"),
    ("add", {"ids": make_ids(2), "vectors": np.ones(8, np.float32)}, "2-D"),
    ("add", {"ids": make_ids(3), "vectors": np.ones((2, 8), np.float32)}, "3 ids for 2 vectors"),
    ("add", {"ids": make_ids(2), "vectors": np.array([[np.nan] * 8, [1.0] * 8], np.float32)}, "NaN"),
    ("add", {"ids": make_ids(1), "vectors": np.array([[np.inf] + [0.0] * 7])}, "infinite"),
    ("add", {"ids": [1, 2], "vectors": np.ones((2, 8), np.float32)}, "strings"),
    ("add", {"ids": "ab", "vectors": np.ones((2, 8), np.float32)}, "single string"),
    ("add", {"ids": make_ids(1), "vectors": np.array([["x"] * 8])}, "float array"),
    ("search", {"queries": np.ones((1, 8), np.float32), "k": 0}, "k must be >= 1"),
    ("search", {"queries": np.ones((1, 7), np.float32), "k": 1}, "dimension 7"),
    ("search", {"queries": np.full((1, 8), np.nan, np.float32), "k": 1}, "NaN"),
]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("method", "kwargs", "message"), BAD_INPUTS)
def test_bad_input_raises(kind: str, method: str, kwargs: dict, message: str) -> None:
    index = VectorIndex(8, kind=kind)
    index.add(make_ids(1, start=99), np.ones((1, 8), np.float32))
    with pytest.raises(VectorIndexError, match=message):
        getattr(index, method)(**kwargs)
    assert len(index) == 1  # nothing half-added


BAD_SETTINGS = [
    {"dim": 0}, {"dim": 8, "kind": "lsh"}, {"dim": 8, "hnsw_m": 1}, {"dim": 8, "flat_max": -1}, {"dim": 8, "threads": 0},
    {"dim": 8, "nprobe": 0}, {"dim": 8, "nlist": 0},
]


@pytest.mark.parametrize("kwargs", BAD_SETTINGS)
def test_bad_construction_raises(kwargs: dict) -> None:
    with pytest.raises(VectorIndexError):
        VectorIndex(**kwargs)


def test_threads_apply_around_each_faiss_call(monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenMP's thread count belongs to the calling OS thread: the index sets it around its own calls (one thread
    for small query batches) and restores it."""
    index = VectorIndex(8, kind="flat", threads=1)
    calls: list[int] = []
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: calls.append(n))
    monkeypatch.setattr(faiss, "omp_get_max_threads", lambda: 2)
    index.add(make_ids(40), clustered(40, 8))
    assert calls == [1, 2]
    calls.clear()
    index.search(clustered(3, 8), 5)  # a small batch: one thread
    index.search(clustered(40, 8), 5)  # a large batch: the configured threads
    assert calls == [1, 2, 1, 2]
    calls.clear()
    plain = VectorIndex(8, kind="flat")  # threads=None: adds and large batches leave the setting alone
    plain.add(make_ids(40), clustered(40, 8))
    plain.search(clustered(40, 8), 5)
    assert calls == []


# ---------------------------------------------------------------------- gallery


def test_gallery_keeps_spaces_separate() -> None:
    gallery = GalleryIndex(kind="flat")
    a, b = clustered(100, 16, seed=1), clustered(50, 32, seed=2)
    assert gallery.add("osnet@1/16", make_ids(100), a) == 100
    assert gallery.add("keyreid@2/32", make_ids(50, start=1000), b) == 50
    assert gallery.spaces() == {"osnet@1/16": 100, "keyreid@2/32": 50} and len(gallery) == 150
    assert all(int(i, 16) < 100 for row in gallery.search("osnet@1/16", a[:5], 200) for i, _ in row)
    assert all(int(i, 16) >= 1000 for row in gallery.search("keyreid@2/32", b[:5], 200) for i, _ in row)
    with pytest.raises(VectorIndexError, match="dimension"):
        gallery.search("osnet@1/16", b[:1], 3)
    with pytest.raises(VectorIndexError, match="another descriptor space"):
        gallery.add("keyreid@2/32", make_ids(1), b[:1])
    assert gallery.remove(make_ids(3) + make_ids(2, start=1000) + ["e" * 32]) == 5
    assert gallery.spaces() == {"osnet@1/16": 97, "keyreid@2/32": 48}
    assert gallery.index("osnet@1/16") is not None and gallery.index("nope") is None


def test_gallery_max_dim_truncates() -> None:
    """Only the first ``max_dim`` values count: a query whose tail differs finds the same neighbour, and the
    scores are the cosine of the truncated, re-normalised vectors."""
    rng = np.random.default_rng(7)
    head = clustered(500, 16, seed=4) * rng.uniform(0.5, 2.0, (500, 1)).astype(np.float32)
    full = np.hstack([head, rng.standard_normal((500, 48)).astype(np.float32)])  # 64 values, 16 kept
    ids = make_ids(500)
    gallery = GalleryIndex(max_dim=16, kind="flat")
    assert gallery.max_dim == 16
    assert gallery.add("keyreid@1/64", ids, full) == 500
    assert gallery.index("keyreid@1/64").dim == 16
    queries = np.hstack([head[:20], rng.standard_normal((20, 48)).astype(np.float32) * 10])  # other tails
    found = gallery.search("keyreid@1/64", queries, 5)
    assert [row[0][0] for row in found] == ids[:20] and all(abs(row[0][1] - 1.0) < 1e-5 for row in found)
    cut = head / np.linalg.norm(head, axis=1, keepdims=True)
    assert_same_results(found, brute_force(ids, cut, cut[:20], 5))
    exact = full[:20] @ full.T / np.outer(np.linalg.norm(full[:20], axis=1), np.linalg.norm(full, axis=1))
    assert not np.allclose([row[1][1] for row in found], [exact[q, ids.index(row[1][0])] for q, row in
                                                           enumerate(found)], atol=1e-3)  # not the full cosine
    with pytest.raises(VectorIndexError, match="dimension 16, descriptor space 'keyreid@1/64' holds dimension 64"):
        gallery.search("keyreid@1/64", head[:1], 3)  # a vector of another size is an error, not truncated
    with pytest.raises(VectorIndexError, match="dimension 80"):
        gallery.add("keyreid@1/64", make_ids(1, start=900), np.ones((1, 80), np.float32))
    tail_nan = full[:1].copy()
    tail_nan[0, 40] = np.nan
    with pytest.raises(VectorIndexError, match="NaN"):
        gallery.search("keyreid@1/64", tail_nan, 3)
    assert gallery.add("osnet@1/8", make_ids(10, start=1000), clustered(10, 8)) == 10  # smaller: kept whole
    assert gallery.index("osnet@1/8").dim == 8 and gallery.spaces() == {"keyreid@1/64": 500, "osnet@1/8": 10}
    with pytest.raises(VectorIndexError, match="max_dim"):
        GalleryIndex(max_dim=0)


def test_gallery_unknown_space() -> None:
    gallery = GalleryIndex()
    assert gallery.search("nope@0/8", np.ones((2, 8), np.float32), 5) == [[], []]
    assert gallery.add("nope@0/8", [], np.zeros((0, 8), np.float32)) == 0
    assert gallery.spaces() == {} and len(gallery) == 0
    with pytest.raises(VectorIndexError):
        gallery.search("nope@0/8", np.ones((2, 8), np.float32), 0)


# ---------------------------------------------------------------------- concurrency


def test_concurrent_add_and_search() -> None:
    """The matcher adds while the API searches: through the auto switch to IVF and one retraining, no errors,
    correct end state."""
    data, ids = clustered(20_000, 32, clusters=100), make_ids(20_000)
    index = VectorIndex(32, kind="auto", flat_max=1_500)  # trained at 2,000 vectors, retrained at 16,000
    errors: list[BaseException] = []
    done = threading.Event()
    searches = 0

    def writer() -> None:
        try:
            for start in range(0, len(data), 1000):
                index.add(ids[start : start + 1000], data[start : start + 1000])
        except BaseException as error:
            errors.append(error)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    rng = np.random.default_rng(5)
    try:
        while not done.is_set():
            queries = data[rng.integers(0, len(data), 4)]
            for row in index.search(queries, 10):
                scores = [s for _, s in row]
                assert scores == sorted(scores, reverse=True) and len(row) <= 10
            searches += 1
    finally:
        thread.join()
    assert not errors and searches > 0
    assert len(index) == 20_000 and index.kind_in_use == "ivf" and index.nlist_in_use == round(4 * np.sqrt(16_000))
    sample = rng.choice(len(data), 300, replace=False)
    assert np.mean([row[0][0] == ids[j] for row, j in zip(index.search(data[sample], 1), sample)]) >= 0.98
    queries = queries_near(data, 100)
    assert recall(index.search(queries, 10), brute_force(ids, data, queries, 10)) >= 0.95


# ---------------------------------------------------------------------- settings


def test_index_config_defaults_reach_the_index() -> None:
    config = IndexConfig()
    assert (config.kind, config.nprobe, config.nlist, config.max_dim) == ("auto", 32, None, None)
    index = VectorIndex(8, kind=config.kind, flat_max=config.flat_max, nprobe=config.nprobe, nlist=config.nlist)
    assert (index.kind, index.nprobe, index.nlist) == ("auto", 32, None)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "lsh"}, "index.kind"),
    ({"nprobe": 0}, "index.nprobe"),
    ({"nlist": 0}, "index.nlist"),
    ({"max_dim": 0}, "index.max_dim"),
    ({"flat_max": 0}, "index.flat_max"),
    ({"threads": 0}, "index.threads"),
])
def test_index_config_rejects(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        IndexConfig(**kwargs)
