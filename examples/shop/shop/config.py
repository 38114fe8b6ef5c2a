"""Settings from a TOML file (see ``shop.example.toml``), checked when they are loaded.

A wrong setting fails at start-up with the file and the key in the message, not on the
first request that happens to use it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shop.cache import DEFAULT_TTL_SECONDS
from shop.errors import ConfigError
from shop.events import GROUP

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


@dataclass(frozen=True)
class Settings:
    """Everything the shop needs to run."""

    database_url: str
    redis_url: str
    cache_ttl_seconds: int = DEFAULT_TTL_SECONDS
    consumer_group: str = GROUP
    consumer_batch: int = 100


def load_settings(path: str | Path) -> Settings:
    """Read and check the TOML file at ``path``; :class:`ConfigError` names what is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(path, "no such file; copy shop.example.toml there and edit it") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, f"not valid TOML: {exc}") from exc
    return Settings(
        database_url=_get(data, path, "database.url", str),
        redis_url=_get(data, path, "redis.url", str),
        cache_ttl_seconds=_positive(
            _get(data, path, "cache.ttl_seconds", int, DEFAULT_TTL_SECONDS),
            path,
            "cache.ttl_seconds",
        ),
        consumer_group=_get(data, path, "consumer.group", str, GROUP),
        consumer_batch=_positive(
            _get(data, path, "consumer.batch", int, 100), path, "consumer.batch"
        ),
    )


_MISSING = object()


def _get(data: dict[str, Any], path: Path, key: str, kind: type, default: Any = _MISSING) -> Any:
    """``data["a"]["b"]`` for ``key="a.b"``, checked to be a ``kind``."""
    value: Any = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            if default is _MISSING:
                table, _, name = key.rpartition(".")
                raise ConfigError(path, f"missing; add {name} = ... under [{table}]", key)
            return default
        value = value[part]
    # bool is an int in Python; "ttl_seconds = true" is still a mistake.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(
            path, f"expected {_TOML_NAMES[kind]}, got {type(value).__name__} {value!r}", key
        )
    return value


def _positive(value: int, path: Path, key: str) -> int:
    if value <= 0:
        raise ConfigError(path, f"must be positive, got {value}", key)
    return value


_TOML_NAMES = {str: "a string", int: "an integer"}
