"""The cross-camera matcher: ZeroMQ ingest, Redis state, online association, vector index and query API
(see docs/matcher.md)."""
