"""The association lease: one matcher at a time decides identities; any matcher may take over.

Several matcher processes can share one Redis: all of them ingest (ingest is idempotent by message id) and
answer queries, but identity decisions must be made in one order, or two matchers could each open a new
identity for the same person at the same moment. The lease is a Redis key holding the owner's random token
with a TTL (``SET NX PX``). The owner renews it before each cycle (a compare-and-set script); when the owner
dies or stalls, the key expires and another matcher acquires it, and resumes from the shared stream cursor.

Every association write is a MULTI/EXEC transaction that WATCHes the lease key and first checks that it still
holds this owner's token (:meth:`~keyreid_stream.matcher.state.store.TrackletStore.commit_decisions`), so a matcher
that lost its lease while paused (GC, swap, a network partition) cannot write stale decisions: its commit fails
with :class:`~keyreid_stream.matcher.state.store.LeaseLost` and it goes back to following.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

import redis

from keyreid_stream.matcher.state.keys import Keys
from keyreid_stream.matcher.state.schema import text

__all__ = ["Lease"]

logger = logging.getLogger(__name__)

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """Acquire, renew and release the association lease for one matcher process."""

    def __init__(self, client: redis.Redis, keys: Keys, ttl_s: float) -> None:
        self.client, self.key = client, keys.lease
        self.ttl_ms = int(ttl_s * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.held = False

    def refresh(self) -> bool:
        """Renew the lease when held, else try to acquire it; returns whether this process holds it now."""
        if self.held and self._renew(keys=[self.key], args=[self.token, self.ttl_ms]):
            return True
        was_held = self.held
        self.held = bool(self.client.set(self.key, self.token, nx=True, px=self.ttl_ms))
        if was_held and not self.held:
            logger.warning("association lease lost (held by %s); following", self.owner())
        elif self.held and not was_held:
            logger.info("association lease acquired: this matcher (%s) now decides identities", self.token)
        return self.held

    def lost(self) -> None:
        """Called when a fenced commit failed: the lease is no longer ours."""
        if self.held:
            logger.warning("association lease lost during a commit (now held by %s)", self.owner())
        self.held = False

    def owner(self) -> str | None:
        return text(self.client.get(self.key))

    def release(self) -> None:
        if self.held:
            try:
                self._release(keys=[self.key], args=[self.token])
            except redis.RedisError:
                logger.debug("could not release the lease (it expires by itself)", exc_info=True)
            self.held = False
