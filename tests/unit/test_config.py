"""Settings: command line, then environment, then ini, then default; each says its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from seamtest import ConfigError
from seamtest._config import OPTIONS, Settings, env_templates, resolve, server_settings

ROOT = Path("/project")


def settings(
    cli: dict[str, Any] | None = None,
    ini: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    return resolve(cli or {}, ini or {}, env or {}, ROOT)


def test_defaults_when_nothing_is_set() -> None:
    resolved = settings()
    assert resolved["seamtest_url"] is None
    assert resolved["seamtest_keep_failed"] is True
    assert resolved["seamtest_fixtures"] == "tests/fixtures"
    assert resolved["seamtest_migrations"] == ()
    assert resolved.isolation == "database"
    assert resolved.kept_ttl_seconds == 24 * 3600
    assert {resolved.source(o.name) for o in OPTIONS} == {"default"}
    assert resolved.rootdir == ROOT


def test_command_line_beats_environment_beats_ini() -> None:
    url = {"cli": "postgresql://cli/db", "env": "postgresql://env/db", "ini": "postgresql://ini/db"}
    both = settings(
        cli={"seamtest_url": url["cli"]},
        env={"SEAMTEST_URL": url["env"]},
        ini={"seamtest_url": url["ini"]},
    )
    assert (both["seamtest_url"], both.source("seamtest_url")) == (url["cli"], "--seamtest-url")
    no_cli = settings(env={"SEAMTEST_URL": url["env"]}, ini={"seamtest_url": url["ini"]})
    assert (no_cli["seamtest_url"], no_cli.source("seamtest_url")) == (url["env"], "SEAMTEST_URL")
    ini_only = settings(ini={"seamtest_url": url["ini"]})
    assert (ini_only["seamtest_url"], ini_only.source("seamtest_url")) == (url["ini"], "ini")


def test_origin_names_the_setting_and_its_source() -> None:
    resolved = settings(env={"SEAMTEST_BIN_DIR": "/opt/pg/bin"})
    assert resolved.origin("seamtest_bin_dir") == "seamtest_bin_dir (from SEAMTEST_BIN_DIR)"


def test_unset_command_line_values_fall_through() -> None:
    # argparse gives None for options that were not passed, and () for empty line lists.
    resolved = settings(
        cli={"seamtest_url": None, "seamtest_migrations": ()},
        ini={"seamtest_migrations": ["migrations"]},
    )
    assert resolved["seamtest_migrations"] == ("migrations",)
    assert resolved.source("seamtest_migrations") == "ini"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("YES", True),
        (" on ", True),
        ("0", False),
        ("off", False),
        ("no", False),
        ("", False),
    ],
)
def test_booleans_from_the_environment(raw: str, expected: bool) -> None:
    resolved = settings(env={"SEAMTEST_KEEP_FAILED": raw})
    assert resolved["seamtest_keep_failed"] is expected


def test_a_bad_boolean_names_the_setting_and_its_source() -> None:
    with pytest.raises(
        ConfigError,
        match=r"seamtest_keep_failed \(from SEAMTEST_KEEP_FAILED\) = 'maybe': use true or false",
    ):
        settings(env={"SEAMTEST_KEEP_FAILED": "maybe"})


def test_line_lists_from_the_environment_are_split_and_stripped() -> None:
    resolved = settings(env={"SEAMTEST_MIGRATIONS": " migrations \n\n app.schema:create \n"})
    assert resolved["seamtest_migrations"] == ("migrations", "app.schema:create")


def test_an_unknown_isolation_lists_the_choices() -> None:
    with pytest.raises(ConfigError) as excinfo:
        settings(ini={"seamtest_isolation": "transactoin"})
    message = str(excinfo.value)
    assert "seamtest_isolation (from ini) = 'transactoin'" in message
    assert "choose one of" in message
    assert "database" in message


def test_a_kept_ttl_that_is_not_a_number_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"seamtest_kept_ttl \(from --seamtest-kept-ttl\) = 'a day'"
    ):
        settings(cli={"seamtest_kept_ttl": "a day"})


def test_a_bad_prefix_is_refused_with_its_source() -> None:
    with pytest.raises(ConfigError, match=r"seamtest_db_prefix \(from SEAMTEST_DB_PREFIX\)"):
        settings(env={"SEAMTEST_DB_PREFIX": "Bad-Prefix"})


def test_env_templates_are_checked_early() -> None:
    with pytest.raises(ConfigError, match=r"DATABASE_URL='\{uri\}' uses an unknown placeholder"):
        settings(ini={"seamtest_env": ["DATABASE_URL={uri}"]})
    with pytest.raises(ConfigError, match=r"'DATABASE_URL' is not 'NAME=value'"):
        settings(ini={"seamtest_env": ["DATABASE_URL"]})


def test_env_templates_and_server_settings_parse() -> None:
    resolved = settings(
        ini={
            "seamtest_env": ["DATABASE_URL = {url}", "DB_HOST={host}:{port}"],
            "seamtest_server_settings": ["work_mem=64MB", "log_statement = all"],
        }
    )
    assert env_templates(resolved) == {"DATABASE_URL": "{url}", "DB_HOST": "{host}:{port}"}
    assert server_settings(resolved) == {"work_mem": "64MB", "log_statement": "all"}


def test_ini_only_settings_ignore_the_environment() -> None:
    # seamtest_env and seamtest_server_settings have no environment layer.
    resolved = settings(env={"SEAMTEST_ENV": "DATABASE_URL={url}"})
    assert resolved["seamtest_env"] == ()
    assert resolved.source("seamtest_env") == "default"


def test_every_option_follows_the_naming_scheme() -> None:
    for option in OPTIONS:
        assert option.name.startswith("seamtest_")
        assert option.flag == "--" + option.name.replace("_", "-")
        assert option.env_name == option.name.upper()
        assert option.help.strip()
