"""The config loader: strict YAML -> frozen dataclasses, overrides, inheritance, readable errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from keyreid_stream.config import Config, ConfigError, dump_yaml, from_dict, load_config, parse_override

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Inner:
    size: int = 4
    ratio: float = 0.5
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    path: Path | None = None
    shape: tuple[int, int] = (256, 128)
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError("size must be >= 0")


@dataclass(frozen=True)
class Outer:
    inner: Inner = field(default_factory=Inner)
    seed: int = 0


def write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_defaults_without_a_file() -> None:
    assert load_config(Outer) == Outer()


def test_values_are_converted_and_frozen(tmp_path: Path) -> None:
    path = write(tmp_path, "c.yaml", {"inner": {"size": 8, "ratio": 1, "shape": [3, 4], "tags": ["p", "q"],
                                                "path": "w.pth"}, "seed": 7})
    config = load_config(Outer, path)
    assert config.inner.size == 8 and config.inner.ratio == 1.0 and isinstance(config.inner.ratio, float)
    assert config.inner.shape == (3, 4) and config.inner.tags == ("p", "q")
    assert config.inner.path == Path("w.pth") and config.seed == 7
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"inner": {"szie": 3}}, "inner.szie: unknown key 'szie' (did you mean 'size'?)"),
        ({"iner": {}}, "iner: unknown key 'iner' (did you mean 'inner'?)"),
        ({"seed": "7"}, "seed: must be an integer, got str '7'"),
        ({"seed": True}, "seed: must be an integer, got bool True"),
        ({"seed": 1.5}, "seed: must be an integer"),
        ({"inner": {"ratio": "high"}}, "inner.ratio: must be a number"),
        ({"inner": {"flag": "yes please"}}, "inner.flag: must be a boolean"),
        ({"inner": {"mode": "c"}}, "inner.mode: must be one of 'a', 'b', got 'c'"),
        ({"inner": {"shape": [1, 2, 3]}}, "inner.shape: must have exactly 2 items, got 3"),
        ({"inner": {"shape": "256x128"}}, "inner.shape: must be a list"),
        ({"inner": {"tags": [1]}}, "inner.tags.0: must be a string"),
        ({"inner": 5}, "inner: must be a mapping"),
        ({"inner": {"size": -1}}, "inner: size must be >= 0"),
    ],
)
def test_errors_name_the_key_and_the_file(tmp_path: Path, data: dict, expected: str) -> None:
    path = write(tmp_path, "bad.yaml", data)
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[1, 2]", "the top level must be a mapping"),
        ("a: [unclosed", "not valid YAML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        load_config(Outer, write(tmp_path, "bad.yaml", text))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(Outer, write(tmp_path, "empty.yaml", "")) == Outer()


@pytest.mark.parametrize(
    ("override", "check"),
    [
        ("seed=3", lambda c: c.seed == 3),
        ("inner.size=9", lambda c: c.inner.size == 9),
        ("inner.shape=[8, 4]", lambda c: c.inner.shape == (8, 4)),
        ("inner.name=hello world", lambda c: c.inner.name == "hello world"),
        ("inner.path=null", lambda c: c.inner.path is None),
        ("inner.flag=true", lambda c: c.inner.flag is True),
    ],
)
def test_overrides(tmp_path: Path, override: str, check) -> None:
    path = write(tmp_path, "c.yaml", {"inner": {"size": 1}})
    assert check(load_config(Outer, path, [override]))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("seed", "must look like key.sub=value"),
        ("=3", "must look like key.sub=value"),
        ("inner..size=3", "empty key segment"),
        ("inner.sise=3", "override 'inner.sise=3': inner.sise: unknown key 'sise' (did you mean 'size'?)"),
        ("seed.deeper=3", "'seed' is a value, not a section"),
        ("seed=abc", "override 'seed=abc': seed: must be an integer"),
    ],
)
def test_bad_overrides(tmp_path: Path, override: str, expected: str) -> None:
    path = write(tmp_path, "c.yaml", {"seed": 1})
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path, [override])
    assert expected in str(info.value)


@pytest.mark.parametrize("with_file", [True, False])
@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("innr.size=3", "override 'innr.size=3': innr: unknown key 'innr' (did you mean 'inner'?)"),
        ("inner.size.x=3", "override 'inner.size.x=3': inner.size: must be an integer"),
        ("inner.sise=3", "override 'inner.sise=3': inner.sise: unknown key 'sise'"),
    ],
)
def test_a_misspelt_override_is_named_not_the_file_or_the_defaults(tmp_path: Path, with_file: bool, override: str,
                                                                    expected: str) -> None:
    """The error names the override that brought the bad key, also when it misspells a section."""
    path = write(tmp_path, "c.yaml", {"seed": 1}) if with_file else None
    with pytest.raises(ConfigError) as info:
        load_config(Outer, path, [override])
    assert str(info.value).startswith(expected), str(info.value)


def test_base_files_are_merged_deeply(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", {"inner": {"size": 2, "name": "base"}, "seed": 1})
    child = write(tmp_path, "child.yaml", {"_base_": "base.yaml", "inner": {"name": "child"}})
    config = load_config(Outer, child)
    assert (config.inner.size, config.inner.name, config.seed) == (2, "child", 1)


def test_error_in_a_base_file_names_the_base_file(tmp_path: Path) -> None:
    base = write(tmp_path, "base.yaml", {"inner": {"sizee": 2}})
    child = write(tmp_path, "child.yaml", {"_base_": ["base.yaml"], "seed": 2})
    with pytest.raises(ConfigError, match="unknown key 'sizee'"):
        load_config(Outer, child)
    assert base.exists()


def test_base_cycle_is_reported(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", {"_base_": "b.yaml"})
    write(tmp_path, "b.yaml", {"_base_": "a.yaml"})
    with pytest.raises(ConfigError, match="a cycle"):
        load_config(Outer, tmp_path / "a.yaml")


def test_round_trip_through_yaml() -> None:
    config = from_dict(Outer, {"inner": {"shape": [1, 2], "tags": ["t"], "path": "p"}, "seed": 5})
    assert from_dict(Outer, yaml.safe_load(dump_yaml(config))) == config


def test_parse_override_parses_yaml_values() -> None:
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    assert parse_override("a=") == (["a"], "")


@pytest.mark.parametrize("path", sorted((REPO / "configs").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads(path: Path) -> None:
    """Training configs (data / model / optim sections, or built on another file) load into the trainer's
    schema, worker configs (cameras / detector / embedding) into the worker's, matcher configs (ingest /
    association / index) into the matcher's, camera topologies (transits) through the topology reader, the others
    into the service schema."""
    from keyreid_stream.matcher.association.topology import Topology, load_topology
    from keyreid_stream.matcher.config import MatcherConfig
    from keyreid_stream.train.config import TrainingConfig
    from keyreid_stream.workers.config import WorkerConfig

    sections = set(yaml.safe_load(path.read_text()) or {})
    if "transits" in sections:
        assert isinstance(load_topology(path), Topology)
        return
    schema = TrainingConfig if sections & {"data", "model", "optim", "_base_"} else Config
    schema = WorkerConfig if sections & {"cameras", "detector", "embedding"} else schema
    schema = MatcherConfig if sections & {"ingest", "association", "index"} else schema
    assert isinstance(load_config(schema, path), schema)


def test_misspelt_key_in_a_real_config_names_the_key(tmp_path: Path) -> None:
    text = (REPO / "configs" / "demo.yaml").read_text().replace("max_frames:", "max_frame:")
    path = write(tmp_path, "demo.yaml", text)
    with pytest.raises(ConfigError) as info:
        load_config(Config, path)
    assert f"{path}: demo.max_frame: unknown key 'max_frame' (did you mean 'max_frames'?)" in str(info.value)
