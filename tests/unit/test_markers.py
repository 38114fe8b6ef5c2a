"""``@pytest.mark.seamtest`` arguments are checked by a plain function: typos name themselves."""

from __future__ import annotations

import pytest

from seamtest import ConfigError
from seamtest.fixtures import marker_arguments


def test_the_arguments_and_their_defaults() -> None:
    defaults = marker_arguments()
    assert (defaults["fixtures"], defaults["isolation"]) == ((), None)
    given = marker_arguments(fixtures=["users", "orders"], isolation="database")
    assert (given["fixtures"], given["isolation"]) == (("users", "orders"), "database")


def test_a_misspelt_keyword_raises_type_error_naming_it() -> None:
    with pytest.raises(TypeError, match="'fixture'"):
        marker_arguments(fixture=["users"])  # type: ignore[call-arg]


def test_positional_arguments_are_refused() -> None:
    with pytest.raises(TypeError):
        marker_arguments(["users"])  # type: ignore[misc]


def test_a_single_string_is_not_a_list_of_fixtures() -> None:
    # "users" would otherwise be the fixtures u, s, e, r, s.
    with pytest.raises(ConfigError, match=r"fixtures='users': give a list of fixture names"):
        marker_arguments(fixtures="users")


def test_fixture_names_must_be_strings() -> None:
    with pytest.raises(ConfigError, match="give a list of fixture names"):
        marker_arguments(fixtures=["users", 3])  # type: ignore[list-item]


def test_an_unknown_isolation_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"isolation='rollback': choose one of 'database'"):
        marker_arguments(isolation="rollback")
