"""seamtest: integration tests against real infrastructure.

Every test that asks for ``db``, ``adb`` or ``db_url`` gets its own fresh, migrated, real
PostgreSQL database, cloned from a template built once per content hash. The pytest
plugin (``seamtest.plugin``) is registered through the ``pytest11`` entry point; this
module is the public Python API.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._services import NotReady, Service, ServiceRecord, ServiceState
from ._services_plugin import service_fixture
from ._unique import Unique
from .errors import (
    AppLifespanError,
    AppShutdownError,
    AppStartupError,
    BinariesNotFoundError,
    ConfigError,
    DatabaseError,
    FixtureError,
    FixtureNotFoundError,
    LeakError,
    LeakWarning,
    MigrationError,
    NoContainerEngine,
    RemoteServerRefused,
    SeamtestError,
    ServerError,
    ServiceError,
    ServiceNotFoundError,
    TransactionIsolationError,
)

__all__ = [
    "AppLifespanError",
    "AppShutdownError",
    "AppStartupError",
    "BinariesNotFoundError",
    "ConfigError",
    "DatabaseError",
    "FixtureError",
    "FixtureNotFoundError",
    "LeakError",
    "LeakWarning",
    "MigrationError",
    "NoContainerEngine",
    "NotReady",
    "RemoteServerRefused",
    "SeamtestError",
    "ServerError",
    "Service",
    "ServiceError",
    "ServiceNotFoundError",
    "ServiceRecord",
    "ServiceState",
    "TransactionIsolationError",
    "Unique",
    "__version__",
    "service_fixture",
]
