"""The package root is the one public surface: a sorted ``__all__`` and one exception tree."""

from __future__ import annotations

import seamtest
from seamtest import errors


def test_all_is_sorted_and_importable() -> None:
    assert seamtest.__all__ == sorted(seamtest.__all__)
    for name in seamtest.__all__:
        assert hasattr(seamtest, name), name


def test_every_error_is_exported_and_derives_from_seamtest_error() -> None:
    classes = {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type)
        and issubclass(value, Exception)
        and not issubclass(value, Warning)
    }
    assert classes <= set(seamtest.__all__)
    for name in classes:
        assert issubclass(getattr(seamtest, name), seamtest.SeamtestError)


def test_builtin_bases_where_the_meaning_matches() -> None:
    assert issubclass(seamtest.ConfigError, ValueError)
    assert issubclass(seamtest.BinariesNotFoundError, FileNotFoundError)
    assert issubclass(seamtest.FixtureNotFoundError, FileNotFoundError)
    assert issubclass(seamtest.FixtureNotFoundError, seamtest.FixtureError)
    assert issubclass(seamtest.RemoteServerRefused, seamtest.ServerError)
    assert issubclass(seamtest.TransactionIsolationError, seamtest.DatabaseError)


def test_the_docstring_draws_every_error() -> None:
    doc = errors.__doc__ or ""
    for name in seamtest.__all__:
        value = getattr(seamtest, name)
        if isinstance(value, type) and issubclass(value, (seamtest.SeamtestError, Warning)):
            assert name in doc, name


def test_version_matches_the_distribution() -> None:
    from importlib.metadata import version

    assert seamtest.__version__ == version("seamtest")
