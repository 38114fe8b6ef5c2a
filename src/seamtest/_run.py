"""One run, one server: the run directory that xdist workers share.

The process pytest was started as (the xdist controller, or the only process) creates a
private run directory and owns it. Workers find it through ``SEAMTEST_RUN``, an
environment variable the controller sets before spawning them; each worker removes it
from its own environment at once, so pytest sessions that tests start (pytester) never
mistake themselves for workers. The server is started lazily, by whichever process needs
it first, under a file lock; the owner stops it when the run ends and the watchdog stops
it if the owner dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ._server import Endpoint

RUN_ENV = "SEAMTEST_RUN"


@dataclass(frozen=True)
class ServerRecord:
    """What the process that started the server leaves for the others."""

    endpoint: Endpoint
    pid: int | None = None  # None for servers seamtest does not own
    runtime_dir: str | None = None
    timings: dict[str, float] | None = None
    bin_dir: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "endpoint": json.loads(self.endpoint.to_json()),
                "pid": self.pid,
                "runtime_dir": self.runtime_dir,
                "timings": self.timings,
                "bin_dir": self.bin_dir,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ServerRecord:
        data = json.loads(text)
        return cls(
            Endpoint.from_json(json.dumps(data["endpoint"])),
            data["pid"],
            data["runtime_dir"],
            data["timings"],
            data.get("bin_dir"),
        )


@dataclass(frozen=True)
class Run:
    """A run's identity and shared directory."""

    run_id: str
    path: Path
    owner_pid: int

    @property
    def is_owner(self) -> bool:
        return self.owner_pid == os.getpid()

    @classmethod
    def create(cls) -> Run:
        run_id = secrets.token_hex(4)
        path = Path(tempfile.mkdtemp(prefix=f"seamtest-run-{run_id}-"))
        return cls(run_id, path, os.getpid())

    def export_for_workers(self) -> None:
        os.environ[RUN_ENV] = json.dumps(
            {"run_id": self.run_id, "path": str(self.path), "owner": self.owner_pid}
        )

    @classmethod
    def adopt_from_environment(cls) -> Run | None:
        """The controller's run, if this process is one of its xdist workers."""
        raw = os.environ.pop(RUN_ENV, None)
        if raw is None:
            return None
        data = json.loads(raw)
        if data["owner"] != os.getppid():  # inherited by something that is not our worker
            return None
        return cls(data["run_id"], Path(data["path"]), data["owner"])

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with open(self.path / f"{name}.lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def shared(self, name: str, start: Callable[[], str]) -> str:
        """The run's shared ``name`` (a JSON text), made by ``start()`` on first use.

        The first process of the run to ask calls ``start()`` under a file lock; every
        other process, waiting on that lock, gets what it returned. Services (the
        PostgreSQL server, Redis, ...) are started this way, once per run.
        """
        record = self.path / f"{name}.json"
        with self._locked(name):
            if record.exists():
                return record.read_text()
            text = start()
            tmp = record.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(record)
            return text

    def recorded(self, name: str) -> str | None:
        """``name``'s JSON text if a process of the run has made it."""
        record = self.path / f"{name}.json"
        return record.read_text() if record.exists() else None

    def server(self, start: Callable[[], ServerRecord]) -> ServerRecord:
        """The run's PostgreSQL server, started by ``start()`` if no process has yet."""
        return ServerRecord.from_json(self.shared("server", lambda: start().to_json()))

    def started_server(self) -> ServerRecord | None:
        text = self.recorded("server")
        return ServerRecord.from_json(text) if text else None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
