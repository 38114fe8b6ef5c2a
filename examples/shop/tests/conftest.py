"""Keeps the unit/integration split honest, at collection time.

* A test under ``tests/integration`` must carry ``@pytest.mark.integration`` (usually as
  ``pytestmark``), so ``-m "not integration"`` really leaves it out.
* A test under ``tests/unit`` must not ask for infrastructure (``db``, ``redis``, ...):
  if it needs a database it is an integration test, and belongs in the other folder.
"""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent
UNIT = HERE / "unit"
INTEGRATION = HERE / "integration"

#: seamtest's fixtures that start or touch a server; a unit test asking for one is misfiled.
INFRASTRUCTURE = frozenset(
    {
        "db",
        "adb",
        "db_url",
        "sa_engine",
        "sa_async_engine",
        "sa_session",
        "sa_async_session",
        "asyncpg_conn",
        "client",
        "aclient",
        "seamtest_app",
        "redis",
        "aredis",
        "redis_url",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse to run a suite whose tests are in the wrong folder (the list says which)."""
    problems = []
    for item in items:
        path = Path(item.path)
        if path.is_relative_to(INTEGRATION) and item.get_closest_marker("integration") is None:
            problems.append(f"{item.nodeid}: add pytestmark = pytest.mark.integration")
        elif path.is_relative_to(UNIT):
            used = sorted(INFRASTRUCTURE.intersection(getattr(item, "fixturenames", ())))
            if used:
                problems.append(
                    f"{item.nodeid}: a unit test asks for {', '.join(used)}; "
                    "move it to tests/integration"
                )
    if problems:
        raise pytest.UsageError("misfiled tests:\n  " + "\n  ".join(problems))
