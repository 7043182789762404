"""Configuration: YAML files under ``configs/`` loaded strictly into small frozen dataclasses."""

from keyreid_stream.config.loader import (
    ConfigError,
    dump_yaml,
    from_dict,
    load_config,
    parse_override,
    to_dict,
)
from keyreid_stream.config.schema import Config, DemoConfig, LoggingConfig

__all__ = [
    "Config",
    "ConfigError",
    "DemoConfig",
    "LoggingConfig",
    "dump_yaml",
    "from_dict",
    "load_config",
    "parse_override",
    "to_dict",
]
