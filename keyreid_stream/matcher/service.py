"""The matcher process: ingest (ZeroMQ -> Redis), association (lease holder only), the vector index and the API.

Threads: the caller's thread runs the :class:`~keyreid_stream.matcher.ingest.Ingestor` on the ROUTER socket
(with ``ingest.enabled: false``, a query-only matcher, there is no socket and the caller's thread only waits);
one thread runs the :class:`~keyreid_stream.matcher.association.leader.Associator`; one keeps the faiss
:class:`~keyreid_stream.matcher.index.GalleryIndex` in step with Redis (:class:`IndexSync`: rebuilt from Redis at
start, then tailing the stream of stored tracklets, so it also sees what other matchers ingest); uvicorn serves
the HTTP API in another. Each thread survives Redis outages with backoff. ``stop`` ends them all.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, final

import numpy as np
import redis
import zmq

from keyreid_stream.credentials import read_token
from keyreid_stream.matcher.association.leader import AssociationStats, Associator
from keyreid_stream.matcher.association.topology import Topology, load_topology
from keyreid_stream.matcher.config import MatcherConfig, parse_http_address
from keyreid_stream.matcher.index import GalleryIndex
from keyreid_stream.matcher.ingest import Ingestor, IngestStats, Outage, bind_router
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.lease import Lease
from keyreid_stream.matcher.state.records import StoredTracklet
from keyreid_stream.matcher.state.schema import STREAM_ID, text
from keyreid_stream.matcher.state.store import TrackletStore, load_tracklets

if TYPE_CHECKING:
    from keyreid_stream.matcher.api.api import ApiServer

__all__ = ["IndexSync", "MatcherReport", "MatcherThread", "connect_redis", "run_matcher"]

logger = logging.getLogger(__name__)

SYNC_CHUNK = 5000


@dataclass
class MatcherReport:
    elapsed_s: float
    ingest: IngestStats
    association: AssociationStats
    index_size: int
    endpoint: str
    http: str = ""
    errors: list[str] = field(default_factory=list)


def connect_redis(url: str, socket_timeout_s: float = 5.0) -> redis.Redis:
    """A redis-py client (a thread-safe connection pool); connecting happens at the first command."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout_s, socket_connect_timeout=socket_timeout_s,
                                health_check_interval=10)


class IndexSync:
    """Keeps a :class:`GalleryIndex` equal to the stored tracklets: a full load, then the stream's tail.

    With the ``store``, :meth:`step` also checks every ``check_every_s`` that Redis still holds the data the index
    came from (:meth:`TrackletStore.lost_data`); when it does not (a restart without persistence, an older
    snapshot), it recovers: a new store epoch (so no identity id is reused), the index reset and rebuilt from what
    Redis holds now, and one error line in the log.
    """

    def __init__(self, client: redis.Redis, keys: Keys, index: GalleryIndex, store: TrackletStore | None = None,
                 check_every_s: float = 1.0) -> None:
        self.client, self.keys, self.index = client, keys, index
        self.store, self.check_every_s = store, check_every_s
        self.after = "0-0"
        self.ready = False
        self.recoveries = 0
        self._checked_at = float("-inf")

    def step(self, block_ms: int = 500) -> int:
        """One cycle of the index thread: check the store (when due), load everything (once), or tail."""
        if self.store is not None and time.monotonic() - self._checked_at >= self.check_every_s:
            self.check_store()
            self._checked_at = time.monotonic()
        if not self.ready:
            return self.rebuild()
        return self.poll(block_ms)

    def check_store(self) -> bool:
        """Recover when Redis lost the data (see the class docstring); True when it did."""
        if self.store is None:
            return False
        reason = self.store.lost_data(self.after)
        if reason is None:
            return False
        old, new = self.store.recover()
        self.ready, self.after = False, "0-0"
        dropped = len(self.index)
        self.index.clear()
        self.recoveries += 1
        logger.error("redis lost the matcher's data (%s; a restart without persistence or an older snapshot?): new "
                     "store epoch %s (was %s), new identities are g<n>-%s so no earlier id is reused; the vector "
                     "index (%d tracklets) is reset and rebuilt from what redis holds now", reason, new, old or "-",
                     new, dropped)
        return True

    def rebuild(self) -> int:
        """Load every stored tracklet (in chunks); remembers the stream position it started from."""
        store_after = self.client.xrevrange(self.keys.stream, count=1)
        start = time.monotonic()
        added, offset = 0, 0
        while True:
            ids = [str(text(i)) for i in self.client.zrange(self.keys.by_ingest, offset, offset + SYNC_CHUNK - 1)]
            if not ids:
                break
            added += self._add(ids)
            offset += len(ids)
        self.after = str(text(store_after[0][0])) if store_after else "0-0"
        self.ready = True
        logger.info("vector index: %d tracklets loaded from Redis in %.1f s", added, time.monotonic() - start)
        return added

    def poll(self, block_ms: int = 500) -> int:
        """Add what was stored since the last call (waits up to ``block_ms`` for something new)."""
        reply: Any = self.client.xread({self.keys.stream: self.after}, count=SYNC_CHUNK, block=block_ms)
        if not reply:
            return 0
        entries = reply[0][1]
        self.after = str(text(entries[-1][0]))
        return self._add([str(text(fields[STREAM_ID.encode()])) for _, fields in entries])

    def _add(self, ids: list[str]) -> int:
        by_space: dict[str, list[StoredTracklet]] = defaultdict(list)
        for tracklet in load_tracklets(self.client, self.keys, ids):
            by_space[tracklet.space].append(tracklet)
        added = 0
        for space, tracklets in by_space.items():
            vectors = np.stack([t.descriptor for t in tracklets])
            added += self.index.add(space, [t.tracklet_id for t in tracklets], vectors)
        return added


def _loop(name: str, step: Callable[[], object], stop: threading.Event, backoff_s: tuple[float, float], idle_s: float,
          outage: Outage | None = None) -> None:
    """Call ``step()`` until ``stop``; Redis errors back off, other errors are logged and retried."""
    outage = outage or Outage(name, backoff_s)
    while not stop.is_set():
        try:
            busy = step()
            outage.recovered()
        except redis.RedisError as exc:
            stop.wait(outage.failed(exc))
            continue
        except Exception:
            logger.exception("%s: unexpected error (retrying in %.0f s)", name, backoff_s[1])
            stop.wait(backoff_s[1])
            continue
        if not busy:
            stop.wait(idle_s)


class _Threads:
    def __init__(self) -> None:
        self.threads: list[threading.Thread] = []

    def start(self, name: str, target: Callable[..., object], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, name=f"matcher-{name}", daemon=True)
        thread.start()
        self.threads.append(thread)

    def join(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))


def run_matcher(config: MatcherConfig, stop: threading.Event, *, ready: threading.Event | None = None,
                context: zmq.Context[zmq.Socket[bytes]] | None = None) -> MatcherReport:
    """Run a matcher until ``stop`` is set. ``ready`` is set once the socket (unless ``ingest.enabled`` is false)
    and the API accept connections: that is before Redis answers, so that ``/health`` tells why the matcher is not
    working yet (503) while it waits for Redis."""
    if not (config.ingest.enabled or config.association.enabled or config.api.http):
        raise ValueError("ingest and association are disabled and api.http is empty: this matcher would do nothing")
    started = time.monotonic()
    keys, backoff = Keys(config.redis.prefix), config.redis.backoff_s
    client = connect_redis(config.redis.url, config.redis.socket_timeout_s)
    topology = load_topology(config.association.topology) if config.association.topology else None
    token = read_token(config.api.token_env, config.api.token_file)
    store = TrackletStore(client, keys, expected_dim=config.ingest.expected_dim,
                          store_thumbnails=config.ingest.store_thumbnails)
    index = GalleryIndex(max_dim=config.index.max_dim, kind=config.index.kind, flat_max=config.index.flat_max,
                         nprobe=config.index.nprobe, nlist=config.index.nlist, hnsw_m=config.index.hnsw_m,
                         ef_construction=config.index.ef_construction, ef_search=config.index.ef_search,
                         threads=config.index.threads)
    sync = IndexSync(client, keys, index, store)
    lease = Lease(client, keys, config.association.lease_ttl_s)
    associator = _associator(config, store, lease, topology)
    own_context = context is None and config.ingest.enabled
    router, ingestor, endpoint = None, None, ""
    threads, api = _Threads(), None
    index_outage, startup = Outage("index", backoff), Outage("startup", backoff)
    try:
        if config.ingest.enabled:
            context = context or zmq.Context()
            router = bind_router(context, config.ingest.listen)
            endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
            ingestor = Ingestor(router, store, batch_size=config.ingest.batch_size, backoff_s=backoff)
        api = _start_api(config, client, keys, index, token,
                         lambda: _status(ingestor, associator, sync, endpoint, index_outage, startup))
        logger.info("matcher: %s, redis %s (prefix %s)%s", f"ingest on {endpoint}" if ingestor else "ingest disabled",
                    _redact(config.redis.url), config.redis.prefix,
                    f", API on http://{api.host}:{api.port}" if api else "")
        if ready is not None:
            ready.set()
        if _wait_for_redis(store, stop, startup):
            threads.start("index", _loop, "index", sync.step, stop, backoff, 0.0, index_outage)
            if associator is not None:
                threads.start("association", _loop, "association", associator.step, stop, backoff, 0.05)
            if ingestor is not None:
                ingestor.run(stop)
            else:
                stop.wait()
        else:
            logger.info("stopped while waiting for redis: nothing was received or stored")
    finally:
        stop.set()
        if api is not None:
            api.stop()
        threads.join(10.0)
        lease.release()
        if router is not None:
            router.close(linger=0)
        if own_context and context is not None:
            context.term()
        client.close()
    return MatcherReport(time.monotonic() - started, ingestor.stats if ingestor else IngestStats(),
                         associator.stats if associator else AssociationStats(), len(index), endpoint,
                         f"{api.host}:{api.port}" if api else "")


@final
class MatcherThread:
    """:func:`run_matcher` in a background thread, for tests, benchmarks and the demo; a context manager.

    ``start()`` returns once the socket (and the API) accept connections and raises what made startup fail;
    ``stop()`` ends the matcher gracefully and returns its report.
    """

    def __init__(self, config: MatcherConfig, *, context: zmq.Context[zmq.Socket[bytes]] | None = None) -> None:
        self.config, self.context = config, context
        self.stop_event, self._ready = threading.Event(), threading.Event()
        self.report: MatcherReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="matcher", daemon=True)

    @property
    def endpoint(self) -> str:
        return self.config.ingest.listen

    def _run(self) -> None:
        try:
            self.report = run_matcher(self.config, self.stop_event, ready=self._ready, context=self.context)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    def start(self, timeout_s: float = 120.0) -> MatcherThread:
        self.thread.start()
        if not self._ready.wait(timeout_s):
            self.stop_event.set()
            raise TimeoutError(f"the matcher did not start within {timeout_s:.0f} s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout_s: float = 60.0) -> MatcherReport | None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(timeout_s)
        if self.thread.is_alive():
            raise TimeoutError(f"the matcher did not stop within {timeout_s:.0f} s")
        if self.error is not None:
            raise self.error
        return self.report

    def __enter__(self) -> MatcherThread:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_for_redis(store: TrackletStore, stop: threading.Event, outage: Outage) -> bool:
    """Check (or mark) the data layout once Redis answers; False when ``stop`` came first."""
    while not stop.is_set():
        try:
            store.check_layout()
            outage.recovered()
            return True
        except redis.RedisError as exc:
            stop.wait(outage.failed(exc))
    return False


def _associator(config: MatcherConfig, store: TrackletStore, lease: Lease, topology: Topology | None) -> Associator | None:
    settings = config.association
    if not settings.enabled:
        logger.info("association is disabled: this matcher only ingests and answers queries")
        return None
    return Associator(store, lease, settings.params(), topology=topology, batch_size=settings.batch_size,
                      max_candidates=settings.max_candidates, recluster_every_s=settings.recluster_every_s,
                      recluster_horizon_s=settings.recluster_horizon_s, retention_s=config.retention.max_age_s,
                      retention_every_s=config.retention.every_s)


def _status(ingestor: Ingestor | None, associator: Associator | None, sync: IndexSync, endpoint: str,
            index_outage: Outage, startup: Outage) -> dict[str, object]:
    """The service's own state for ``/health`` and ``/stats``. Without ingest (a query-only matcher) there is no
    ``ingest_running`` flag to report false, so a disabled ingest never makes the health degraded; Redis
    reachability then comes from the index's stream reader. Until Redis first answers, ``starting`` says so."""
    status = _running_status(ingestor, associator, sync, endpoint, index_outage)
    status["store_epoch"] = sync.store.epoch if sync.store is not None else None
    status["store_recoveries"] = sync.recoveries
    if sync.store is not None and sync.store.epoch is None:  # Redis has not answered yet
        status["redis_connected"] = False
        status["starting"] = f"waiting for redis: {startup.last_error or 'no answer yet'}"
    return status


def _running_status(ingestor: Ingestor | None, associator: Associator | None, sync: IndexSync, endpoint: str,
                    index_outage: Outage) -> dict[str, object]:
    if ingestor is None:
        return {
            "listen": None, "ingest_enabled": False, "redis_connected": not index_outage.down,
            "role": "leader" if associator is not None and associator.leading else "follower",
            "association_enabled": associator is not None, "index_ready": sync.ready, "index_size": len(sync.index),
        }
    return {
        "listen": endpoint, "ingest_enabled": True, "ingest_running": ingestor.running,
        "redis_connected": not ingestor.outage.down,
        "role": "leader" if associator is not None and associator.leading else "follower",
        "association_enabled": associator is not None, "index_ready": sync.ready, "index_size": len(sync.index),
        "frames_received": ingestor.stats.frames, "stored": ingestor.stats.stored,
        "duplicates": ingestor.stats.duplicates, "rejected": dict(ingestor.stats.rejected),
    }


def _start_api(config: MatcherConfig, client: redis.Redis, keys: Keys, index: GalleryIndex, token: str | None,
               status: Callable[[], Mapping[str, object]]) -> ApiServer | None:
    if not config.api.http:
        return None
    from keyreid_stream.matcher.api.answers import Thresholds
    from keyreid_stream.matcher.api.api import ApiServer, create_app
    from keyreid_stream.matcher.api.queries import MatcherQueries

    host, port = parse_http_address(config.api.http)
    if token is None and host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("the query API listens on %s without a token: anyone who can reach it can read identities "
                       "(set $%s or api.token_file)", config.api.http, config.api.token_env)
    embed_crop = None
    if config.search.arch:
        from keyreid_stream.matcher.api.search import crop_embedder_from_config

        s = config.search
        embed_crop = crop_embedder_from_config(s.arch, s.checkpoint, s.checkpoint_kind, s.allow_pickle, s.device)
    a = config.association
    queries = MatcherQueries(client, keys, index, embed_crop=embed_crop, status=status,
                             max_results=config.api.max_results, oversample=config.search.oversample,
                             thresholds=Thresholds(a.threshold, a.merge_threshold, a.split_threshold))
    app = create_app(queries, token=token, max_body_bytes=config.api.max_body_bytes)
    return ApiServer(app, host, port, header_timeout_s=config.api.header_timeout_s).start()


def _redact(url: str) -> str:
    """The URL without its password."""
    return re.sub(r"//([^:@/]*):[^@/]*@", r"//\1:***@", url)
