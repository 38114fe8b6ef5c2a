"""Where PostgreSQL comes from: the interface every server kind offers.

A server is reached through an :class:`Endpoint`, a plain record that travels from the
process that started the server to every xdist worker (as JSON). Starting and stopping
belong to the server kinds (`_embedded.EmbeddedServer`, :class:`ExternalServer`), each
with an explicit lifecycle: an operation in the wrong state raises, naming the state.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

if TYPE_CHECKING:  # psycopg is imported on first use: loading the plugin stays cheap
    import psycopg

from .errors import ConfigError, RemoteServerRefused, ServerError


class ServerState(enum.Enum):
    """Lifecycle of a server seamtest manages."""

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class Endpoint:
    """How to reach a server: what applications see (TCP) and the fast local path."""

    kind: str  # "embedded" or "external"
    host: str  # a TCP host applications can use (127.0.0.1 for the embedded server)
    port: int
    user: str
    password: str | None
    dbname: str  # the maintenance database seamtest connects to for admin work
    socket_dir: str | None = None  # unix socket directory, faster than TCP, embedded only
    params: dict[str, str] = field(default_factory=dict)  # extra libpq params (sslmode, ...)
    description: str = ""
    version: str = ""

    def url(self, dbname: str | None = None) -> str:
        """A ``postgresql://`` URL for ``dbname`` (default: the maintenance database)."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = "&".join(f"{k}={quote(v, safe='')}" for k, v in sorted(self.params.items()))
        url = f"postgresql://{auth}@{host}:{self.port}/{quote(dbname or self.dbname, safe='')}"
        return f"{url}?{query}" if query else url

    def conninfo(self, dbname: str | None = None) -> str:
        """A libpq conninfo string, through the unix socket when there is one."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=self.socket_dir or self.host,
            port=self.port,
            user=self.user,
            password=None if self.socket_dir else self.password,
            dbname=dbname or self.dbname,
            **self.params,
        )

    def connect(self, dbname: str | None = None, **kwargs: Any) -> psycopg.Connection[Any]:
        """Open a connection (autocommit by default: admin work is DDL outside transactions)."""
        kwargs.setdefault("autocommit", True)
        import psycopg

        return psycopg.connect(self.conninfo(dbname), **kwargs)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Endpoint:
        return cls(**json.loads(text))

    def redacted_url(self, dbname: str | None = None) -> str:
        """The URL with the password hidden, for headers and logs."""
        if self.password is None:
            return self.url(dbname)
        return self.url(dbname).replace(quote(self.password, safe=""), "***", 1)


def is_loopback(host: str) -> bool:
    """True for a unix socket directory, ``localhost`` and loopback addresses."""
    if not host or host.startswith("/") or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_url(url: str, *, allow_remote: bool, origin: str) -> Endpoint:
    """Turn a user's ``postgresql://`` URL into an :class:`Endpoint`, checking it first."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(
            f"{origin}: {url!r} is not a PostgreSQL URL; expected "
            "postgresql://user:password@host:port/dbname"
        )
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigError(f"{origin}: bad port in {url!r}: {exc}") from None
    params = {
        unquote(k): unquote(v)
        for k, _, v in (p.partition("=") for p in parts.query.split("&") if "=" in p)
    }
    # libpq lets query parameters override the URL's parts (?host=, ?hostaddr=): check
    # what libpq would really connect to, not just the part before the path.
    host = params.pop("host", "") or unquote(parts.hostname or "") or "localhost"
    hostaddr = params.get("hostaddr", "")
    if "port" in params:
        if not params["port"].isdigit():
            raise ConfigError(f"{origin}: bad port {params['port']!r} in {url!r}")
        port = int(params.pop("port"))
    if "," in host or "," in hostaddr:
        raise ConfigError(f"{origin}: {url!r} names several hosts; give seamtest one server.")
    for target in filter(None, (host, hostaddr)):
        if not allow_remote and not is_loopback(target):
            raise RemoteServerRefused(
                f"{origin} names {target}, which is not a loopback address. seamtest creates "
                "and drops databases on the server it is given, so it only touches remote "
                "servers you allow: set seamtest_allow_remote = true (ini) or "
                "SEAMTEST_ALLOW_REMOTE=1."
            )
    dbname = params.pop("dbname", "") or unquote(parts.path.lstrip("/")) or "postgres"
    user = params.pop("user", "") or unquote(parts.username or "") or "postgres"
    password = params.pop("password", None)
    if password is None and parts.password is not None:
        password = unquote(parts.password)
    return Endpoint(
        kind="external",
        host=host,
        port=port,
        user=user,
        password=password,
        dbname=dbname,
        socket_dir=host if host.startswith("/") else None,
        params=params,
        description=f"external server {host}:{port} ({origin})",
    )


class ExternalServer:
    """A server someone else runs: starting checks that it answers, stopping does nothing."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.state = ServerState.NEW

    def start(self) -> Endpoint:
        if self.state is not ServerState.NEW:
            raise ServerError(f"cannot start a server that is {self.state.value}")
        self.state = ServerState.STARTING
        import psycopg

        try:
            with self.endpoint.connect(connect_timeout=10) as conn:
                version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        except psycopg.OperationalError as exc:
            self.state = ServerState.FAILED
            raise ServerError(
                f"cannot connect to {self.endpoint.redacted_url()}: {str(exc).strip()}"
            ) from exc
        self.state = ServerState.RUNNING
        self.endpoint = dataclasses.replace(self.endpoint, version=version.split(maxsplit=1)[0])
        return self.endpoint

    def stop(self) -> None:
        self.state = ServerState.STOPPED


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free right now on ``host`` (the caller retries if it is taken later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until_ready(
    endpoint: Endpoint, *, timeout: float, still_starting: Callable[[], bool] | None = None
) -> psycopg.Connection[Any]:
    """Poll with real connections until the server answers; return that connection.

    Retries only on errors that mean "not ready yet" (no socket, starting up); anything
    else, or ``still_starting()`` turning false (the process died), ends the wait.
    """
    import psycopg

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            return endpoint.connect(connect_timeout=2)
        except psycopg.OperationalError as exc:
            text = str(exc)
            transient = (
                "No such file" in text
                or "Connection refused" in text
                or "starting up" in text
                or ("shutting down" not in text and "the database system is" in text)
            )
            if not transient or time.monotonic() > deadline:
                raise
            if still_starting is not None and not still_starting():
                raise
        time.sleep(delay)
        delay = min(delay * 1.5, 0.05)
