"""The matcher's state in Redis: key names, the tracklet hash's schema, the store and the association lease."""
