"""Settings loaded from real TOML files on disk (shop/config.py).

No database, yet an integration test: it reads files through the real filesystem and
the real TOML parser, including the example file shipped with the shop, which would
otherwise drift from the code that reads it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from shop import ConfigError
from shop.config import Settings, load_settings

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).parents[2] / "shop.example.toml"

MINIMAL = """
[database]
url = "postgresql://shop@db/shop"
[redis]
url = "redis://cache:6379/0"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "shop.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_example_loads() -> None:
    settings = load_settings(EXAMPLE)

    assert settings == Settings(
        database_url="postgresql://shop@localhost:5432/shop",
        redis_url="redis://localhost:6379/0",
        cache_ttl_seconds=300,
        consumer_group="stock",
        consumer_batch=100,
    )


def test_optional_settings_have_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, MINIMAL))

    assert settings.database_url == "postgresql://shop@db/shop"
    assert settings.cache_ttl_seconds == 300
    assert settings.consumer_batch == 100


def test_utf8_and_comments(tmp_path: Path) -> None:
    text = MINIMAL.replace("postgresql://shop@db/shop", "postgresql://bücher@db/shop  # é")
    text += "[consumer]\ngroup = 'stock-ünits'   # a comment\n"

    settings = load_settings(write(tmp_path, text))

    assert settings.consumer_group == "stock-ünits"


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)

    assert str(excinfo.value) == f"{path}: no such file; copy shop.example.toml there and edit it"


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "[cache]\nttl_seconds = = 5\n")

    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 7"):
        load_settings(path)


def test_a_missing_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, '[database]\nurl = "postgresql://shop@db/shop"\n')

    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)

    assert str(excinfo.value) == f"{path}: redis.url: missing; add url = ... under [redis]"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('[cache]\nttl_seconds = "300"\n', "cache.ttl_seconds: expected an integer, got str '300'"),
        ("[cache]\nttl_seconds = true\n", "cache.ttl_seconds: expected an integer, got bool True"),
        ("[cache]\nttl_seconds = 0\n", "cache.ttl_seconds: must be positive, got 0"),
        ("[consumer]\nbatch = -1\n", "consumer.batch: must be positive, got -1"),
        ("[consumer]\ngroup = 7\n", "consumer.group: expected a string, got int 7"),
    ],
)
def test_wrong_values_are_refused_with_key_and_reason(
    tmp_path: Path, extra: str, message: str
) -> None:
    path = write(tmp_path, MINIMAL + extra)

    with pytest.raises(ConfigError) as excinfo:
        load_settings(path)

    assert str(excinfo.value) == f"{path}: {message}"
