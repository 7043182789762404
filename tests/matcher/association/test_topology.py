"""Tests of the camera topology: transit checks between sightings, topology files and validation."""

from __future__ import annotations

import pytest

from keyreid_stream.matcher.association.topology import Topology, load_topology, topology_from_mapping

from matcher_harness import trk  # beside these tests (see conftest.py)


def test_topology_allows_orders_by_start_and_ignores_one_camera():
    topology = Topology({("cam1", "cam2"): (5.0, 40.0)}, strict=True)
    first, second = trk("a", "cam1", 1, 0, 10), trk("b", "cam2", 1, 30, 40)
    assert topology.allows(first, second) and topology.allows(second, first)
    assert not topology.allows(first, trk("c", "cam2", 1, 100, 110))
    assert topology.allows(first, trk("d", "cam1", 2, 500, 510))
    assert not topology.allows(first, trk("e", "cam3", 1, 20, 30))  # strict: not listed
    assert topology.allows_spans("cam2", 0, 10, "cam1", 0, 5) is False  # equal starts: both orders tried
    assert Topology({("cam2", "cam1"): (-10.0, 0.0)}).allows_spans("cam1", 0, 10, "cam2", 0, 5)


def test_load_topology(tmp_path):
    path = tmp_path / "topology.yaml"
    path.write_text("strict: true\ntransits:\n"
                    "  - {from: cam1, to: cam2, min_s: 2, max_s: 60, symmetric: true}\n"
                    "  - {from: cam2, to: cam3, min_s: -30, max_s: 5.5}\n")
    topology = load_topology(path)
    assert topology.strict is True
    assert topology.transits == {("cam1", "cam2"): (2.0, 60.0), ("cam2", "cam1"): (2.0, 60.0),
                                 ("cam2", "cam3"): (-30.0, 5.5)}
    assert topology_from_mapping({"transits": []}) == Topology({}, False)


ENTRY = "{from: cam1, to: cam2, min_s: 2, max_s: 60}"


@pytest.mark.parametrize(("text", "message"), [
    ("- a\n- b\n", "expected a mapping"),
    ("", "expected a mapping"),
    ("transits: [\n", "not valid YAML"),
    ("strict: false\n", "missing key 'transits'"),
    (f"transits: [{ENTRY}]\nlayout: ring\n", "unknown key.*layout"),
    ("strict: yes please\ntransits: []\n", "strict: expected true or false"),
    ("transits: {cam1: cam2}\n", "transits: expected a list"),
    (f"transits: [{ENTRY}, 7]\n", r"transits\[1\]: expected a mapping"),
    ("transits: [{from: cam1, to: cam2, min_s: 2}]\n", r"transits\[0\]: missing key.*max_s"),
    ("transits: [{from: cam1, to: cam2, min_s: 2, max_s: 6, speed: 1}]\n", r"transits\[0\]: unknown key.*speed"),
    (f"transits: [{ENTRY}, {{from: cam2, to: cam3, min_s: 9, max_s: 3}}]\n", r"transits\[1\]: min_s 9.0 > max_s"),
    ("transits: [{from: cam1, to: cam2, min_s: soon, max_s: 6}]\n", r"transits\[0\]: min_s: expected a finite"),
    ("transits: [{from: cam1, to: cam2, min_s: .nan, max_s: 6}]\n", r"transits\[0\]: min_s: expected a finite"),
    ("transits: [{from: cam1, to: cam2, min_s: true, max_s: 6}]\n", r"transits\[0\]: min_s: expected a finite"),
    ("transits: [{from: cam1, to: 3, min_s: 1, max_s: 6}]\n", r"transits\[0\]: to: expected a camera id"),
    ("transits: [{from: cam1, to: cam1, min_s: 1, max_s: 6}]\n", r"transits\[0\]: from and to are the same"),
    ("transits: [{from: cam1, to: cam2, min_s: 1, max_s: 6, symmetric: 1}]\n", r"transits\[0\]: symmetric"),
    (f"transits: [{ENTRY}, {{from: cam2, to: cam1, min_s: 1, max_s: 6, symmetric: true}}]\n",
     r"transits\[1\]: duplicate transit cam1 -> cam2 \(already given by transits\[0\]\)"),
])
def test_load_topology_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        load_topology(path)
    assert str(path) in str(info.value)


def test_load_topology_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot read topology file"):
        load_topology(tmp_path / "missing.yaml")


@pytest.mark.parametrize(("transits", "message"), [
    ({("cam1",): (1.0, 2.0)}, "keys must be"),
    ({("cam1", "cam2"): (3.0, 2.0)}, "min_s 3.0 > max_s"),
    ({("cam1", "cam2"): (1.0,)}, "expected"),
    ({("cam1", "cam2"): (1.0, float("inf"))}, "finite"),
])
def test_topology_validation(transits, message):
    with pytest.raises(ValueError, match=message):
        Topology(transits)
