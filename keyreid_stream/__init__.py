"""keyreid-stream: multi-camera video person re-identification built around KeyRe-ID.

Camera workers detect, track and embed people and publish tracklet descriptors over ZeroMQ; a Redis-backed
matcher links tracklets across cameras into global identities; an offline trainer reproduces the papers.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("keyreid-stream")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
