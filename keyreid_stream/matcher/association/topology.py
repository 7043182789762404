"""Camera transit-time constraints: pure logic, no Redis, no sockets.

* :class:`Topology` -- for a pair of cameras, the range of the gap between leaving one and appearing in the
  other; :meth:`Topology.table` gives the same bounds as arrays for vectorised checks.
* :func:`load_topology` / :func:`topology_from_mapping` -- a :class:`Topology` from a YAML file or from its
  parsed structure, with errors that name the file and the entry.

:func:`~keyreid_stream.matcher.association.association.associate` and :func:`~keyreid_stream.matcher.association.recluster.recluster`
check transit constraints on track spans (the union of a track's segments), so how a track was segmented does not
change what the topology allows. The value checks (finite numbers, booleans) are :mod:`checks`'s, shared with
:class:`~keyreid_stream.matcher.association.association.AssociationParams`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from keyreid_stream.config.loader import read_yaml
from keyreid_stream.matcher.association.checks import finite_number, invalid
from keyreid_stream.matcher.state.records import StoredTracklet

__all__ = ["Topology", "TransitTable", "load_topology", "topology_from_mapping"]


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True)
class Topology:
    """Camera transit constraints: for a pair (a, b) the gap ``start(b) - end(a)`` of a person going from camera a
    to camera b must be in [min_s, max_s] (min_s may be negative for overlapping views). Of two sightings the one
    that starts first is the "from" side (equal starts: either order may pass). Pairs not listed are allowed unless
    ``strict``. Sightings on one camera are not the topology's concern (always allowed here).
    """

    transits: Mapping[tuple[str, str], tuple[float, float]] = field(default_factory=dict)
    strict: bool = False

    def __post_init__(self) -> None:
        checked: dict[tuple[str, str], tuple[float, float]] = {}
        for pair, bounds in self.transits.items():
            if not (isinstance(pair, tuple) and len(pair) == 2 and all(isinstance(c, str) and c for c in pair)):
                raise ValueError(f"Topology.transits: keys must be (from_camera, to_camera), got {pair!r}")
            if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
                raise ValueError(f"Topology.transits[{pair}]: expected (min_s, max_s), got {bounds!r}")
            low, high = (finite_number("Topology", f"transits[{pair}]", b) for b in bounds)
            if low > high:
                raise ValueError(f"Topology.transits[{pair}]: min_s {low} > max_s {high}")
            checked[pair] = (low, high)
        if not isinstance(self.strict, bool):
            invalid(f"Topology.strict: expected a bool, got {self.strict!r}")
        object.__setattr__(self, "transits", checked)

    def allows(self, first: StoredTracklet, second: StoredTracklet) -> bool:
        """Whether one person may have produced both sightings (different cameras; same camera: True)."""
        return self.allows_spans(first.camera_id, first.start_time, first.end_time,
                                 second.camera_id, second.start_time, second.end_time)

    def allows_spans(self, camera_a: str, start_a: float, end_a: float,
                     camera_b: str, start_b: float, end_b: float) -> bool:
        """:meth:`allows` on bare time spans (e.g. the span of a whole track)."""
        if camera_a == camera_b:
            return True
        a_first = self._gap_ok(camera_a, camera_b, start_b - end_a)
        b_first = self._gap_ok(camera_b, camera_a, start_a - end_b)
        return a_first if start_a < start_b else b_first if start_b < start_a else a_first or b_first

    def _gap_ok(self, source: str, target: str, gap: float) -> bool:
        bounds = self.transits.get((source, target))
        return not self.strict if bounds is None else bounds[0] <= gap <= bounds[1]

    def table(self, cameras: Sequence[str]) -> TransitTable:
        """The transit bounds between ``cameras`` as (n, n) arrays, for vectorised checks."""
        n = len(cameras)
        low, high, listed = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n), bool)
        for i, a in enumerate(cameras):
            for j, b in enumerate(cameras):
                bounds = self.transits.get((a, b))
                if bounds is not None:
                    low[i, j], high[i, j], listed[i, j] = bounds[0], bounds[1], True
        return TransitTable(low, high, listed, self.strict)


@dataclass(frozen=True)
class TransitTable:
    """:class:`Topology` bounds between camera codes, (n, n) arrays indexed [from, to]."""

    low: np.ndarray
    high: np.ndarray
    listed: np.ndarray
    strict: bool

    def allows(self, row_cams: np.ndarray, row_start: np.ndarray, row_end: np.ndarray,
               col_cams: np.ndarray, col_start: np.ndarray, col_end: np.ndarray) -> np.ndarray:
        """(rows, cols) :meth:`Topology.allows_spans` of row spans ((g,) cameras, (g, 1) times) against column
        spans ((m,) arrays); the caller masks same-camera pairs."""
        gap_forward, gap_backward = col_start - row_end, row_start - col_end

        def inside(low: np.ndarray, high: np.ndarray, listed: np.ndarray, gap: np.ndarray) -> np.ndarray:
            low, high, listed = (np.take(a[row_cams], col_cams, axis=1) for a in (low, high, listed))
            return np.where(listed, (low <= gap) & (gap <= high), not self.strict)

        forward = inside(self.low, self.high, self.listed, gap_forward)  # the row's camera first
        backward = inside(self.low.T, self.high.T, self.listed.T, gap_backward)
        allowed: np.ndarray = np.where(row_start < col_start, forward, backward) | ((row_start == col_start) & forward)
        return allowed


_TOPOLOGY_KEYS = ("strict", "transits")
_TRANSIT_KEYS = ("from", "to", "min_s", "max_s", "symmetric")


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Read a topology YAML file: ``{strict: false, transits: [{from: cam1, to: cam2, min_s: 2, max_s: 60,
    symmetric: true}, ...]}`` (``strict`` and ``symmetric`` default to false). Raises ValueError naming the file
    (and the entry index) on any problem."""
    path = Path(path)
    return topology_from_mapping(read_yaml(path, "topology file"), source=str(path))


def topology_from_mapping(data: Mapping[str, Any], source: str = "topology") -> Topology:
    """The :class:`Topology` described by ``data`` (the YAML structure of :func:`load_topology`)."""
    if not isinstance(data, Mapping):
        invalid(f"{source}: expected a mapping with 'transits' (and optionally 'strict'), "
                 f"got {type(data).__name__}")
    unknown = sorted(str(key) for key in data if key not in _TOPOLOGY_KEYS)
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {', '.join(unknown)} (expected {', '.join(_TOPOLOGY_KEYS)})")
    strict = data.get("strict", False)
    if not isinstance(strict, bool):
        invalid(f"{source}: strict: expected true or false, got {strict!r}")
    if "transits" not in data:
        raise ValueError(f"{source}: missing key 'transits' (a list of {{from, to, min_s, max_s}} entries)")
    entries = data["transits"]
    if not isinstance(entries, list):
        invalid(f"{source}: transits: expected a list, got {type(entries).__name__}")
    transits: dict[tuple[str, str], tuple[float, float]] = {}
    origin: dict[tuple[str, str], int] = {}
    for index, entry in enumerate(entries):
        where = f"{source}: transits[{index}]"
        for pair, bounds in _transit_entry(where, entry):
            if pair in transits:
                raise ValueError(f"{where}: duplicate transit {pair[0]} -> {pair[1]} "
                                 f"(already given by transits[{origin[pair]}])")
            transits[pair], origin[pair] = bounds, index
    return Topology(transits, strict)


def _transit_entry(where: str, entry: object) -> list[tuple[tuple[str, str], tuple[float, float]]]:
    if not isinstance(entry, Mapping):
        invalid(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(str(key) for key in entry if key not in _TRANSIT_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)} (expected {', '.join(_TRANSIT_KEYS)})")
    missing = [key for key in _TRANSIT_KEYS[:4] if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    source, target, symmetric = entry["from"], entry["to"], entry.get("symmetric", False)
    for key, camera in (("from", source), ("to", target)):
        if not isinstance(camera, str) or not camera:
            raise ValueError(f"{where}: {key}: expected a camera id (non-empty string), got {camera!r}")
    if source == target:
        raise ValueError(f"{where}: from and to are the same camera {source!r}")
    if not isinstance(symmetric, bool):
        invalid(f"{where}: symmetric: expected true or false, got {symmetric!r}")
    try:
        low, high = finite_number(where, "min_s", entry["min_s"]), finite_number(where, "max_s", entry["max_s"])
    except ValueError as exc:
        raise ValueError(str(exc).replace(f"{where}.", f"{where}: ", 1)) from None
    if low > high:
        raise ValueError(f"{where}: min_s {low} > max_s {high}")
    pairs = [((source, target), (low, high))]
    return pairs + [((target, source), (low, high))] if symmetric else pairs
