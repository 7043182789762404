"""Pretrained weights: the catalogue (:mod:`~keyreid_stream.weights.catalogue`), the cache, fetching and importing
(:mod:`~keyreid_stream.weights.store`) and the ``keyreid-stream weights`` commands (:mod:`~keyreid_stream.weights.cli`).

Everything that takes a checkpoint path also takes a catalogue name: :func:`resolve_weights` turns either into a
file (a name must have been fetched or imported first; the error says how).
"""

from keyreid_stream.weights.catalogue import CATALOGUE, CatalogueError, Source, WeightsEntry, load_catalogue
from keyreid_stream.weights.store import (
    WeightsError,
    WeightsNotFound,
    expand_names,
    fetch_weights,
    import_weights,
    installed_path,
    offline_help,
    resolve_weights,
    status,
)

__all__ = ["CATALOGUE", "CatalogueError", "Source", "WeightsEntry", "WeightsError", "WeightsNotFound", "expand_names",
           "fetch_weights", "import_weights", "installed_path", "load_catalogue", "offline_help", "resolve_weights",
           "status"]
