"""Kept runs: the embedded server's data saved because a test failed.

The embedded server lives as long as the pytest run. When a test fails, its database is
kept; at the end of the run the server is stopped cleanly and its runtime directory moved
to ``<kept root>/<run id>`` with a ``seamtest.json`` describing it, so that
``seamtest serve <run id>`` can start that server again for inspection. Runs older than
``seamtest_kept_ttl`` are removed by later runs and by ``seamtest gc``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._cluster import cache_dir
from ._privilege import shared_root


@dataclass(frozen=True)
class KeptRun:
    path: Path
    info: dict[str, Any]

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def age_hours(self) -> float:
        return (time.time() - float(self.info.get("stopped", 0))) / 3600

    @property
    def tests(self) -> list[tuple[str, str]]:
        return [(str(t), str(u)) for t, u in self.info.get("kept", [])]


def kept_root() -> Path:
    """``<cache>/kept``; as root, a directory the server's unprivileged user can reach
    (root's cache under ``/root`` is closed to it)."""
    if os.geteuid() == 0:
        return shared_root() / "kept"
    return cache_dir() / "kept"


def kept_runs() -> list[KeptRun]:
    runs: list[KeptRun] = []
    root = kept_root()
    if not root.is_dir():
        return runs
    for path in sorted(root.iterdir()):
        try:
            info = json.loads((path / "seamtest.json").read_text())
        except (OSError, ValueError):
            continue  # being written, or not ours
        runs.append(KeptRun(path, info))
    return runs


def find_kept(run_id: str) -> KeptRun | None:
    return next((run for run in kept_runs() if run.run_id == run_id), None)


#: Kept runs beyond this many (newest first) are removed whatever their age: each holds a
#: whole server's data (tens of MB), and a suite that fails often would fill the disk.
MAX_KEPT_RUNS = 5


def collect_kept(ttl_hours: float, keep_at_most: int = MAX_KEPT_RUNS) -> list[str]:
    """Remove kept runs older than ``ttl_hours`` and all but the newest ``keep_at_most``."""
    removed = []
    newest_first = sorted(kept_runs(), key=lambda run: run.age_hours)
    for index, run in enumerate(newest_first):
        if run.age_hours > ttl_hours or index >= keep_at_most:
            shutil.rmtree(run.path, ignore_errors=True)
            removed.append(run.run_id)
    return removed
