"""Every Redis key the matcher uses, in one place (the data model is documented in ``docs/matcher.md``).

All keys share one prefix wrapped in a hash tag, ``{krs}`` by default, so that they live in one hash slot: the
ingest script and the association transaction touch several keys at once, which Redis Cluster allows only
within one slot. Several deployments can share one Redis with different prefixes.

=====================================  ======  ==========================================================
key                                    type    content
=====================================  ======  ==========================================================
``P:meta``                             hash    ``layout`` (the version of this data model), ``epoch`` (the
                                               store epoch: see :func:`~keyreid_stream.matcher.state.records.next_epoch`)
``P:tracklet:<id>``                    hash    one tracklet (id = the worker's message id): camera, track,
                                               times, space, descriptor bytes, identity, decision, link
``P:thumb:<id>``                       string  its JPEG thumbnail, when the worker sent one
``P:by_end``                           zset    tracklet ids by end time (association windows)
``P:by_ingest``                        zset    tracklet ids by ingestion wall-clock time (retention)
``P:cam:<camera>:tracklets``           zset    the camera's tracklet ids by end time
``P:cam:<camera>:links``               zset    ids of tracklets linked to or from the camera, by end time
``P:cameras``                          hash    camera id -> JSON of its last heartbeat
``P:model:<name>@<version>``           string  the descriptor dimension of that model
``P:stream``                           stream  one entry per stored tracklet, in ingest order
``P:assoc:cursor``                     string  the last stream entry association has decided
``P:assoc:lease``                      string  the association lease: the owner's token, with a TTL
``P:identity:next``                    string  counter of identity numbers (ids ``g<n>-<epoch>``)
``P:identity:<gid>``                   hash    created_at, first_seen, last_seen, merged_into
``P:identity:<gid>:members``           zset    its tracklet ids by start time
``P:identity:<gid>:log``               list    JSON decisions (capped)
``P:identities``                       zset    live identities by last-seen time
``P:stats``                            hash    counters: received, stored, duplicates, rejected:<code>
=====================================  ======  ==========================================================
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["DEFAULT_PREFIX", "LAYOUT_VERSION", "Keys"]

DEFAULT_PREFIX = "krs"
LAYOUT_VERSION = "1"
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,32}")


@dataclass(frozen=True)
class Keys:
    """The key names under one prefix (``Keys("site1").tracklet(id)`` -> ``"{site1}:tracklet:<id>"``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not _PREFIX_RE.fullmatch(self.prefix):
            raise ValueError(f"redis key prefix must match [A-Za-z0-9_.:-]{{1,32}}, got {self.prefix!r}")

    @property
    def root(self) -> str:
        return "{" + self.prefix + "}"

    # -- tracklets ----------------------------------------------------------------------------
    def tracklet(self, tracklet_id: str) -> str:
        return f"{self.root}:tracklet:{tracklet_id}"

    def thumbnail(self, tracklet_id: str) -> str:
        return f"{self.root}:thumb:{tracklet_id}"

    @property
    def by_end(self) -> str:
        return f"{self.root}:by_end"

    @property
    def by_ingest(self) -> str:
        return f"{self.root}:by_ingest"

    def camera_tracklets(self, camera_id: str) -> str:
        return f"{self.root}:cam:{camera_id}:tracklets"

    def camera_links(self, camera_id: str) -> str:
        return f"{self.root}:cam:{camera_id}:links"

    @property
    def cameras(self) -> str:
        return f"{self.root}:cameras"

    def model_dim(self, model_name: str, model_version: str) -> str:
        return f"{self.root}:model:{model_name}@{model_version}"

    # -- association --------------------------------------------------------------------------
    @property
    def stream(self) -> str:
        return f"{self.root}:stream"

    @property
    def cursor(self) -> str:
        return f"{self.root}:assoc:cursor"

    @property
    def lease(self) -> str:
        return f"{self.root}:assoc:lease"

    # -- identities ---------------------------------------------------------------------------
    @property
    def identity_counter(self) -> str:
        return f"{self.root}:identity:next"

    def identity(self, gid: str) -> str:
        return f"{self.root}:identity:{gid}"

    def members(self, gid: str) -> str:
        return f"{self.root}:identity:{gid}:members"

    def identity_log(self, gid: str) -> str:
        return f"{self.root}:identity:{gid}:log"

    @property
    def identities(self) -> str:
        return f"{self.root}:identities"

    # -- bookkeeping --------------------------------------------------------------------------
    @property
    def meta(self) -> str:
        return f"{self.root}:meta"

    @property
    def stats(self) -> str:
        return f"{self.root}:stats"
