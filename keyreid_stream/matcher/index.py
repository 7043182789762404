"""Nearest-neighbour search over stored tracklet descriptors (faiss, inner product = cosine).

* :class:`VectorIndex` -- the descriptors of ONE descriptor space: exact (``IndexFlatIP``) while small, inverted
  lists (``IndexIVFFlat``) when large, or an HNSW graph (``IndexHNSWFlat``) on request; string tracklet ids mapped
  to faiss' int64 labels.
* :class:`GalleryIndex` -- one :class:`VectorIndex` per descriptor space (see
  :func:`~keyreid_stream.matcher.state.records.descriptor_space`), created on the first add to that space, optionally
  over truncated descriptors (``max_dim``).

Why IVF for large indexes: the matcher rebuilds its index from Redis at every start. An IVF index is trained once
(k-means on a sample) and then adds vectors at tens of thousands per second, where an HNSW graph adds about a
thousand per second on two cores (a quarter of an hour per million vectors and more); a single IVF query scans
``nprobe`` of its ``nlist`` lists, a few milliseconds at a million vectors.

Concurrency: every method may be called from any thread. Writers (add, remove) are serialised by a writer lock;
the faiss index and the id maps are guarded by a state lock that a writer holds only for one chunk of an add, a
removal, or the swap after a rebuild. A large add therefore lets searches in between its chunks of about 0.2 s
(a search may see part of a batch), and a rebuild (IVF training and retraining, HNSW compaction) runs outside the
state lock: searches go on against the old index until the new one is swapped in, while adds and removals wait.
Searches run one at a time; faiss spreads a batch of queries over its OpenMP threads, while a small batch (the
API's single queries) runs on the calling thread alone: an OpenMP team gains nothing there and, on a busy machine,
waits a scheduler tick for a descheduled member (milliseconds instead of a fraction of one).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import faiss as _faiss
import numpy as np
from faiss.contrib.inspect_tools import get_invlist as _get_invlist

from keyreid_stream.matcher.state.records import normalize

# faiss's bundled type stubs know the base classes only (no SWIG downcasts: .hnsw, .nlist, .id_map,
# SearchParametersHNSW), so the module is used untyped here.
faiss: Any = _faiss
get_invlist: Callable[..., tuple[np.ndarray, np.ndarray]] = _get_invlist

__all__ = ["GalleryIndex", "IndexKind", "VectorIndex", "VectorIndexError"]

log = logging.getLogger(__name__)

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]
Structure = Literal["flat", "ivf", "hnsw"]
_KINDS = ("auto", "flat", "ivf", "hnsw")
_CHUNK_SECONDS = 0.2  # an add holds the state lock for about this long per chunk (the chunk size adapts)
_CHUNK_MIN, _CHUNK_MAX = 512, 10_000  # rows per chunk; HNSW inserts are ~100x the work of an exact index's
_NLIST_MIN, _NLIST_MAX = 64, 4096  # IVF lists when chosen at training time: clamp(round(4 * sqrt(n)), ...)
_TRAIN_PER_LIST = 64  # IVF k-means trains on at most this many sampled vectors per list
_RETRAIN_GROWTH = 8  # retrain the IVF once the live count is this many times the count it was trained on
_TRAIN_SEED = 20_240_611  # the training sample is drawn with a fixed seed (faiss' k-means is seeded too)
_SERIAL_QUERIES = 16  # query batches smaller than this search on the calling thread only
_COMPACT_FRACTION = 0.25  # rebuild the HNSW graph when more than this fraction of stored vectors is deleted
_ID_OVERHEAD_BYTES = 150  # per live id in the Python maps: str (32 chars), dict entry, int label (approximate)


class VectorIndexError(ValueError):
    """Bad input to an index: wrong shape or dimension, non-finite values, ids and rows that do not match, k < 1."""


class VectorIndex:
    """Nearest-neighbour search over L2-normalised descriptors of ONE descriptor space (inner product = cosine).

    ``kind``:

    * "flat": exact search (``IndexFlatIP``).
    * "ivf": inverted lists (``IndexIVFFlat``, exact inner products within the ``nprobe`` lists nearest to the
      query). Exact search until the index holds enough vectors to train its lists (``nlist``; 64 when None).
    * "auto": exact up to ``flat_max`` live vectors, then IVF; a removal that leaves at most ``flat_max // 2``
      goes back to exact search.
    * "hnsw": an HNSW graph (the lowest single-query latency, but it builds at about a thousand vectors per second
      on two cores: minutes per hundred thousand vectors at every matcher start).

    IVF: ``nlist`` lists (None: chosen at each training as clamp(round(4 * sqrt(n)), 64, 4096) for the n live
    vectors), trained (spherical k-means) on a seeded random sample of at most 64 * nlist of the live vectors at
    that moment; retrained -- a full rebuild, searches continue on the old index -- once the live count reaches 8
    times the count it was trained on. ``nprobe``: the lists a search scans (recall against latency; may be
    changed on a live index).
    ``hnsw_m``, ``ef_construction``, ``ef_search``: the HNSW graph degree and beam widths (a search uses at least
    ``k``; ``ef_search`` may be changed on a live index). ``threads``: when given, the OpenMP threads faiss uses
    for adds, rebuilds, training and large query batches (set around each call: OpenMP's setting belongs to the
    calling OS thread).

    Vectors are stored once, in faiss. Removal from an exact or IVF index is physical (IVF: a scan of every list's
    ids, a few milliseconds at a million vectors); HNSW cannot remove, so removed ids are masked out of searches
    and the graph is rebuilt from the live vectors once more than a quarter of the stored vectors are deleted. A
    rebuild briefly holds the old and the new index (about twice the memory; an IVF training sample adds up to
    64 * nlist vectors). An IVF (re)training at a few hundred thousand vectors takes about a minute on two cores,
    during which adds wait.
    """

    def __init__(
        self,
        dim: int,
        *,
        kind: IndexKind = "auto",
        flat_max: int = 50_000,
        hnsw_m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 96,
        nlist: int | None = None,
        nprobe: int = 32,
        threads: int | None = None,
    ) -> None:
        _check(isinstance(dim, int) and dim >= 1, f"dim must be a positive int, got {dim!r}")
        _check(kind in _KINDS, f"kind must be one of {_KINDS}, got {kind!r}")
        _check(flat_max >= 0, f"flat_max must be >= 0, got {flat_max}")
        _check(hnsw_m >= 2 and ef_construction >= 1 and ef_search >= 1, "hnsw_m must be >= 2, ef_* >= 1")
        _check(nlist is None or nlist >= 1, f"nlist must be >= 1 or None, got {nlist}")
        _check(nprobe >= 1, f"nprobe must be >= 1, got {nprobe}")
        _check(threads is None or threads >= 1, f"threads must be >= 1, got {threads}")
        self.dim = dim
        self.threads = threads
        self.kind: IndexKind = kind
        self.flat_max = flat_max
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nlist = nlist
        self.nprobe = nprobe
        self._write_lock = threading.Lock()  # serialises add / remove / rebuild
        self._lock = threading.Lock()  # guards the faiss index and the maps below
        self._waiting_lock = threading.Lock()  # guards the count of searches waiting for the state lock
        self._waiting = 0
        self._chunk_rows = {"flat": _CHUNK_MAX, "ivf": _CHUNK_MIN, "hnsw": _CHUNK_MIN}
        self._kind_in_use: Structure = "hnsw" if kind == "hnsw" else "flat"
        self._index = self._new_faiss_index(self._kind_in_use)
        self._trained_on = 0  # live vectors when the IVF in use was trained
        self._labels: dict[str, int] = {}  # live id -> faiss label
        self._names = np.empty(0, dtype=object)  # faiss label -> id (labels of removed ids keep their name)
        self._live = np.zeros(0, dtype=bool)  # faiss label -> still live
        self._next_label = 0
        self._deleted = 0  # stored in the HNSW graph but removed
        self._selector: tuple[faiss.IDSelector, np.ndarray] | None = None  # cached live-label bitmap (HNSW)
        self._switch_logged = False

    # ------------------------------------------------------------------ queries

    def __len__(self) -> int:
        return len(self._labels)  # a single dict read: atomic, no lock needed

    def __contains__(self, tracklet_id: object) -> bool:
        return tracklet_id in self._labels

    @property
    def kind_in_use(self) -> Structure:
        """The structure currently answering searches ("auto" and "ivf" start "flat")."""
        return self._kind_in_use

    @property
    def nlist_in_use(self) -> int | None:
        """The lists of the IVF index in use (None while another structure answers)."""
        index = self._index
        return int(index.nlist) if isinstance(index, faiss.IndexIVF) else None

    @property
    def memory_bytes(self) -> int:
        """Approximate memory held: stored vectors, faiss labels, the HNSW graph and the Python id maps."""
        with self._lock:
            stored = int(self._index.ntotal)
            total = stored * (self.dim * 4 + 8) + self._names.nbytes + self._live.nbytes
            total += len(self._labels) * _ID_OVERHEAD_BYTES
            if self._kind_in_use == "hnsw":
                total += _hnsw_graph_bytes(faiss.downcast_index(self._index.index).hnsw)
            elif self._kind_in_use == "ivf":
                total += self._index.nlist * (self.dim * 4 + 64)  # centroids, list headers
        return total

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` most similar live ids per query row, as (id, cosine), best first; fewer when the index holds
        fewer. Removed ids are never returned."""
        _check(isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k >= 1, f"k must be >= 1, got {k!r}")
        matrix = _as_matrix(queries, self.dim, "queries")
        if matrix.shape[0] == 0:
            return []
        with self._waiting_lock:
            self._waiting += 1
        with self._lock:
            with self._waiting_lock:
                self._waiting -= 1
            if not self._labels:
                return [[] for _ in range(matrix.shape[0])]
            k_eff = int(min(k, self._index.ntotal))
            with _omp_threads(1 if matrix.shape[0] < _SERIAL_QUERIES else self.threads):
                scores, labels = self._index.search(matrix, k_eff, params=self._search_params(k_eff))
            valid = labels >= 0
            valid[valid] = self._live[labels[valid]]  # removed ids are gone or masked already: a cheap guard
            names = self._names[np.where(valid, labels, 0)]
        return [list(zip(names[row][keep].tolist(), scores[row][keep].tolist())) for row, keep in enumerate(valid)]

    # ------------------------------------------------------------------ updates

    def add(self, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Store ``vectors`` (N, dim) under ``ids`` (N tracklet ids). Ids already present (and repeats within the
        batch) are skipped: the first vector stored for an id is kept. Returns how many were added."""
        ids = _as_ids(ids)
        matrix = _as_matrix(vectors, self.dim, "vectors")
        _check(len(ids) == matrix.shape[0], f"got {len(ids)} ids for {matrix.shape[0]} vectors")
        with self._write_lock:
            rows = _new_rows(ids, self._labels)
            done = 0
            while done < len(rows):
                kind, started = self._kind_in_use, time.perf_counter()
                chunk = rows[done : done + self._chunk_rows[kind]]
                with self._lock, _omp_threads(self.threads):
                    labels = self._allocate([ids[r] for r in chunk])
                    self._index.add_with_ids(matrix[chunk], labels)
                rate = len(chunk) / max(time.perf_counter() - started, 1e-6)
                self._chunk_rows[kind] = int(np.clip(rate * _CHUNK_SECONDS, _CHUNK_MIN, _CHUNK_MAX))
                done += len(chunk)
                self._maybe_train()
                self._let_searches_in()
        return len(rows)

    def remove(self, ids: Iterable[str]) -> int:
        """Forget ``ids``; unknown ids are ignored. Returns how many were present."""
        _check(not isinstance(ids, str), "ids must be an iterable of strings, got a single string")
        unique = dict.fromkeys(ids)  # any error (an unhashable id) before anything changes
        with self._write_lock:
            with self._lock:
                labels = [self._labels.pop(i) for i in unique if i in self._labels]
                if not labels:
                    return 0
                array = np.asarray(labels, dtype=np.int64)
                self._live[array] = False
                self._selector = None
                if self._kind_in_use == "hnsw":
                    self._deleted += len(labels)
                else:
                    with _omp_threads(self.threads):
                        self._index.remove_ids(faiss.IDSelectorBatch(array))
            if self._kind_in_use == "hnsw" and self._deleted > _COMPACT_FRACTION * self._index.ntotal:
                self._rebuild("hnsw", reason="compaction")
            elif self.kind == "auto" and self._kind_in_use == "ivf" and len(self._labels) <= self.flat_max // 2:
                self._rebuild("flat", reason="shrink")
        return len(labels)

    # ------------------------------------------------------------------ internals

    def _new_faiss_index(self, kind: Structure, nlist: int = 0) -> faiss.Index:
        if kind == "ivf":
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.cp.min_points_per_centroid = 1  # small trainings are deliberate (see _nlist_for): no warning
            ivf.nprobe = min(self.nprobe, nlist)
            return ivf  # int64 ids natively (add_with_ids, remove_ids): no IDMap; the wrapper keeps the quantizer
        if kind == "flat":
            inner = faiss.IndexFlatIP(self.dim)
        else:
            inner = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            inner.hnsw.efConstruction = self.ef_construction
            inner.hnsw.efSearch = self.ef_search
        return faiss.IndexIDMap(inner)  # the Python wrapper keeps ``inner`` alive

    def _let_searches_in(self) -> None:
        """Between two chunks of an add: wait (briefly) until the searches queued on the state lock got it, since
        a lock is not fair and the writer would otherwise take it straight back."""
        deadline = time.monotonic() + _CHUNK_SECONDS
        while self._waiting and time.monotonic() < deadline:
            time.sleep(0.0002)

    def _nlist_for(self, live: int) -> int:
        return self.nlist or int(np.clip(round(4 * np.sqrt(live)), _NLIST_MIN, _NLIST_MAX))

    def _maybe_train(self) -> None:
        """After a chunk of an add (writer lock held): train the IVF once "auto" holds more than ``flat_max`` live
        vectors ("ivf": once there are enough to train), retrain it after 8x growth."""
        live = len(self._labels)
        if self._kind_in_use == "flat" and self.kind in ("auto", "ivf"):
            if live < self._nlist_for(live) or (self.kind == "auto" and live <= self.flat_max):
                return
            if not self._switch_logged:
                log.info("vector index (dim %d): %d vectors, switching from exact search to IVF (nprobe=%d)",
                         self.dim, live, self.nprobe)
                self._switch_logged = True
            self._rebuild("ivf", reason="switch")
        elif self._kind_in_use == "ivf" and live >= _RETRAIN_GROWTH * self._trained_on:
            self._rebuild("ivf", reason="retrain")

    def _allocate(self, ids: list[str]) -> np.ndarray:
        """New faiss labels for ``ids`` (state lock held)."""
        start, end = self._next_label, self._next_label + len(ids)
        if end > self._names.size:
            capacity = max(end, 2 * self._names.size, 1024)
            self._names = np.concatenate([self._names, np.empty(capacity - self._names.size, dtype=object)])
            self._live = np.concatenate([self._live, np.zeros(capacity - self._live.size, dtype=bool)])
        self._names[start:end] = ids
        self._live[start:end] = True
        self._labels.update(zip(ids, range(start, end)))
        self._next_label = end
        self._selector = None
        return np.arange(start, end, dtype=np.int64)

    def _search_params(self, k: int) -> faiss.SearchParameters | None:
        """IVF: the lists to scan. HNSW: the beam width and, when ids were removed, a selector of the live labels
        (state lock held)."""
        if self._kind_in_use == "flat":
            return None
        if self._kind_in_use == "ivf":
            ivf_params = faiss.SearchParametersIVF()
            ivf_params.nprobe = int(min(self.nprobe, self._index.nlist))
            return ivf_params
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        if self._deleted:
            if self._selector is None:
                bits = np.packbits(self._live[: self._next_label], bitorder="little")
                self._selector = (faiss.IDSelectorBitmap(bits.size, faiss.swig_ptr(bits)), bits)
            params.sel = self._selector[0]
        return params

    def _live_chunks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(labels, vectors) of the live stored vectors, in chunks (writer lock held: the stored set is fixed)."""
        for labels, vectors in _stored_chunks(self._index, self.dim):
            keep = self._live[labels]
            if keep.all():
                yield labels, vectors
            elif keep.any():
                yield labels[keep], vectors[keep]

    def _training_sample(self, live: int, size: int) -> np.ndarray:
        """``size`` of the ``live`` stored vectors, drawn with a fixed seed (writer lock held)."""
        picked = np.sort(np.random.default_rng(_TRAIN_SEED).choice(live, size, replace=False))
        parts, offset = [], 0
        for _, vectors in self._live_chunks():
            low, high = np.searchsorted(picked, [offset, offset + vectors.shape[0]])
            if high > low:
                parts.append(vectors[picked[low:high] - offset])
            offset += vectors.shape[0]
        return np.ascontiguousarray(np.concatenate(parts))

    def _rebuild(self, kind: Structure, *, reason: str) -> None:
        """Rebuild as ``kind`` from the live stored vectors, relabelled 0..n-1; an IVF is trained first (writer
        lock held; searches continue on the old index until the swap)."""
        started = time.perf_counter()
        live = len(self._labels)
        detail = ""
        if kind == "ivf":
            nlist = self._nlist_for(live)
            new = self._new_faiss_index("ivf", nlist)
            sample = self._training_sample(live, min(live, _TRAIN_PER_LIST * nlist))
            with _omp_threads(self.threads):
                new.train(sample)
            detail = (f" (nlist {nlist}, nprobe {self.nprobe}; trained on {sample.shape[0]} vectors in "
                      f"{time.perf_counter() - started:.1f} s)")
            del sample
        else:
            new = self._new_faiss_index(kind)
        names = np.empty(live, dtype=object)
        count = 0
        for labels, vectors in self._live_chunks():
            names[count : count + labels.size] = self._names[labels]
            with _omp_threads(self.threads):
                new.add_with_ids(vectors, np.arange(count, count + labels.size, dtype=np.int64))
            count += labels.size
        with self._lock:
            self._index, self._kind_in_use = new, kind
            self._names, self._live = names[:count], np.ones(count, dtype=bool)
            self._labels = dict(zip(self._names.tolist(), range(count)))
            self._next_label, self._deleted, self._selector = count, 0, None
            self._trained_on = count if kind == "ivf" else 0
        log.info("vector index (dim %d): %s rebuilt %d vectors as %s in %.1f s%s", self.dim, reason, count, kind,
                 time.perf_counter() - started, detail)


class GalleryIndex:
    """One VectorIndex per descriptor space, created on first add with that space's dimension.

    ``index_kwargs`` go to every :class:`VectorIndex`. An id lives in one space: adding it to another space while
    it is present raises :class:`VectorIndexError`.

    ``max_dim``: when set, every vector added or searched is truncated to its first ``max_dim`` values and
    re-normalised before it reaches the index (a full KeyRe-ID descriptor has 19,200 values, 77 KB; its first 768
    are its global feature: a million tracklets need 3 GB instead of 77 GB). A space still takes vectors of its
    full dimension (the first add fixes it; other sizes are errors), but the scores returned are then the cosine
    of the TRUNCATED vectors: callers re-score the candidates exactly against the full descriptors (the query
    layer does, see :class:`~keyreid_stream.matcher.api.queries.MatcherQueries`), and should ask for more candidates
    than they keep, since the ranking is approximate.
    """

    def __init__(self, max_dim: int | None = None, **index_kwargs: object) -> None:
        _check(max_dim is None or (isinstance(max_dim, int) and not isinstance(max_dim, bool) and max_dim >= 1),
               f"max_dim must be a positive int or None, got {max_dim!r}")
        self.max_dim = max_dim
        self._index_kwargs = index_kwargs
        self._indexes: dict[str, VectorIndex] = {}
        self._dims: dict[str, int] = {}  # space -> the dimension its vectors arrive with (before truncation)
        self._lock = threading.Lock()  # guards the creation of per-space indexes

    def __len__(self) -> int:
        return sum(len(index) for index in list(self._indexes.values()))

    def __contains__(self, tracklet_id: object) -> bool:
        return any(tracklet_id in index for index in list(self._indexes.values()))

    def spaces(self) -> dict[str, int]:
        """Live vectors per descriptor space."""
        return {space: len(index) for space, index in list(self._indexes.items())}

    def index(self, space: str) -> VectorIndex | None:
        """The index of ``space``, or None before its first add (its ``dim`` is the truncated dimension)."""
        return self._indexes.get(space)

    def add(self, space: str, ids: Sequence[str], vectors: np.ndarray) -> int:
        """Add to ``space`` (see :meth:`VectorIndex.add`); the first add fixes the space's dimension."""
        ids = _as_ids(ids)
        shape = np.shape(vectors)
        _check(len(shape) == 2, f"vectors must be a 2-D array (rows, dim), got shape {shape}")
        clashes = [(i, other) for other, index in list(self._indexes.items()) if other != space
                   for i in ids if i in index]
        _check(not clashes, f"ids already stored in another descriptor space: {clashes[:3]}")
        with self._lock:
            index = self._indexes.get(space)
            if index is None:
                if not ids:
                    return 0
                dim = int(shape[1]) if self.max_dim is None else min(int(shape[1]), self.max_dim)
                index = VectorIndex(dim, **self._index_kwargs)  # type: ignore[arg-type]
                self._indexes[space], self._dims[space] = index, int(shape[1])
        return index.add(ids, self._truncated(space, vectors, "vectors"))

    def clear(self) -> None:
        """Forget every space and vector (e.g. when the data they came from is gone)."""
        with self._lock:
            self._indexes, self._dims = {}, {}

    def remove(self, ids: Iterable[str]) -> int:
        """Remove ``ids`` from whichever space holds them; returns how many were present."""
        ids = list(ids)
        return sum(index.remove(ids) for index in list(self._indexes.values()))

    def search(self, space: str, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Search ``space`` (see :meth:`VectorIndex.search`); an unknown space answers no neighbours per query.
        With ``max_dim``, the scores are cosines of the truncated vectors (see the class docstring)."""
        index = self._indexes.get(space)
        if index is not None:
            return index.search(self._truncated(space, queries, "queries"), k)
        _check(isinstance(k, (int, np.integer)) and k >= 1, f"k must be >= 1, got {k!r}")
        shape = np.shape(queries)
        _check(len(shape) == 2, f"queries must be a 2-D array (rows, dim), got shape {shape}")
        return [[] for _ in range(shape[0])]

    def _truncated(self, space: str, values: np.ndarray, what: str) -> np.ndarray:
        """``values`` cut to ``max_dim`` columns, after checking their full dimension and the dropped values (the
        index normalises and checks the rest)."""
        array = np.asarray(values)
        if self.max_dim is None or array.ndim != 2:
            return array
        dim = self._dims[space]
        _check(array.shape[1] == dim, f"{what} have dimension {array.shape[1]}, descriptor space {space!r} holds "
                                      f"dimension {dim}")
        if dim <= self.max_dim:
            return array
        tail = array[:, self.max_dim :]
        if tail.dtype.kind == "f" and not np.isfinite(tail).all():
            bad = np.flatnonzero(~np.isfinite(tail).all(axis=1))
            raise VectorIndexError(f"{what} contain NaN or infinite values in {bad.size} row(s), first row {bad[0]}")
        return array[:, : self.max_dim]


# ---------------------------------------------------------------------- helpers


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VectorIndexError(message)


@contextmanager
def _omp_threads(threads: int | None) -> Iterator[None]:
    """Run the faiss calls inside with ``threads`` OpenMP threads (None: unchanged), restoring the setting after."""
    previous = faiss.omp_get_max_threads()
    if threads is None or threads == previous:
        yield
        return
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(previous)


def _as_matrix(values: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``values`` as a C-contiguous, finite, row-normalised float32 (N, dim) matrix."""
    array = np.asarray(values)
    _check(array.ndim == 2, f"{what} must be a 2-D array (rows, {dim}), got shape {array.shape}")
    _check(array.dtype.kind in "fiu", f"{what} must be a float array, got dtype {array.dtype}")
    _check(array.shape[1] == dim, f"{what} have dimension {array.shape[1]}, this index holds dimension {dim}")
    array = array.astype(np.float32, copy=False)
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise VectorIndexError(f"{what} contain NaN or infinite values in {bad.size} row(s), first row {bad[0]}")
    return np.ascontiguousarray(normalize(array))


def _as_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise VectorIndexError("ids must be a sequence of strings, got a single string")
    ids = list(ids)
    bad = next((i for i in ids if not isinstance(i, str)), None)
    _check(bad is None, f"ids must be strings, got {type(bad).__name__} {bad!r}")
    return ids


def _new_rows(ids: list[str], present: dict[str, int]) -> list[int]:
    """Rows of ``ids`` not in ``present`` and not repeated earlier in the batch."""
    seen: set[str] = set()
    rows = []
    for row, tracklet_id in enumerate(ids):
        if tracklet_id not in present and tracklet_id not in seen:
            seen.add(tracklet_id)
            rows.append(row)
    return rows


def _stored_chunks(index: faiss.Index, dim: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Every stored (labels, vectors), about ``_CHUNK_MAX`` rows at a time: an IDMap's rows in order, an IVF's
    lists one after another (their codes are the float32 vectors)."""
    if isinstance(index, faiss.IndexIVF):
        labels: list[np.ndarray] = []
        vectors: list[np.ndarray] = []
        rows = 0
        for lst in range(index.nlist):
            if index.invlists.list_size(lst) == 0:
                continue
            ids, codes = get_invlist(index.invlists, lst)
            labels.append(ids)
            vectors.append(codes.view(np.float32).reshape(-1, dim))
            rows += ids.size
            if rows >= _CHUNK_MAX:
                yield np.concatenate(labels), np.concatenate(vectors)
                labels, vectors, rows = [], [], 0
        if rows:
            yield np.concatenate(labels), np.concatenate(vectors)
        return
    stored = faiss.vector_to_array(index.id_map)
    for start in range(0, stored.size, _CHUNK_MAX):
        labels_chunk = stored[start : start + _CHUNK_MAX]
        yield labels_chunk, index.index.reconstruct_n(start, labels_chunk.size)


def _hnsw_graph_bytes(hnsw: faiss.HNSW) -> int:
    """The HNSW link lists: int32 neighbours, per-vector offsets (int64) and levels (int32)."""
    return int(hnsw.neighbors.size()) * 4 + int(hnsw.offsets.size()) * 8 + int(hnsw.levels.size()) * 4
