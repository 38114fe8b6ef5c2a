"""Database names: prefixed, readable, unique, plain ASCII, within PostgreSQL's 63 bytes."""

from __future__ import annotations

import re

import pytest

from seamtest import ConfigError
from seamtest._names import MAX_IDENTIFIER, check_prefix, database_name, label_for_test, slug

SAFE = re.compile(r"^[a-z0-9_]+$")

AWKWARD_IDS = [
    "tests/test_users.py::test_create",
    "tests/test_users.py::TestUser::test_" + "very_long_name_" * 10,
    "tests/test_ünïcode.py::test_naïve[日本語-ß-🙂]",
    "tests/test_q.py::test_quoted[a\"b'c d]",
    "tests/test_q.py::test_quoted[' OR 1=1; DROP DATABASE postgres; --]",
    "tests/test_q.py::test_param[" + "x" * 300 + "]",
    "tests/test_q.py::test_empty_slug[日本]",
]


@pytest.mark.parametrize("nodeid", AWKWARD_IDS)
@pytest.mark.parametrize("prefix", ["seamtest_", "a", "abcdefghijklmnopqrstuvwx"])
def test_names_fit_63_bytes_and_need_no_quoting(nodeid: str, prefix: str) -> None:
    name = database_name(prefix, "t", label_for_test(nodeid), unique=nodeid)
    assert len(name.encode("utf-8")) <= MAX_IDENTIFIER
    assert name.startswith(prefix + "t_")
    assert SAFE.match(name), name


def test_long_ids_that_share_a_long_start_get_different_names() -> None:
    base = "tests/test_a.py::test_" + "same_start_" * 10
    names = {
        database_name("seamtest_", "t", label_for_test(nodeid), unique=nodeid)
        for nodeid in (base + "one", base + "two", base + "[1]", base + "[2]")
    }
    assert len(names) == 4


def test_ids_with_the_same_slug_get_different_names() -> None:
    # Both slug to "test_x_a_b"; only the hash tells them apart.
    first, second = "t.py::test_x[a-b]", "t.py::test_x[a b]"
    assert slug(label_for_test(first)) == slug(label_for_test(second))
    assert database_name("seamtest_", "t", label_for_test(first), unique=first) != database_name(
        "seamtest_", "t", label_for_test(second), unique=second
    )


def test_same_test_name_in_two_files_gets_two_names() -> None:
    first, second = "tests/a/test_x.py::test_it", "tests/b/test_x.py::test_it"
    assert label_for_test(first) == label_for_test(second)
    assert database_name("p_", "t", "test_it", unique=first) != database_name(
        "p_", "t", "test_it", unique=second
    )


def test_names_are_deterministic_and_readable() -> None:
    nodeid = "tests/test_users.py::TestUsers::test_create[alice]"
    name = database_name("seamtest_", "t", label_for_test(nodeid), unique=nodeid)
    assert name == database_name("seamtest_", "t", label_for_test(nodeid), unique=nodeid)
    assert name.startswith("seamtest_t_test_create_alice_")


def test_label_is_the_test_name_with_parameters() -> None:
    assert label_for_test("tests/test_x.py::TestA::test_b[1-2]") == "test_b[1-2]"
    assert label_for_test("test_b") == "test_b"


@pytest.mark.parametrize("prefix", ["seamtest_", "ci_shard3_", "a"])
def test_good_prefixes_pass(prefix: str) -> None:
    assert check_prefix(prefix) == prefix


@pytest.mark.parametrize(
    "prefix", ["", "Seamtest_", "1abc", "seam-test", "seamtest_\u00e9", "a" * 25, "a b"]
)
def test_bad_prefixes_are_refused_naming_the_setting(prefix: str) -> None:
    with pytest.raises(ConfigError, match=r"seamtest_db_prefix .*lower-case letters"):
        check_prefix(prefix, "seamtest_db_prefix (from ini)")
