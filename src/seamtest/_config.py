"""seamtest's settings: one table, read from the command line, the environment and ini.

Each setting has one name per layer (``--seamtest-x``, ``SEAMTEST_X``, ``seamtest_x``);
the first layer that sets it wins, and the value remembers where it came from so the
report header can say so. Values are validated here, early, listing the valid choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

ISOLATIONS = ("database", "transaction", "reset", "unique")
LEAK_MODES = ("auto", "off", "warn", "error")
TRUE = ("1", "true", "yes", "on")
FALSE = ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Option:
    """One setting: its ini name, type, default and help."""

    name: str  # ini name; the option is --<name with dashes>, the env var NAME upper-cased
    help: str
    type: str = "string"  # ini type: string, bool, linelist
    default: Any = None
    cli: bool = True
    env: bool = True

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_name(self) -> str:
        return self.name.upper()


OPTIONS = (
    Option(
        "seamtest_url",
        "Use the existing PostgreSQL server at this URL instead of the "
        "embedded one (postgresql://user:password@host:port/dbname).",
    ),
    Option("seamtest_allow_remote", "Allow a server that is not on loopback.", "bool", False),
    Option("seamtest_bin_dir", "Directory with the PostgreSQL server binaries to use."),
    Option(
        "seamtest_server_user",
        "Account the embedded server runs as when pytest runs as "
        "root (default: postgres, else nobody).",
    ),
    Option(
        "seamtest_server_settings",
        "postgresql.conf settings for the embedded server, one 'name=value' a line.",
        "linelist",
        (),
        cli=False,
        env=False,
    ),
    Option(
        "seamtest_migrations",
        "Migrations: a directory of SQL files or 'module:function', one a line, applied in order.",
        "linelist",
        (),
    ),
    Option(
        "seamtest_fixtures",
        "Directory of SQL fixture files for @pytest.mark.seamtest(fixtures=[...]).",
        "string",
        "tests/fixtures",
    ),
    Option(
        "seamtest_seed",
        "Reference data loaded into the template after the migrations: SQL files, "
        "directories of SQL files or 'module:function', one a line.",
        "linelist",
        (),
    ),
    Option(
        "seamtest_template_deps",
        "Installed distributions whose versions go into the template's key, one a line.",
        "linelist",
        (),
        cli=False,
    ),
    Option(
        "seamtest_rebuild",
        "Build the template again even if one with its key exists.",
        "bool",
        False,
    ),
    Option(
        "seamtest_template_key",
        "Extra text mixed into the template's content hash (change it to force a rebuild).",
        "string",
        "",
    ),
    Option(
        "seamtest_env",
        "Environment variables to export before conftest import, one "
        "'NAME=template' a line, over {url} {host} {port} {user} {password} {dbname}.",
        "linelist",
        (),
        cli=False,
        env=False,
    ),
    Option(
        "seamtest_isolation",
        "Default isolation: " + ", ".join(ISOLATIONS) + ".",
        "string",
        "database",
    ),
    Option(
        "seamtest_migration_timeout",
        "Seconds a migration statement may run (or wait for a lock) before it is cancelled.",
        "string",
        "300",
    ),
    Option(
        "seamtest_reuse",
        "Use the server 'seamtest up' started, when one runs, instead of starting one.",
        "bool",
        True,
    ),
    Option(
        "seamtest_pool_size",
        "Clones kept ready per process for isolation='database' (0: clone on demand).",
        "string",
        "2",
    ),
    Option(
        "seamtest_warm_up",
        "Once collected tests need a database, start the server, build the template and "
        "fill the pool in the background, instead of in the first such test's setup.",
        "bool",
        True,
    ),
    Option(
        "seamtest_recycle",
        "Reset and reuse a passing test's database instead of dropping it.",
        "bool",
        True,
    ),
    Option(
        "seamtest_leaks",
        "Leak detector: auto (warn under reset and unique), off, warn or error.",
        "string",
        "auto",
    ),
    Option(
        "seamtest_keep_failed", "Keep the database of a failed test for inspection.", "bool", True
    ),
    Option(
        "seamtest_kept_ttl",
        "Hours a kept database lives before a later run drops it.",
        "string",
        "24",
    ),
    Option(
        "seamtest_db_prefix", "Prefix of every database seamtest creates.", "string", "seamtest_"
    ),
)
BY_NAME = {option.name: option for option in OPTIONS}


@dataclass(frozen=True)
class Value:
    value: Any
    source: str


@dataclass
class Settings:
    """Resolved settings with their sources."""

    values: dict[str, Value] = field(default_factory=dict)
    rootdir: Path = Path()

    def __getitem__(self, name: str) -> Any:
        return self.values[name].value

    def source(self, name: str) -> str:
        return self.values[name].source

    def origin(self, name: str) -> str:
        """``seamtest_x (from SEAMTEST_X)``: for error messages."""
        return f"{name} (from {self.source(name)})"

    @property
    def isolation(self) -> str:
        return str(self["seamtest_isolation"])

    def leaks_for(self, isolation: str, marker_value: str | None = None) -> str:
        """The leak detector's mode for a test: off, warn or error."""
        mode = marker_value or str(self["seamtest_leaks"])
        if mode == "auto":
            return "warn" if isolation in ("reset", "unique") else "off"
        return mode

    @property
    def migration_timeout(self) -> float:
        return float(self["seamtest_migration_timeout"])

    @property
    def pool_size(self) -> int:
        return int(self["seamtest_pool_size"])

    @property
    def kept_ttl_seconds(self) -> float:
        return float(self["seamtest_kept_ttl"]) * 3600


def _coerce(option: Option, raw: Any, where: str) -> Any:
    if option.type == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in TRUE:
            return True
        if text in FALSE:
            return False
        raise ConfigError(f"{option.name} (from {where}) = {raw!r}: use true or false.")
    if option.type == "linelist":
        lines = raw.splitlines() if isinstance(raw, str) else list(raw)
        return tuple(line.strip() for line in lines if line.strip())
    return raw


def resolve(
    cli: Mapping[str, Any],
    ini: Mapping[str, Any],
    env: Mapping[str, str],
    rootdir: Path,
    options: tuple[Option, ...] = OPTIONS,
) -> Settings:
    """Resolve every option: command line, then environment, then ini, then default."""
    settings = Settings(rootdir=rootdir)
    for option in options:
        if option.cli and cli.get(option.name) not in (None, ()):
            raw, where = cli[option.name], option.flag
        elif option.env and option.env_name in env:
            raw, where = env[option.env_name], option.env_name
        elif ini.get(option.name) not in (None, (), [], ""):
            raw, where = ini[option.name], "ini"
        else:
            raw, where = option.default, "default"
        settings.values[option.name] = Value(_coerce(option, raw, where), where)
    if options is OPTIONS:
        _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.isolation not in ISOLATIONS:
        raise ConfigError(
            f"{settings.origin('seamtest_isolation')} = {settings.isolation!r}: choose one of "
            + ", ".join(ISOLATIONS)
        )
    try:
        if settings.migration_timeout <= 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{settings.origin('seamtest_migration_timeout')} = "
            f"{settings['seamtest_migration_timeout']!r}: a number of seconds above 0."
        ) from None
    try:
        if settings.pool_size < 0:
            raise ValueError
    except ValueError:
        raise ConfigError(
            f"{settings.origin('seamtest_pool_size')} = {settings['seamtest_pool_size']!r}: a "
            "whole number, 0 or more."
        ) from None
    if settings["seamtest_leaks"] not in LEAK_MODES:
        raise ConfigError(
            f"{settings.origin('seamtest_leaks')} = {settings['seamtest_leaks']!r}: choose one "
            "of " + ", ".join(LEAK_MODES)
        )
    try:
        settings.kept_ttl_seconds  # noqa: B018
    except ValueError:
        raise ConfigError(
            f"{settings.origin('seamtest_kept_ttl')} = {settings['seamtest_kept_ttl']!r}: "
            "a number of hours."
        ) from None
    from ._names import check_prefix

    check_prefix(settings["seamtest_db_prefix"], settings.origin("seamtest_db_prefix"))
    server_settings(settings)
    env_templates(settings)


def _pairs(settings: Settings, name: str) -> dict[str, str]:
    pairs = {}
    for line in settings[name]:
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{settings.origin(name)}: {line!r} is not 'NAME=value'.")
        pairs[key.strip()] = value.strip()
    return pairs


def server_settings(settings: Settings) -> dict[str, str]:
    return _pairs(settings, "seamtest_server_settings")


PLACEHOLDERS = ("url", "host", "port", "user", "password", "dbname")


def env_templates(settings: Settings) -> dict[str, str]:
    templates = _pairs(settings, "seamtest_env")
    for name, template in templates.items():
        try:
            template.format(**dict.fromkeys(PLACEHOLDERS, ""))
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{settings.origin('seamtest_env')}: {name}={template!r} uses an unknown "
                f"placeholder {exc}; the placeholders are "
                + ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            ) from None
    return templates
