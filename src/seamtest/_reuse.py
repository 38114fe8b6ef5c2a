"""A server kept running between runs: ``seamtest up`` / ``seamtest down``.

A run that finds this server uses it instead of starting its own: no start-up cost, and
templates built by earlier runs are still there (they are keyed by content, so a changed
migration still builds a new one). The server is not tied to any pytest process, so it
has no watchdog: it runs until ``seamtest down``. Its state file is written under a
file lock, so two ``seamtest up`` (or a run and an ``up``) racing never start two.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator
from pathlib import Path

from . import _watchdog
from ._binaries import Binaries
from ._cluster import cache_dir
from ._embedded import EmbeddedServer, stop_recorded
from ._privilege import RunAs
from ._run import ServerRecord


def state_dir() -> Path:
    """seamtest's cache directory: only seamtest's own processes read the state file."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root


@contextlib.contextmanager
def _locked() -> Iterator[Path]:
    directory = state_dir()
    with open(directory / "server.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield directory / "server.json"
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _answers(record: ServerRecord) -> bool:
    import psycopg

    if record.pid is None or not _watchdog.alive(record.pid):
        return False
    try:
        with record.endpoint.connect(connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def find_running(bin_dir: str | None = None) -> ServerRecord | None:
    """The ``seamtest up`` server, if one runs (and uses ``bin_dir``'s binaries, if given)."""
    path = state_dir() / "server.json"
    if not path.exists():
        return None
    try:
        record = ServerRecord.from_json(path.read_text())
    except (OSError, ValueError, KeyError):
        return None
    if bin_dir and record.bin_dir and Path(bin_dir).resolve() != Path(record.bin_dir).resolve():
        return None
    return record if _answers(record) else None


def up(
    binaries: Binaries, run_as: RunAs | None, settings: dict[str, str]
) -> tuple[ServerRecord, bool]:
    """Start the reusable server unless it runs; returns it and whether this call started it."""
    with _locked() as path:
        if path.exists():
            try:
                record = ServerRecord.from_json(path.read_text())
            except (ValueError, KeyError):
                record = None
            if record is not None and _answers(record):
                return record, False
            if record is not None and record.runtime_dir:  # crashed: clean its leftovers
                shutil.rmtree(record.runtime_dir, ignore_errors=True)
        server = EmbeddedServer(binaries, run_as=run_as, settings=settings, watchdog=False)
        endpoint = server.start()
        assert server.process is not None
        record = ServerRecord(
            endpoint,
            server.process.pid,
            str(server.runtime_dir),
            dict(server.timings),
            str(server.binaries.bin_dir),
        )
        path.write_text(record.to_json())
        path.chmod(0o600)  # it holds the password
        return record, True


def down() -> ServerRecord | None:
    """Stop the reusable server and remove its data; returns what was stopped."""
    with _locked() as path:
        if not path.exists():
            return None
        try:
            record = ServerRecord.from_json(path.read_text())
        except (ValueError, KeyError):
            path.unlink()
            return None
        if record.pid is not None and record.runtime_dir:
            stop_recorded(record.pid, Path(record.runtime_dir))
        path.unlink()
        return record
