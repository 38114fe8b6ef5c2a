"""Redis (and Valkey) on the service interface: found like PostgreSQL, or named by URL.

The server search order (first hit wins):

1. an explicit path: ``seamtest_redis_bin`` / ``SEAMTEST_REDIS_BIN`` / ``--seamtest-redis-bin``
   (the ``redis-server`` or ``valkey-server`` executable, or the directory holding it);
2. ``redis-server``, then ``valkey-server``, on PATH;
3. the usual distribution locations (:data:`SYSTEM_LOCATIONS`).

``seamtest_redis_url`` names an existing server instead (loopback only, unless
``seamtest_allow_remote``). A server seamtest starts keeps nothing on disk (``--save ''
--appendonly no``), listens on 127.0.0.1 and on a unix socket in its private runtime
directory, and asks for a random password. As root it runs as ``redis`` (Debian's
account) or ``nobody``, when that account can execute the binary; otherwise as root,
which Redis allows.

Tests talk to Redis through :func:`command`, a few lines of RESP over a socket, so the
isolation work needs no client library; the ``redis`` and ``aredis`` fixtures need
``redis-py``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from ._server import is_loopback
from ._services import Launch, NotReady, Service, ServiceRecord, TestInfo
from .errors import ConfigError, RemoteServerRefused, ServiceError, ServiceNotFoundError

NAMES = ("redis-server", "valkey-server")
SYSTEM_LOCATIONS = (
    "/usr/bin/redis-server",
    "/usr/bin/valkey-server",
    "/usr/local/bin/redis-server",
    "/usr/local/bin/valkey-server",
    "/opt/homebrew/bin/redis-server",
    "/opt/homebrew/bin/valkey-server",
)
ISOLATIONS = ("flush", "prefix")

#: Logical databases of a server seamtest starts: database 0 for prefix isolation, one per
#: xdist worker (gwN uses N + 1) for flush isolation. Redis' default of 16 would cap a run
#: at -n 15; an empty database costs a few hundred bytes.
DATABASES = 256


@dataclass(frozen=True)
class RedisBinary:
    path: Path
    source: str

    @functools.cached_property
    def version(self) -> str:
        out = subprocess.run(
            [str(self.path), "--version"], capture_output=True, text=True, check=False, timeout=30
        )
        match = re.search(r"^(\w+) server v=(\S+)", out.stdout)
        if out.returncode != 0 or match is None:
            raise ServiceNotFoundError(
                f"{self.path} --version failed (exit {out.returncode}): "
                f"{(out.stderr or out.stdout).strip()}"
            )
        return f"{match.group(1)} {match.group(2)}"

    def describe(self) -> str:
        return f"{self.version} from {self.path} ({self.source})"


def find_redis(explicit: str | None = None, origin: str = "seamtest_redis_bin") -> RedisBinary:
    """The first usable ``redis-server``/``valkey-server`` in the documented order."""
    if explicit:
        path = Path(explicit).expanduser()
        if path.is_dir():
            path = next((path / n for n in NAMES if os.access(path / n, os.X_OK)), path / NAMES[0])
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise ServiceNotFoundError(
                f"{origin} names {explicit}, which is not an executable redis-server or "
                "valkey-server (nor a directory holding one). Fix the path, or unset it to "
                "let seamtest search."
            )
        return RedisBinary(path, origin)
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return RedisBinary(Path(found), "PATH")
    for location in SYSTEM_LOCATIONS:
        if os.access(location, os.X_OK):
            return RedisBinary(Path(location), f"the system location {location}")
    raise ServiceNotFoundError(
        "No Redis server found. Looked for redis-server and valkey-server on PATH and in "
        + ", ".join(SYSTEM_LOCATIONS)
        + ". Fix: install your distribution's package ('apt-get install redis-server', "
        "'brew install redis'), set seamtest_redis_bin / SEAMTEST_REDIS_BIN, name a server "
        "with seamtest_redis_url / SEAMTEST_REDIS_URL, or use the container backend "
        "(seamtest_services = redis=container)."
    )


# -- RESP: just enough protocol for probes and isolation ------------------------------------
class RedisReplyError(ServiceError):
    """The server answered a command with an error reply."""


def _encode(*args: str | bytes) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else arg
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _read(stream: Any) -> Any:
    line = stream.readline()
    if not line.endswith(b"\r\n"):
        raise ConnectionError("connection closed by the server")
    kind, body = line[:1], line[1:-2]
    if kind == b"+":
        return body.decode()
    if kind == b"-":
        raise RedisReplyError(body.decode(errors="replace"))
    if kind == b":":
        return int(body)
    if kind == b"$":
        size = int(body)
        return None if size < 0 else stream.read(size + 2)[:-2]
    if kind == b"*":
        size = int(body)
        return None if size < 0 else [_read(stream) for _ in range(size)]
    raise ConnectionError(f"unexpected reply {line!r}")


@dataclass(frozen=True)
class Address:
    """Where a Redis server listens, and how to log in."""

    host: str
    port: int
    password: str | None = None
    username: str | None = None
    socket: str | None = None  # a unix socket path, preferred for seamtest's own work
    tls: bool = False

    def url(self, db: int = 0) -> str:
        auth = ""
        if self.password is not None:
            auth = quote(self.username or "", safe="") + ":" + quote(self.password, safe="")
            auth += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{host}:{self.port}/{db}"

    @contextlib.contextmanager
    def connect(self, db: int = 0, timeout: float = 5.0) -> Iterator[Any]:
        """A logged-in RESP stream (a socket file) on database ``db``."""
        if self.tls:
            raise ServiceError("seamtest's own Redis commands do not speak TLS; use redis://")
        if self.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(self.socket)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((self.host, self.port), timeout=timeout)
        with sock, sock.makefile("rwb") as stream:
            setup: list[tuple[str, ...]] = []
            if self.password is not None:
                setup.append(
                    ("AUTH", self.password)
                    if not self.username
                    else ("AUTH", self.username, self.password)
                )
            if db:
                setup.append(("SELECT", str(db)))
            if setup:
                stream.write(b"".join(_encode(*c) for c in setup))
                stream.flush()
                for _ in setup:
                    _read(stream)
            yield stream

    def command(self, *args: str, db: int = 0) -> Any:
        """Run one command and return its decoded reply."""
        with self.connect(db) as stream:
            stream.write(_encode(*args))
            stream.flush()
            return _read(stream)

    def ping(self) -> None:
        """Return once the server answers PING; raise NotReady while it starts or loads."""
        try:
            reply = self.command("PING")
        except (OSError, ConnectionError) as exc:
            raise NotReady(str(exc)) from exc
        except RedisReplyError as exc:
            if str(exc).startswith("LOADING"):
                raise NotReady(str(exc)) from exc
            raise
        if reply != "PONG":
            raise NotReady(f"PING answered {reply!r}")

    def delete_prefix(self, prefix: str, db: int = 0) -> int:
        """UNLINK every key starting with ``prefix``; returns how many."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        removed = 0
        with self.connect(db) as stream:
            cursor = b"0"
            while True:
                stream.write(_encode("SCAN", cursor, "MATCH", pattern, "COUNT", "1000"))
                stream.flush()
                cursor, keys = _read(stream)
                if keys:
                    stream.write(_encode("UNLINK", *keys))
                    stream.flush()
                    removed += _read(stream)
                if cursor == b"0":
                    return removed


def parse_redis_url(url: str, *, allow_remote: bool, origin: str) -> Address:
    """Check a user's ``redis://`` URL and turn it into an :class:`Address`."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(
            f"{origin}: {url!r} is not a Redis URL; expected redis://:password@host:port, "
            "rediss://... or unix:///path/to/redis.sock"
        )
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    if parts.scheme == "unix":
        return Address("localhost", 0, password, username, socket=parts.path)
    host = unquote(parts.hostname or "localhost")
    if not allow_remote and not is_loopback(host):
        raise RemoteServerRefused(
            f"{origin} names {host}, which is not a loopback address. seamtest flushes the "
            "Redis databases it uses, so it only touches remote servers you allow: set "
            "seamtest_allow_remote = true (ini) or SEAMTEST_ALLOW_REMOTE=1."
        )
    try:
        port = parts.port or 6379
    except ValueError as exc:
        raise ConfigError(f"{origin}: bad port in {url!r}: {exc}") from None
    return Address(host, port, password, username, tls=parts.scheme == "rediss")


def address_of(record: ServiceRecord) -> Address:
    """The :class:`Address` a Redis record describes."""
    values = record.values
    return Address(
        host=values["host"],
        port=int(values["port"]),
        password=values.get("password") or None,
        username=values.get("username") or None,
        socket=values.get("socket") or None,
        tls=values.get("tls") == "1",
    )


def redis_values(address: Address) -> dict[str, str]:
    return {
        "url": address.url(),
        "host": address.host,
        "port": str(address.port),
        "password": address.password or "",
        "username": address.username or "",
        "socket": address.socket or "",
        "tls": "1" if address.tls else "",
    }


def external_record(address: Address, origin: str) -> ServiceRecord:
    """Check that a server named by URL answers; nothing to stop at the end."""
    try:
        address.ping()
    except (NotReady, RedisReplyError) as exc:
        raise ServiceError(f"cannot use the Redis server named by {origin}: {exc}") from None
    return ServiceRecord(
        name="redis",
        values=redis_values(address),
        backend="external",
        description=f"external server {address.host}:{address.port} ({origin})",
    )


class RedisService(Service):
    """A private redis-server (or valkey-server): no persistence, loopback, a password."""

    name = "redis"
    run_as_candidates = ("redis", "valkey", "nobody")
    image = "redis:7-alpine"
    container_port = 6379

    def __init__(self, binary: RedisBinary | None = None) -> None:
        self.binary = binary
        self._tests = itertools.count(1)  # numbers this process's tests' key prefixes

    def command(self, launch: Launch) -> list[str]:
        if self.binary is None:
            raise ServiceError("RedisService needs a binary to run as a local process")
        options = {
            "port": str(launch.port),
            "bind": "127.0.0.1",
            "protected-mode": "yes",
            "unixsocket": str(launch.socket_path),
            "unixsocketperm": "700",
            "requirepass": launch.password,
            "save": "",  # no snapshots and no append-only file: the data is disposable
            "appendonly": "no",
            "databases": str(DATABASES),
            "dir": str(launch.runtime_dir),
            "logfile": "",  # stdout, which seamtest sends to the runtime directory's log
            "daemonize": "no",
        }
        return [str(self.binary.path), *(a for k, v in options.items() for a in (f"--{k}", v))]

    def address(self, launch: Launch) -> Address:
        return Address(
            launch.host,
            launch.port,
            launch.password,
            socket=str(launch.socket_path) if launch.local else None,
        )

    def probe(self, launch: Launch) -> None:
        self.address(launch).ping()

    def values(self, launch: Launch) -> dict[str, str]:
        return redis_values(self.address(launch))

    def describe(self) -> str:
        return self.binary.describe() if self.binary else "Redis"

    # Containers: the same server, started by the image's entry point.
    def container_command(self, launch: Launch) -> list[str] | None:
        options = {
            "requirepass": launch.password,
            "save": "",
            "appendonly": "no",
            "databases": str(DATABASES),
        }
        return ["redis-server", *(a for k, v in options.items() for a in (f"--{k}", v))]

    @contextlib.contextmanager
    def isolate(self, record: ServiceRecord, test: TestInfo) -> Iterator[ServiceRecord]:
        mode = test.options.get("redis", "flush")
        address = address_of(record)
        if mode == "prefix":
            prefix = f"seamtest:{test.run_id}:{test.worker}:{next(self._tests)}:"
            address.delete_prefix(prefix)
            values = {**record.values, "prefix": prefix, "db": "0"}
            try:
                yield dataclasses.replace(record, values=values)
            finally:
                address.delete_prefix(prefix)
            return
        db = test.worker_number + 1
        try:
            address.command("FLUSHDB", db=db)
        except RedisReplyError as exc:
            if "out of range" in str(exc).lower():
                raise ServiceError(
                    f"Redis database {db} does not exist on {record.description}: flush "
                    f"isolation gives xdist worker {test.worker} database {db}. Run fewer "
                    "workers, raise the server's 'databases' setting, or use "
                    '@pytest.mark.seamtest(redis="prefix")'
                ) from None
            raise
        values = {**record.values, "url": address.url(db), "db": str(db), "prefix": ""}
        try:
            yield dataclasses.replace(record, values=values)
        finally:
            address.command("FLUSHDB", db=db)


def check_isolation(value: object, origin: str) -> str:
    """A Redis isolation mode, or ConfigError listing the valid ones."""
    if value not in ISOLATIONS:
        raise ConfigError(
            f"{origin} = {value!r}: choose one of " + ", ".join(repr(i) for i in ISOLATIONS)
        )
    return str(value)
