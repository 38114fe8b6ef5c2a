"""The embedded default server: a private, test-tuned PostgreSQL for one pytest run.

Start = copy the cached initdb'd cluster into a runtime directory (on tmpfs when it has
room), start ``postgres`` directly (``pg_ctl -w`` polls every 100 ms; a direct start with
real connection polling is ready in about 60 ms), set a random password for TCP, and hand
the postmaster to a watchdog that stops it if pytest dies. It listens on a unix socket in
a 0700 directory and on 127.0.0.1 only.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # psycopg is imported on first use: loading the plugin stays cheap
    import psycopg

from . import _watchdog
from ._binaries import Binaries, require_major
from ._cluster import SUPERUSER, copy_tree, prepared_cluster
from ._privilege import RunAs, can_reach, reachable_binaries
from ._server import Endpoint, ServerState, free_port, wait_until_ready
from .errors import ServerError

#: Settings for a server whose data is disposable. fsync, synchronous_commit and
#: full_page_writes off make commits and CREATE DATABASE cheap; autovacuum off keeps
#: background workers out of databases we are about to drop; minimal WAL because
#: nothing replicates; jit off because test queries are tiny and JIT start-up is not.
TEST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "1GB",
    "checkpoint_timeout": "1h",
    "autovacuum": "off",
    "jit": "off",
    # xdist workers each hold a few connections; 200 leaves room for -n 16 with pools.
    "max_connections": "200",
    "listen_addresses": "127.0.0.1",
    # Dynamic shared memory as files in the data directory, not /dev/shm segments: an
    # immediate shutdown (or SIGKILL) leaves POSIX segments behind; files go with the data.
    "dynamic_shared_memory_type": "mmap",
    "unix_socket_permissions": "0700",
}

#: Postmasters this process started. The server outlives the EmbeddedServer object that
#: started it (the run's owner stops it, maybe from another process), so the Popen is
#: kept here rather than garbage-collected mid-run with a "still running" warning.
_STARTED: list[subprocess.Popen[bytes]] = []

#: tmpfs is used for data when it has at least this much free space.
TMPFS_MIN_FREE = 1 << 30
TMPFS = Path("/dev/shm")


def runtime_parent() -> Path:
    """Where runtime directories go: ``SEAMTEST_RUNTIME_DIR``, tmpfs if roomy, else tmp."""
    explicit = os.environ.get("SEAMTEST_RUNTIME_DIR")
    if explicit:
        return Path(explicit)
    try:
        stats = os.statvfs(TMPFS)
        if stats.f_bavail * stats.f_frsize >= TMPFS_MIN_FREE and os.access(TMPFS, os.W_OK):
            return TMPFS
    except OSError:
        pass
    return Path(tempfile.gettempdir())


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        text = log.read_text(errors="replace").splitlines()
    except OSError:
        return "(no server log)"
    return "\n".join("    " + line for line in text[-lines:]) or "    (empty)"


class EmbeddedServer:
    """A PostgreSQL server seamtest starts, owns and stops."""

    def __init__(
        self,
        binaries: Binaries,
        *,
        run_as: RunAs | None = None,
        owner_pid: int | None = None,
        settings: dict[str, str] | None = None,
        start_timeout: float = 30.0,
        watch_dirs: tuple[Path, ...] = (),
        existing: Path | None = None,
        password: str | None = None,
        watchdog: bool = True,
    ) -> None:
        """``existing`` restarts a runtime directory kept by an earlier run (its data is
        kept, not removed, when the watchdog fires); ``password`` keeps its password;
        ``watchdog=False`` is for ``seamtest up``, whose server outlives any pytest."""
        require_major(binaries)
        self.binaries = reachable_binaries(binaries, run_as)
        self.run_as = run_as
        self.owner_pid = owner_pid or os.getpid()
        self.settings = {**TEST_SETTINGS, **(settings or {})}
        self.start_timeout = start_timeout
        self.watch_dirs = watch_dirs
        self.existing = existing
        self.watchdog = watchdog
        self.password = password or secrets.token_urlsafe(24)
        self.state = ServerState.NEW
        self.runtime_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.endpoint: Endpoint | None = None
        #: Seconds spent on each start step, for the terminal summary.
        self.timings: dict[str, float] = {}
        self.cluster_built = False

    @property
    def log_path(self) -> Path:
        assert self.runtime_dir is not None
        return self.runtime_dir / "server.log"

    def _mkdir_private(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        if self.run_as:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def _check_parent(self, parent: Path) -> None:
        if self.run_as and not can_reach(parent, self.run_as, bit=os.X_OK):
            raise ServerError(
                f"the server runs as {self.run_as.name} (pytest runs as root), who cannot "
                f"enter {parent}: point SEAMTEST_RUNTIME_DIR at a directory every user can "
                "traverse (such as a tmpfs mount with mode 0755), or unset it."
            )

    def _prepare_dirs(self) -> Path:
        if self.existing is not None:
            self.runtime_dir = self.existing
            (self.existing / _watchdog.KEEP_MARKER).touch()
            self._mkdir_private(self.existing / "socket")
            return self.existing / "data"
        parent = runtime_parent()
        self._check_parent(parent.resolve())
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="seamtest-", dir=parent))
        if self.run_as:
            os.chown(self.runtime_dir, self.run_as.uid, self.run_as.gid)
        started = time.perf_counter()
        cluster, self.cluster_built = prepared_cluster(self.binaries, self.run_as, self.runtime_dir)
        self.timings["initdb" if self.cluster_built else "cluster cache"] = (
            time.perf_counter() - started
        )
        started = time.perf_counter()
        data = self.runtime_dir / "data"
        copy_tree(cluster, data)
        data.chmod(0o700)
        if self.run_as:
            self.run_as.chown_tree(data)
        self._mkdir_private(self.runtime_dir / "socket")
        self.timings["copy cluster"] = time.perf_counter() - started
        return data

    def _spawn(self, data: Path, port: int) -> subprocess.Popen[bytes]:
        assert self.runtime_dir is not None
        args = [str(self.binaries.postgres), "-D", str(data)]
        settings = {
            **self.settings,
            "port": str(port),
            "unix_socket_directories": str(self.runtime_dir / "socket"),
        }
        for name, value in settings.items():
            args += ["-c", f"{name}={value}"]
        with open(self.log_path, "ab") as log:
            if self.run_as:
                os.chown(self.log_path, self.run_as.uid, self.run_as.gid)
            return subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to pytest, not to the server
                close_fds=True,
                user=self.run_as.uid if self.run_as else None,
                group=self.run_as.gid if self.run_as else None,
                extra_groups=[] if self.run_as else None,
                cwd=self.runtime_dir,
            )

    def _failure(self, what: str) -> ServerError:
        return ServerError(
            f"{what}\nServer: {self.binaries.describe()}\nLog {self.log_path}, last lines:\n"
            f"{log_tail(self.log_path)}"
        )

    def start(self) -> Endpoint:
        """Start the server and return how to reach it."""
        if self.state is not ServerState.NEW:
            raise ServerError(f"cannot start an embedded server that is {self.state.value}")
        self.state = ServerState.STARTING
        try:
            return self._start()
        except BaseException:
            self.state = ServerState.FAILED
            self._kill()
            if self.existing is None and self.runtime_dir is not None:
                shutil.rmtree(self.runtime_dir, ignore_errors=True)
            raise

    def _start(self) -> Endpoint:
        import psycopg

        data = self._prepare_dirs()
        assert self.runtime_dir is not None
        password = self.password
        for _attempt in range(3):  # the free port may be taken before postgres binds it
            port = free_port()
            started = time.perf_counter()
            self.process = self._spawn(data, port)
            endpoint = Endpoint(
                kind="embedded",
                host="127.0.0.1",
                port=port,
                user=SUPERUSER,
                password=password,
                dbname="postgres",
                socket_dir=str(self.runtime_dir / "socket"),
                description=self.binaries.describe(),
                version=self.binaries.version,
            )
            process = self.process
            _STARTED.append(process)

            def running(proc: subprocess.Popen[bytes] = process) -> bool:
                return proc.poll() is None

            try:
                conn = wait_until_ready(
                    endpoint, timeout=self.start_timeout, still_starting=running
                )
            except psycopg.OperationalError as exc:
                if process.poll() is not None and "could not bind" in log_tail(self.log_path):
                    continue
                self._kill()
                raise self._failure(f"PostgreSQL did not become ready: {exc}") from exc
            self.timings["start"] = time.perf_counter() - started
            with conn:
                self._set_password(conn, password)
            break
        else:
            raise self._failure("PostgreSQL could not bind a free port in three attempts.")
        if self.watchdog:
            _watchdog.spawn(self.owner_pid, self.process.pid, self.runtime_dir, *self.watch_dirs)
        self.endpoint = endpoint
        self.state = ServerState.RUNNING
        return endpoint

    def _set_password(self, conn: psycopg.Connection[Any], password: str) -> None:
        from psycopg import sql

        if self.binaries.major >= 16:
            # Loopback-only server with a random per-run password: the default 4096 SCRAM
            # iterations would add ~6 ms to every TCP connection for no protection.
            conn.execute("SET scram_iterations = 16")
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(SUPERUSER), sql.Literal(password)
            )
        )

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            _watchdog.stop_postmaster(self.process.pid)

    def stop(self, keep_data: bool = False) -> None:
        """Stop the server; remove its data unless ``keep_data``."""
        if self.state is not ServerState.RUNNING:
            raise ServerError(f"cannot stop an embedded server that is {self.state.value}")
        assert self.process is not None
        assert self.runtime_dir is not None
        self.state = ServerState.STOPPING
        stop_recorded(
            self.process.pid, self.runtime_dir, keep_data=keep_data or self.existing is not None
        )
        self.process.wait()
        self.state = ServerState.STOPPED


def stop_recorded(pid: int, runtime_dir: Path, *, keep_data: bool = False) -> None:
    """Stop a server known only by its pid and runtime directory (from another process)."""
    if keep_data:
        (runtime_dir / _watchdog.KEEP_MARKER).touch()
    _watchdog.stop_postmaster(pid, fast=keep_data)
    if not keep_data:
        shutil.rmtree(runtime_dir, ignore_errors=True)
