"""Services beyond PostgreSQL: one interface, one lifecycle, shared by the run's processes.

A :class:`Service` says how to run a process (its command line on a free loopback port),
how to tell that it really answers (:meth:`Service.probe`), which values it exports
(``{redis.url}``) and how a test is isolated (:meth:`Service.isolate`). Redis is built on
it (``_redis.RedisService``); a team adds MinIO, a mail catcher or its own binary the same
way. A :class:`ServiceProcess` starts one service with an explicit lifecycle
(:class:`ServiceState`); :class:`Services` makes it once per run through
``Run.shared(...)``: the first process of the run that needs it starts it, the others
read its JSON :class:`ServiceRecord`. A watchdog stops it if pytest dies; the run's owner
stops it at the end (:func:`stop_all`).

Errors (all ``SeamtestError``, so one ``except`` catches seamtest's failures)::

    ServiceError                     a service could not start, answer, or be chosen
    ├── ServiceNotFoundError (FileNotFoundError)   no binary where we looked
    └── NoContainerEngine            the container backend was asked for; no engine answers
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import _watchdog
from ._embedded import log_tail, runtime_parent
from ._privilege import RunAs, can_reach
from ._run import Run
from ._server import ServerState, free_port
from .errors import ServiceError


class NotReady(Exception):
    """Raised by :meth:`Service.probe`: the service does not answer yet; try again."""


#: Service processes this process started. A service outlives the ServiceProcess that
#: started it (the run's owner stops it), so its Popen is kept here, not collected mid-run.
_STARTED: list[subprocess.Popen[bytes]] = []

#: A service's lifecycle is a server's: the same states, the same rules.
ServiceState = ServerState


@dataclass(frozen=True)
class Launch:
    """Where a service is being started: what :meth:`Service.command` and the probe see."""

    host: str  # always 127.0.0.1 for local processes
    port: int  # a port free when it was chosen
    runtime_dir: Path  # private (0700) directory for sockets, logs and data
    password: str  # a random secret, for services that take one
    local: bool = True  # False in a container: no unix socket is shared with the host

    @property
    def socket_path(self) -> Path:
        """A unix socket path inside the private runtime directory."""
        return self.runtime_dir / "service.sock"


@dataclass(frozen=True)
class ServiceRecord:
    """What the process that started a service leaves for the run's other processes."""

    name: str
    #: Values tests and env templates use: ``url`` always, plus what the service adds.
    values: dict[str, str]
    backend: str = "process"  # "process", "external" or "container"
    pid: int | None = None  # the process seamtest owns, if any
    runtime_dir: str | None = None
    container_id: str | None = None
    stop_signal: int = int(signal.SIGTERM)
    description: str = ""
    seconds: float = 0.0  # how long starting took

    @property
    def url(self) -> str:
        return self.values["url"]

    def __getattr__(self, name: str) -> str:
        """``record.host`` is ``record.values["host"]``: what ``{redis.host}`` reads."""
        values = self.__dict__.get("values", {})
        if name in values:
            return str(values[name])
        raise AttributeError(
            f"service {self.__dict__.get('name', '?')!r} has no value {name!r}; it has "
            + ", ".join(sorted(values))
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServiceRecord:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class TestInfo:
    """The test a service isolates: its node id, and the xdist worker running it."""

    nodeid: str
    worker: str  # "main" without xdist, else "gw0", "gw1", ...
    run_id: str = ""  # the run's random id, for names that must not collide across runs
    options: dict[str, Any] = field(default_factory=dict)  # the seamtest marker's kwargs

    @property
    def worker_number(self) -> int:
        """0 for "main" and "gw0", N for "gwN"."""
        match = re.fullmatch(r"gw(\d+)", self.worker)
        return int(match.group(1)) if match else 0


class Service:
    """A process seamtest starts for tests: subclass it and override what differs.

    ``name`` names the service in records, env templates (``{name.url}``) and messages.
    A service runs as a local process (:meth:`command`) or, where it sets ``image`` and
    ``container_port``, in a container (``seamtest._containers``).
    """

    name: str = ""
    #: Seconds a start may take before seamtest gives up and quotes the log.
    start_timeout: float = 30.0
    #: Accounts to run as when pytest runs as root, the first that exists; () stays root.
    run_as_candidates: tuple[str, ...] = ()
    #: The signal that stops the service (its process group), before SIGKILL.
    stop_signal: int = signal.SIGTERM
    #: For the container backend: the default image and the port the service listens on.
    image: str | None = None
    container_port: int | None = None

    def command(self, launch: Launch) -> list[str]:
        """The command line that runs the service in the foreground on ``launch.port``."""
        raise ServiceError(
            f"service {self.name!r} has no local command; it runs in a container only "
            "(set seamtest_services = " + f"{self.name}=container)"
        )

    def environment(self, launch: Launch) -> dict[str, str]:
        """Environment variables for the process (added to pytest's own) or container."""
        return {}

    def container_command(self, launch: Launch) -> list[str] | None:
        """The container's command; None keeps the image's own."""
        return None

    def probe(self, launch: Launch) -> None:
        """Return when the service answers; raise :class:`NotReady` to be asked again.

        The default accepts a TCP connection; override it with a real request (an HTTP
        GET, a PING) when accepting connections is not the same as being ready.
        """
        try:
            with socket.create_connection((launch.host, launch.port), timeout=1):
                return
        except OSError as exc:
            raise NotReady(str(exc)) from exc

    def values(self, launch: Launch) -> dict[str, str]:
        """What tests and env templates see; ``url`` is required."""
        return {
            "url": f"tcp://{launch.host}:{launch.port}",
            "host": launch.host,
            "port": str(launch.port),
        }

    def describe(self) -> str:
        """One line for the report header and messages."""
        return self.name

    @contextlib.contextmanager
    def isolate(self, record: ServiceRecord, test: TestInfo) -> Iterator[ServiceRecord]:
        """Wrap one test: prepare before ``yield``, clean up after; yield what it sees.

        The default shares the service as it is; Redis gives each worker its own logical
        database and flushes it, or each test a key prefix.
        """
        yield record


def unprivileged(candidates: tuple[str, ...], binary: Path | None) -> RunAs | None:
    """The account to drop to when root, or None (not root, no candidate, unreachable)."""
    if os.geteuid() != 0:
        return None
    for name in candidates:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        run_as = RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)
        if entry.pw_uid != 0 and (binary is None or can_reach(binary, run_as, bit=os.X_OK)):
            return run_as
    return None


class ServiceProcess:
    """One service process: start it, wait until it answers, hand it to a watchdog."""

    def __init__(
        self, service: Service, *, owner_pid: int | None = None, binary: Path | None = None
    ) -> None:
        """``binary`` is the executable the command runs, to check the dropped user can."""
        self.service = service
        self.owner_pid = owner_pid or os.getpid()
        self.run_as = unprivileged(service.run_as_candidates, binary)
        self.state = ServiceState.NEW
        self.runtime_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.launch: Launch | None = None

    @property
    def log_path(self) -> Path:
        assert self.runtime_dir is not None
        return self.runtime_dir / "service.log"

    def _failure(self, what: str) -> ServiceError:
        return ServiceError(
            f"{what}\nService: {self.service.describe()}\nLog {self.log_path}, last lines:\n"
            f"{log_tail(self.log_path)}"
        )

    def start(self) -> ServiceRecord:
        """Start the service and return its record."""
        if self.state is not ServiceState.NEW:
            raise ServiceError(
                f"cannot start service {self.service.name!r}: it is {self.state.value}"
            )
        self.state = ServiceState.STARTING
        started = time.perf_counter()
        try:
            record = self._start()
        except BaseException:
            self.state = ServiceState.FAILED
            self._kill()
            if self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            raise
        self.state = ServiceState.RUNNING
        return ServiceRecord(**{**asdict(record), "seconds": time.perf_counter() - started})

    def _start(self) -> ServiceRecord:
        self.runtime_dir = Path(
            tempfile.mkdtemp(prefix=f"seamtest-{self.service.name}-", dir=runtime_parent())
        )
        if self.run_as:
            os.chown(self.runtime_dir, self.run_as.uid, self.run_as.gid)
        password = secrets.token_urlsafe(24)
        for _attempt in range(3):  # the free port may be taken before the service binds it
            launch = Launch("127.0.0.1", free_port(), self.runtime_dir, password)
            self.launch = launch
            process = self._spawn(launch)
            _STARTED.append(process)  # kept for the run: no "still running" warning on GC
            if self._wait_ready(launch, process):
                break
            if "in use" not in log_tail(self.log_path).lower():
                raise self._failure(
                    f"{self.service.name} exited with status {process.returncode} before "
                    "it answered."
                )
        else:
            raise self._failure(f"{self.service.name} found no free port in three attempts.")
        pid_file = self.runtime_dir / "seamtest.pid"
        pid_file.write_text(f"{process.pid}\n")
        _watchdog.spawn(
            self.owner_pid,
            process.pid,
            self.runtime_dir,
            pid_file=pid_file,
            stop_signal=self.service.stop_signal,
        )
        return ServiceRecord(
            name=self.service.name,
            values=self.service.values(launch),
            backend="process",
            pid=process.pid,
            runtime_dir=str(self.runtime_dir),
            stop_signal=int(self.service.stop_signal),
            description=self.service.describe()
            + (f", as {self.run_as.name}" if self.run_as else ""),
        )

    def _spawn(self, launch: Launch) -> subprocess.Popen[bytes]:
        args = self.service.command(launch)
        env = {**os.environ, **self.service.environment(launch)}
        with open(self.log_path, "ab") as log:
            if self.run_as:
                os.chown(self.log_path, self.run_as.uid, self.run_as.gid)
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # Ctrl-C goes to pytest; stop() signals the group
                close_fds=True,
                user=self.run_as.uid if self.run_as else None,
                group=self.run_as.gid if self.run_as else None,
                extra_groups=[] if self.run_as else None,
                cwd=launch.runtime_dir,
            )
        return self.process

    def _wait_ready(self, launch: Launch, process: subprocess.Popen[bytes]) -> bool:
        """True once the probe passes; False if the process exited first."""
        deadline = time.monotonic() + self.service.start_timeout
        delay = 0.005
        while True:
            if process.poll() is not None:
                return False
            try:
                self.service.probe(launch)
                return True
            except NotReady as exc:
                if time.monotonic() > deadline:
                    raise self._failure(
                        f"{self.service.name} did not answer within "
                        f"{self.service.start_timeout:.0f} s: {exc}"
                    ) from None
            time.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _watchdog.stop_group(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Stop the service and remove its runtime directory."""
        if self.state is not ServiceState.RUNNING:
            raise ServiceError(
                f"cannot stop service {self.service.name!r}: it is {self.state.value}"
            )
        assert self.process is not None
        assert self.runtime_dir is not None
        self.state = ServiceState.STOPPING
        _watchdog.stop_group(self.process.pid, self.service.stop_signal)
        self.process.wait()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)
        self.state = ServiceState.STOPPED


RECORD_PREFIX = "service-"
NAME = re.compile(r"[a-z][a-z0-9_]*")


def stop_record(record: ServiceRecord) -> None:
    """Stop a service known only by its record (the owner, at the end of the run)."""
    if record.backend == "process" and record.pid is not None:
        _watchdog.stop_group(record.pid, record.stop_signal)
        # The owner is not the parent of a worker's service: reap only what is ours.
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)
    elif record.backend == "container" and record.container_id:
        from ._containers import remove_container

        remove_container(record.container_id)
    if record.runtime_dir:
        shutil.rmtree(record.runtime_dir, ignore_errors=True)


def started_records(run: Run) -> list[ServiceRecord]:
    """Every service a process of ``run`` has started."""
    records = []
    for path in sorted(run.path.glob(f"{RECORD_PREFIX}*.json")):
        with contextlib.suppress(OSError, ValueError, TypeError):
            records.append(ServiceRecord.from_json(path.read_text()))
    return records


def stop_all(run: Run) -> list[str]:
    """Owner only: stop every service of the run; returns problems, one line each."""
    problems = []
    for record in started_records(run):
        try:
            stop_record(record)
        except Exception as exc:  # teardown never hides a test result: report, go on
            problems.append(f"stopping {record.name}: {type(exc).__name__}: {exc}")
    return problems


class Services:
    """The run's services as one pytest process sees them: started once, then read."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._records: dict[str, ServiceRecord] = {}
        #: Services this process started, with how long each took.
        self.started_here: list[ServiceRecord] = []

    def get(self, name: str, start: Any) -> ServiceRecord:
        """``name``'s record, calling ``start()`` (returning a record) if no process has."""
        if not NAME.fullmatch(name):
            raise ServiceError(
                f"service name {name!r}: use lower-case letters, digits and underscores, "
                "starting with a letter (it names files and env placeholders)"
            )
        if name not in self._records:

            def start_json() -> str:
                record: ServiceRecord = start()
                self.started_here.append(record)
                return record.to_json()

            text = self.run.shared(RECORD_PREFIX + name, start_json)
            self._records[name] = ServiceRecord.from_json(text)
        return self._records[name]

    def process(self, service: Service, binary: Path | None = None) -> ServiceRecord:
        """A local process for ``service``, started once per run."""
        return self.get(
            service.name,
            lambda: ServiceProcess(service, owner_pid=self.run.owner_pid, binary=binary).start(),
        )
