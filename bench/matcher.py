"""Matcher benchmark: ingest rate with persistence, and query latency at 10k, 100k and 1M stored tracklets.

    python bench/matcher.py [--dim 768] [--ingest 20000] [--sizes 10000,100000,1000000] [--queries 300]
        [--write docs/benchmarks.md]

* ingest -- the real path: four worker Publishers in another process (acknowledged delivery over ZeroMQ on
  127.0.0.1) -> the matcher (decode, one Lua script per batch, ack) -> a private redis-server with AOF
  persistence (``appendfsync everysec`` and ``always``), association running. Rate = tracklets acknowledged per
  second; association rate = tracklets decided per second. Reference in the same run: redis-py writing the same
  descriptor bytes as plain pipelined HSETs (no matcher), the ratio column.
* query -- Redis filled with N tracklets (five per identity, eight cameras) through the matcher's own store code,
  then a matcher started on it: time to rebuild its vector index from Redis, and HTTP latency p50/p99 of
  ``POST /search/descriptor`` (k=10), ``GET /identities/{gid}``, ``GET /links`` (one camera, one minute) and the
  faiss search alone; reference: ``GET /health`` in the same run (ratio column = p50 / health p50).

Descriptors are random unit vectors of ``--dim`` values (768 = the size of KeyRe-ID's global feature; the full
KeyRe-ID ViT-B descriptor has 19,200 values, 77 KB, which at a million tracklets needs 77 GB: see docs/matcher.md).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import redis
import zmq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine, milliseconds, rate, write_section  # noqa: E402

from keyreid_stream.contracts import TrackletMessage  # noqa: E402
from keyreid_stream.matcher.config import MatcherConfig, local_config  # noqa: E402
from keyreid_stream.matcher.index import GalleryIndex  # noqa: E402
from keyreid_stream.matcher.service import MatcherThread  # noqa: E402
from keyreid_stream.matcher.state.keys import Keys  # noqa: E402
from keyreid_stream.matcher.state.records import Decision, descriptor_space  # noqa: E402
from keyreid_stream.matcher.state.store import TrackletStore  # noqa: E402
from keyreid_stream.redis_server import RedisServer, free_port  # noqa: E402
from keyreid_stream.workers.publisher import Publisher  # noqa: E402

SECTION = "Matcher: ingest and queries"
KEYS = Keys("krs")
CAMERAS = 8
PER_IDENTITY = 5
T0 = 1.7e9


def messages(count: int, dim: int, seed: int, offset: int = 0) -> list[TrackletMessage]:
    """``count`` tracklets: five per identity, on eight cameras, one every 0.1 s of capture time."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dim)).astype(np.float32)
    out = []
    for i in range(count):
        n = offset + i
        start = T0 + 0.1 * n
        out.append(TrackletMessage(camera_id=f"cam{n % CAMERAS}", track_id=n, start_time=start, end_time=start + 4.0,
                                   num_frames=40, descriptor=vectors[i], model_name="bench", model_version="1"))
    return out


def matcher_config(url: str, http: str = "", association: bool = True) -> MatcherConfig:
    return local_config(url, http=http, enabled=association, recluster_every_s=0)


# ------------------------------------------------------------------------------------------ ingest


def raw_write_rate(client: redis.Redis, batch: list[TrackletMessage]) -> float:
    """The reference: the same bytes written as plain pipelined HSETs, 256 per round trip."""
    start = time.perf_counter()
    for offset in range(0, len(batch), 256):
        pipe = client.pipeline(transaction=False)
        for message in batch[offset: offset + 256]:
            pipe.hset(f"raw:{message.message_id}", mapping={"camera": message.camera_id,
                                                           "desc": message.descriptor.tobytes()})
        pipe.execute()
    return len(batch) / (time.perf_counter() - start)


def _workers(endpoint: str, count: int, dim: int, results: multiprocessing.Queue) -> None:
    """In another process (like real camera workers): four Publishers send ``count`` tracklets; reports the wall
    time of the first publish and of the last ack."""
    batch = messages(count, dim, seed=1)
    context = zmq.Context()
    publishers = [Publisher(context, endpoint, buffer_size=count, max_in_flight=1024, ack_timeout_s=30).start()
                  for _ in range(4)]
    started = time.time()
    for i, message in enumerate(batch):
        publishers[i % 4].publish(message)
    while sum(p.stats().acked for p in publishers) < count:
        time.sleep(0.01)
    results.put((started, time.time()))
    for publisher in publishers:
        publisher.close(1.0)
    context.destroy(linger=0)


def ingest_row(fsync: str, count: int, dim: int) -> dict:
    with RedisServer(persistence="aof", extra_args=["--appendfsync", fsync]) as server:
        client = redis.Redis.from_url(server.url)
        reference = raw_write_rate(client, messages(min(count, 5000), dim, seed=99))
        client.flushall()
        with MatcherThread(matcher_config(server.url)) as running:
            spawn = multiprocessing.get_context("spawn")
            results = spawn.Queue()
            workers = spawn.Process(target=_workers, args=(running.config.ingest.listen, count, dim, results))
            workers.start()
            started, acked = results.get(timeout=3600)
            while client.get(KEYS.cursor) != client.xrevrange(KEYS.stream, count=1)[0][0]:
                time.sleep(0.02)
            decided = time.time()
            workers.join(60)
        client.close()
    return {"fsync": fsync, "count": count, "ingest": count / (acked - started),
            "associate": count / (decided - started), "reference": reference}


# ------------------------------------------------------------------------------------------- query


def fill(client: redis.Redis, size: int, dim: int, chunk: int = 2000) -> float:
    """Store ``size`` tracklets with identities (five per identity) through the matcher's store code."""
    store = TrackletStore(client, KEYS)
    store.check_layout()
    client.set(KEYS.lease, "bench")
    start = time.perf_counter()
    for offset in range(0, size, chunk):
        batch = messages(min(chunk, size - offset), dim, seed=offset, offset=offset)
        store.ingest(batch)
        loaded = {t.tracklet_id: t for t in store.load([m.message_id for m in batch])}
        decisions = [Decision(m.message_id, f"g{(offset + i) // PER_IDENTITY + 1}",
                              "new" if (offset + i) % PER_IDENTITY == 0 else "appearance", 0.8)
                     for i, m in enumerate(batch)]
        store.commit_decisions(decisions, loaded, None, "bench")
    client.delete(KEYS.lease)
    client.set(KEYS.cursor, client.xrevrange(KEYS.stream, count=1)[0][0])  # already decided
    return time.perf_counter() - start


def _latencies(call, count: int) -> list[float]:
    out = []
    for i in range(count):
        start = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - start)
    return sorted(out)


def _p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def query_row(size: int, dim: int, queries: int) -> dict:
    with RedisServer(persistence="none") as server:
        client = redis.Redis.from_url(server.url, socket_timeout=60)
        fill_s = fill(client, size, dim)
        memory = client.info("memory")["used_memory"]
        http = f"127.0.0.1:{free_port()}"
        start = time.perf_counter()
        with MatcherThread(matcher_config(server.url, http=http, association=False)):
            base = f"http://{http}"
            while not json.loads(urllib.request.urlopen(f"{base}/stats", timeout=60).read())["service"].get(
                    "index_ready"):
                time.sleep(0.2)
            rebuild_s = time.perf_counter() - start
            probe = messages(queries, dim, seed=12345)
            rng = np.random.default_rng(0)

            def get(path: str) -> bytes:
                return urllib.request.urlopen(base + path, timeout=60).read()

            def search(i: int) -> None:
                body = json.dumps({"descriptor": probe[i].descriptor.tolist(), "k": 10}).encode()
                request = urllib.request.Request(f"{base}/search/descriptor", data=body,
                                                 headers={"Content-Type": "application/json"})
                urllib.request.urlopen(request, timeout=60).read()

            ids = rng.integers(1, size // PER_IDENTITY + 1, queries)
            starts = T0 + 0.1 * rng.integers(0, size, queries)
            rows = {
                "health": _latencies(lambda i: get("/health"), queries),
                "search": _latencies(search, queries),
                "identity": _latencies(lambda i: get(f"/identities/g{ids[i]}"), queries),
                "links": _latencies(lambda i: get(f"/links?camera=cam{i % CAMERAS}&start={starts[i]}"
                                                  f"&end={starts[i] + 60}"), queries),
            }
        rows["faiss"] = faiss_only(client, size, dim, probe)
        client.close()
    return {"size": size, "fill_s": fill_s, "rebuild_s": rebuild_s, "redis_mb": memory / 2**20,
            **{name: (_p(v, 0.5), _p(v, 0.99)) for name, v in rows.items()}}


def faiss_only(client: redis.Redis, size: int, dim: int, probe: list[TrackletMessage]) -> list[float]:
    """The in-process index alone (built from the same vectors as the matcher's), k=80 = 10 x oversample 8."""
    index = GalleryIndex()
    space = descriptor_space("bench", "1", dim)
    for offset in range(0, size, 20000):
        batch = messages(min(20000, size - offset), dim, seed=offset, offset=offset)
        index.add(space, [m.message_id for m in batch], np.stack([m.descriptor for m in batch]))
    return _latencies(lambda i: index.search(space, probe[i].descriptor[None], 80), len(probe))


# ------------------------------------------------------------------------------------------ report


def render(ingest: list[dict], queries: list[dict], args: argparse.Namespace) -> str:
    lines = ["", f"Machine: {machine()}.",
             f"Command: `python bench/matcher.py --dim {args.dim} --ingest {args.ingest} --sizes {args.sizes} "
             f"--queries {args.queries}`. Descriptors: {args.dim} float32 values (random unit vectors).", "",
             "Ingest: 4 worker Publishers (another process, same machine) -> ZeroMQ -> matcher -> redis-server "
             "with AOF; association running. Ratio = matcher ingest rate / plain pipelined HSETs of the same "
             "bytes to the same server.", "",
             "| appendfsync | tracklets | ingest (acked/s) | associated/s | plain HSET/s | ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in ingest:
        lines.append(f"| {row['fsync']} | {row['count']:,} | {rate(row['ingest'])} | {rate(row['associate'])} | "
                     f"{rate(row['reference'])} | {row['ingest'] / row['reference']:.2f} |")
    lines += ["", "Queries over HTTP on a matcher serving N stored tracklets (five per identity, eight cameras); "
              "p50 / p99 in ms over the query count; ratio = p50 / `GET /health` p50 in the same run. Fill = "
              "storing N tracklets with identities through the store code; rebuild = the matcher's start until its "
              "vector index holds them all.", "",
              "| stored | Redis memory | fill | index rebuild | health | search (k=10) | ratio | identity | links "
              "(1 min) | faiss alone (k=80) |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: |"]
    for row in queries:
        cell = {k: f"{milliseconds(row[k][0])} / {milliseconds(row[k][1])}"
                for k in ("health", "search", "identity", "links", "faiss")}
        lines.append(f"| {row['size']:,} | {row['redis_mb']:,.0f} MB | {row['fill_s']:.0f} s | {row['rebuild_s']:.1f} s"
                     f" | {cell['health']} | {cell['search']} | {row['search'][0] / row['health'][0]:.1f} | "
                     f"{cell['identity']} | {cell['links']} | {cell['faiss']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--ingest", type=int, default=20000)
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--write", type=Path, default=None)
    args = parser.parse_args()
    ingest = []
    for fsync in ("everysec", "always"):
        ingest.append(ingest_row(fsync, args.ingest, args.dim))
        print(json.dumps(ingest[-1]), flush=True)
    queries = []
    for size in (int(s) for s in args.sizes.split(",")):
        queries.append(query_row(size, args.dim, args.queries))
        print(json.dumps(queries[-1]), flush=True)
    text = render(ingest, queries, args)
    print(text)
    if args.write:
        write_section(args.write, SECTION, text)


if __name__ == "__main__":
    main()
