"""The matcher's configuration: one small frozen dataclass per section of ``configs/matcher.yaml``.

``keyreid-stream matcher --redis URL --listen tcp://*:PORT --http :PORT`` overrides the three addresses; every other
value comes from the file or these defaults. Unknown keys are errors (see :mod:`keyreid_stream.config.loader`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from keyreid_stream.config.schema import LoggingConfig
from keyreid_stream.matcher.association.association import AssociationParams
from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.validation import require

__all__ = ["ApiConfig", "AssociationConfig", "IndexConfig", "IngestConfig", "MatcherConfig", "RedisConfig",
           "RetentionConfig", "SearchConfig", "local_config", "parse_http_address"]


@dataclass(frozen=True)
class RedisConfig:
    """Where the state lives. ``prefix``: the key namespace (several deployments may share one Redis);
    ``backoff_s``: first and largest wait between reconnection attempts while Redis is unreachable."""

    url: str = "redis://127.0.0.1:6379/0"
    prefix: str = "krs"
    socket_timeout_s: float = 5.0
    backoff_s: tuple[float, float] = (0.2, 5.0)

    def __post_init__(self) -> None:
        require(self.url.startswith(("redis://", "rediss://", "unix://")), "redis.url must be redis://, rediss:// "
                 "or unix://")
        Keys(self.prefix)
        require(self.socket_timeout_s > 0, "redis.socket_timeout_s must be > 0")
        require(0 < self.backoff_s[0] <= self.backoff_s[1], "redis.backoff_s must be (first, max), 0 < first <= max")


@dataclass(frozen=True)
class IngestConfig:
    """The ZeroMQ ROUTER the workers connect to. ``enabled``: false = bind no socket and ingest nothing (a
    query-only matcher: ``keyreid-stream matcher --api-only``); ``batch_size``: messages stored per Redis round trip;
    ``expected_dim``: reject descriptors of any other size (null: the first tracklet of a model fixes its size)."""

    enabled: bool = True
    listen: str = "tcp://*:5555"
    batch_size: int = 256
    expected_dim: int | None = None
    store_thumbnails: bool = True

    def __post_init__(self) -> None:
        require(self.listen.startswith(("tcp://", "ipc://", "inproc://")), "ingest.listen must be a ZeroMQ endpoint")
        require(self.batch_size >= 1, "ingest.batch_size must be >= 1")
        require(self.expected_dim is None or self.expected_dim >= 1, "ingest.expected_dim must be >= 1 or null")


@dataclass(frozen=True)
class AssociationConfig(AssociationParams):
    """Online association (the decision rules are :class:`AssociationParams`) plus how it runs: ``topology``: a
    YAML file of camera transit times; ``lease_ttl_s``: how long the association lease outlives a silent owner;
    ``recluster_every_s`` (0 = never) and ``recluster_horizon_s``: the correction pass over recent tracklets."""

    enabled: bool = True
    topology: str = ""
    batch_size: int = 128
    lease_ttl_s: float = 10.0
    recluster_every_s: float = 30.0
    recluster_horizon_s: float = 900.0
    max_candidates: int = 20_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.batch_size >= 1, "association.batch_size must be >= 1")
        require(self.lease_ttl_s >= 1, "association.lease_ttl_s must be >= 1")
        require(self.recluster_every_s >= 0, "association.recluster_every_s must be >= 0")
        require(self.recluster_horizon_s > 0, "association.recluster_horizon_s must be > 0")
        require(self.max_candidates >= 1, "association.max_candidates must be >= 1")

    def params(self) -> AssociationParams:
        """The decision rules alone, as plain keyword arguments of :class:`AssociationParams`."""
        names = [f.name for f in dataclasses.fields(AssociationParams)]
        return AssociationParams(**{name: getattr(self, name) for name in names})


@dataclass(frozen=True)
class IndexConfig:
    """The nearest-neighbour index over all stored descriptors (faiss), one per descriptor space, rebuilt from Redis
    at every matcher start (see :class:`~keyreid_stream.matcher.index.VectorIndex`).

    ``kind``: "auto" (exact up to ``flat_max`` vectors, then IVF), "flat" (always exact), "ivf" or "hnsw" (the
    lowest query latency, but it builds at about a thousand vectors per second: a slow restart at a million).
    IVF: ``nlist`` lists (null: chosen at each training from the count, 64 to 4096) of which a search scans
    ``nprobe``; retrained after 8x growth. ``max_dim``: index only the first ``max_dim`` values of each descriptor
    (re-normalised; null: all); candidates are then re-scored exactly. ``threads``: faiss threads (null: all)."""

    kind: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    flat_max: int = 50_000
    nprobe: int = 32
    nlist: int | None = None
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 96
    max_dim: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        require(self.kind in ("auto", "flat", "ivf", "hnsw"), "index.kind must be auto, flat, ivf or hnsw")
        require(self.flat_max >= 1 and self.hnsw_m >= 4, "index.flat_max must be >= 1 and index.hnsw_m >= 4")
        require(self.nprobe >= 1, "index.nprobe must be >= 1")
        require(self.nlist is None or self.nlist >= 1, "index.nlist must be >= 1 or null")
        require(self.ef_construction >= 8 and self.ef_search >= 8, "index.ef_construction/ef_search must be >= 8")
        require(self.max_dim is None or self.max_dim >= 1, "index.max_dim must be >= 1 or null")
        require(self.threads is None or self.threads >= 1, "index.threads must be >= 1 or null")


@dataclass(frozen=True)
class RetentionConfig:
    """Tracklets ingested more than ``max_age_s`` ago are deleted (0 = keep everything), checked every ``every_s``."""

    max_age_s: float = 7 * 24 * 3600.0
    every_s: float = 60.0

    def __post_init__(self) -> None:
        require(self.max_age_s >= 0 and self.every_s > 0, "retention.max_age_s must be >= 0 and every_s > 0")


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP query API. ``http``: ``[HOST]:PORT`` ("" = no API; ``:PORT`` listens on every interface, as
    ``--listen tcp://*:PORT`` does); a
    bearer token is required when ``$token_env`` or ``token_file`` holds one."""

    http: str = "127.0.0.1:8080"
    token_env: str = "KEYREID_API_TOKEN"
    token_file: str = ""
    max_body_bytes: int = 4 * 1024 * 1024
    max_results: int = 1000
    header_timeout_s: float = 10.0  # a connection whose request line and headers take longer is closed

    def __post_init__(self) -> None:
        if self.http:
            parse_http_address(self.http)
        require(self.max_body_bytes >= 1024, "api.max_body_bytes must be >= 1024")
        require(self.header_timeout_s > 0, "api.header_timeout_s must be > 0")
        require(self.max_results >= 1, "api.max_results must be >= 1")


@dataclass(frozen=True)
class SearchConfig:
    """Search by image crop needs the workers' re-ID model: ``arch`` ("" = image search off), its ``checkpoint``
    (the same file or weights catalogue name the workers use, so descriptors are comparable) and a device."""

    arch: str = ""
    checkpoint: str = ""
    checkpoint_kind: Literal["auto", "native", "official"] = "auto"
    allow_pickle: bool = False
    device: str = "cpu"
    oversample: int = 8

    def __post_init__(self) -> None:
        require(self.oversample >= 1, "search.oversample must be >= 1")


@dataclass(frozen=True)
class MatcherConfig:
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    association: AssociationConfig = field(default_factory=AssociationConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


def parse_http_address(text: str) -> tuple[str, int]:
    """``"HOST:PORT"`` or ``":PORT"`` (every interface, 0.0.0.0) -> (host, port); raises ValueError."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"api.http: expected [HOST]:PORT, got {text!r}")
    return host, int(port)


def local_config(redis_url: str, *, listen: str = "", http: str = "", retention_s: float = 0.0,
                 **association: Any) -> MatcherConfig:
    """A matcher on this machine (tests, benchmarks, the demo): ingest on ``listen`` (default: a free port on
    127.0.0.1), the API only when ``http`` is given, no token, no retention unless asked; ``association``
    overrides :class:`AssociationConfig` fields."""
    from keyreid_stream.redis_server import free_port

    return MatcherConfig(
        redis=RedisConfig(url=redis_url), ingest=IngestConfig(listen=listen or f"tcp://127.0.0.1:{free_port()}"),
        association=AssociationConfig(**association), retention=RetentionConfig(max_age_s=retention_s),
        api=ApiConfig(http=http, token_env=""))
