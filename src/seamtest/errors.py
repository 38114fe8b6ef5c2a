"""seamtest's exceptions: one tree, each naming what happened, why, and the fix.

SeamtestError
├── ConfigError (ValueError)            a bad option, ini value, marker argument or URL
├── BinariesNotFoundError (FileNotFoundError)
│                                       no PostgreSQL server binaries where we looked
├── ServerError                         the server could not start, died, or is unsafe
│   └── RemoteServerRefused             a non-loopback server without seamtest_allow_remote
├── MigrationError                      a migration failed (file, line, server message)
├── FixtureError                        a SQL fixture file is missing or failed
│   └── FixtureNotFoundError (FileNotFoundError)
├── DatabaseError                       provisioning a test database failed
│   ├── TransactionIsolationError       something that cannot work under rollback isolation
│   └── LeakError                       a test left state behind (seamtest_leaks = "error")
├── ServiceError                        a service (Redis, your own) could not start or answer
│   ├── ServiceNotFoundError (FileNotFoundError)
│   │                                   no binary for the service where seamtest looked
│   └── NoContainerEngine               the container backend has no engine to talk to
└── AppLifespanError                    the application under test failed its ASGI lifespan
    ├── AppStartupError                 startup failed: the test could not run against it
    └── AppShutdownError                shutdown failed after the test

Warnings: LeakWarning (UserWarning), a test left state behind that its isolation strategy
did not clean (an error instead with seamtest_leaks = "error").
"""

from __future__ import annotations


class SeamtestError(Exception):
    """Base class of every error seamtest raises."""


class ConfigError(SeamtestError, ValueError):
    """A bad option, ini value, environment variable, marker argument or URL."""


class BinariesNotFoundError(SeamtestError, FileNotFoundError):
    """No usable PostgreSQL server binaries (``postgres`` and ``initdb``) were found."""


class ServerError(SeamtestError):
    """The PostgreSQL server could not be started, stopped, reached, or used safely."""


class RemoteServerRefused(ServerError):
    """The URL names a server beyond loopback and ``seamtest_allow_remote`` is not set."""


class MigrationError(SeamtestError):
    """A migration failed; the message names the file, the line and the server's error."""


class FixtureError(SeamtestError):
    """A SQL fixture file could not be loaded."""


class FixtureNotFoundError(FixtureError, FileNotFoundError):
    """A fixture named in ``@pytest.mark.seamtest(fixtures=...)`` has no file."""


class DatabaseError(SeamtestError):
    """A test database could not be created, reset or dropped."""


class TransactionIsolationError(DatabaseError):
    """An operation that cannot work when the test runs inside a rolled-back transaction."""


class LeakError(DatabaseError):
    """A test left state behind that its isolation strategy did not clean."""


class ServiceError(SeamtestError):
    """A service could not be found, started, reached or chosen."""


class ServiceNotFoundError(ServiceError, FileNotFoundError):
    """No binary for a service where seamtest looked."""


class NoContainerEngine(ServiceError):
    """The container backend was chosen and no Docker-compatible engine answers."""


class AppLifespanError(SeamtestError):
    """The application's ASGI lifespan failed."""


class AppStartupError(AppLifespanError):
    """The application's lifespan startup failed, so the test could not run against it."""


class AppShutdownError(AppLifespanError):
    """The application's lifespan shutdown failed after the test."""


class LeakWarning(UserWarning):
    """A test left state behind that its isolation strategy did not clean."""
