"""The container backend: services from a Docker-compatible engine, via testcontainers.

Chosen per service with the ini line list ``seamtest_services`` (``redis = container``,
``postgres = container postgres:17-alpine``, ``NAME = container IMAGE`` for a user's own
:class:`~seamtest._services.Service`); Kafka and Elasticsearch exist only here. Before
anything is imported or started, :func:`require_engine` pings the engine (``DOCKER_HOST``,
else the usual sockets) with a one-second timeout, so a machine without an engine gets a
clear message, or a skip, at once and never a hang.

Sharing and cleanup follow the local processes: the first process of the run that needs a
container starts it and records its id; the run's owner removes it at the end; a reaper
(``python -m seamtest._containers OWNER_PID CONTAINER_ID``, in its own session) removes it
if the owner dies. testcontainers' own reaper (Ryuk) is kept out of seamtest's containers:
it ties a container to the process that started it, and under xdist that is one worker
among several still using it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # psycopg is imported on first use: loading the plugin stays cheap
    pass

from . import _watchdog
from ._services import Launch, NotReady, Service, ServiceRecord
from .errors import ConfigError, NoContainerEngine, ServiceError

BACKENDS = ("local", "container")
#: Services that exist only as containers: no local binary is looked for.
CONTAINER_ONLY = ("kafka", "elasticsearch")
INSTALL_HINT = (
    "the container backend needs testcontainers-python: pip install 'testcontainers>=4' "
    "(or pip install 'seamtest[containers]')"
)
#: Seconds to wait for the engine to answer a ping: long enough for a busy local daemon,
#: short enough that a machine without one is told at once.
PING_TIMEOUT = 1.0

#: Sockets tried when DOCKER_HOST is not set, in order (Docker, Docker Desktop, rootless
#: Docker, rootless and rootful Podman).
SOCKETS = (
    "/var/run/docker.sock",
    "~/.docker/run/docker.sock",
    "$XDG_RUNTIME_DIR/docker.sock",
    "$XDG_RUNTIME_DIR/podman/podman.sock",
    "/run/podman/podman.sock",
)


@dataclass(frozen=True)
class Backend:
    """Where one service comes from: ``local`` (a binary or URL) or ``container``."""

    kind: str
    image: str | None = None
    source: str = "default"


def parse_backends(lines: tuple[str, ...], origin: str) -> dict[str, Backend]:
    """``seamtest_services`` lines (``NAME = BACKEND [IMAGE]``) as backends by name."""
    backends: dict[str, Backend] = {}
    for line in lines:
        name, sep, rest = line.partition("=")
        words = rest.split()
        name = name.strip()
        if not sep or not name or not words or len(words) > 2:
            raise ConfigError(
                f"{origin}: {line!r} is not 'NAME = BACKEND [IMAGE]', such as "
                "'redis = container' or 'postgres = container postgres:17-alpine'"
            )
        kind = words[0]
        if kind not in BACKENDS:
            raise ConfigError(
                f"{origin}: {line!r}: backend {kind!r} is not one of " + ", ".join(BACKENDS)
            )
        if kind == "local" and name in CONTAINER_ONLY:
            raise ConfigError(
                f"{origin}: {line!r}: {name} is available from the container backend only"
            )
        if kind == "local" and len(words) > 1:
            raise ConfigError(f"{origin}: {line!r}: an image goes with 'container' only")
        backends[name] = Backend(kind, words[1] if len(words) > 1 else None, origin)
    return backends


def backend_for(name: str, backends: Mapping[str, Backend]) -> Backend:
    """The backend of ``name``: configured, else container for Kafka/Elasticsearch, else local."""
    if name in backends:
        return backends[name]
    return Backend("container" if name in CONTAINER_ONLY else "local")


# -- the engine -------------------------------------------------------------------------------
def engine_address(env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The engine's address and where it came from: DOCKER_HOST, else the first socket."""
    env = os.environ if env is None else env
    if env.get("DOCKER_HOST"):
        return env["DOCKER_HOST"], "DOCKER_HOST"
    runtime = env.get("XDG_RUNTIME_DIR", "")
    for pattern in SOCKETS:
        if "$XDG_RUNTIME_DIR" in pattern and not runtime:
            continue
        path = os.path.expanduser(pattern.replace("$XDG_RUNTIME_DIR", runtime))
        if os.path.exists(path):
            return f"unix://{path}", f"the socket {path}"
    return "unix:///var/run/docker.sock", "the default socket"


def ping_engine(address: str, timeout: float = PING_TIMEOUT) -> str | None:
    """None if the engine at ``address`` answers ``GET /_ping``, else why not.

    Every step has ``timeout``; TLS endpoints are only connected to, and ``ssh://``
    addresses are not probed (the SDK's own timeouts apply).
    """
    parts = urlsplit(address)
    try:
        if parts.scheme in ("unix", "npipe", ""):
            path = parts.path or address
            if not os.path.exists(path):
                return f"{path} does not exist"
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(path)
            except OSError:
                sock.close()
                raise
        elif parts.scheme in ("tcp", "http", "https"):
            sock = socket.create_connection(
                (parts.hostname or "localhost", parts.port or 2375), timeout=timeout
            )
            if parts.scheme == "https" or parts.port == 2376 or os.environ.get("DOCKER_TLS_VERIFY"):
                sock.close()
                return None
        else:
            return None
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(1024)
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"
    status = reply.split(b"\r\n", 1)[0]
    if b" 200 " not in status + b" ":
        return f"it answered {status.decode(errors='replace')!r}"
    return None


_engine_checked: dict[str, str | None] = {}


def require_engine(why: str, timeout: float = PING_TIMEOUT) -> str:
    """The engine's address, or :class:`NoContainerEngine` saying what to do."""
    address, source = engine_address()
    if address not in _engine_checked:
        _engine_checked[address] = ping_engine(address, timeout)
    problem = _engine_checked[address]
    if problem is not None:
        raise NoContainerEngine(
            f"{why} needs a container engine, and none answers at {address} (from {source}): "
            f"{problem}. Start Docker or Podman, point DOCKER_HOST at one, or choose the "
            "local backend (seamtest_services = NAME = local) where the service has one."
        )
    if source.startswith("the socket") and address != "unix:///var/run/docker.sock":
        os.environ.setdefault("DOCKER_HOST", address)  # the SDK looks at the default only
    return address


def testcontainers(module: str) -> Any:
    """Import a testcontainers module lazily, with an install hint when it is missing."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ServiceError(f"{INSTALL_HINT} ({exc})") from None


@contextlib.contextmanager
def _without_ryuk() -> Iterator[None]:
    """Keep testcontainers' per-process reaper off while seamtest starts a container."""
    try:
        config = importlib.import_module("testcontainers.core.config").testcontainers_config
    except (ImportError, AttributeError):
        yield
        return
    before = getattr(config, "ryuk_disabled", False)
    config.ryuk_disabled = True
    try:
        yield
    finally:
        config.ryuk_disabled = before


# -- what runs in containers --------------------------------------------------------------------
class PostgresContainer(Service):
    """PostgreSQL in a container, tuned like the embedded server (data is disposable)."""

    name = "postgres"
    image = "postgres:17-alpine"
    container_port = 5432
    start_timeout = 120.0

    def environment(self, launch: Launch) -> dict[str, str]:
        return {
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": launch.password,
            "POSTGRES_DB": "postgres",
        }

    def container_command(self, launch: Launch) -> list[str] | None:
        settings = (
            "fsync=off",
            "synchronous_commit=off",
            "full_page_writes=off",
            "max_connections=200",
            "jit=off",
        )
        return ["postgres"] + [arg for s in settings for arg in ("-c", s)]

    def url(self, launch: Launch) -> str:
        return f"postgresql://postgres:{launch.password}@{launch.host}:{launch.port}/postgres"

    def probe(self, launch: Launch) -> None:
        import psycopg

        try:
            psycopg.connect(self.url(launch), connect_timeout=2).close()
        except psycopg.OperationalError as exc:
            raise NotReady(str(exc).strip()) from exc

    def values(self, launch: Launch) -> dict[str, str]:
        return {
            "url": self.url(launch),
            "host": launch.host,
            "port": str(launch.port),
            "password": launch.password,
        }


class ModuleContainer(Service):
    """A service whose testcontainers module knows how to start and wait for it."""

    module = ""  # "package.module:Class"

    def values_from(self, container: Any) -> dict[str, str]:
        raise NotImplementedError


class KafkaContainer(ModuleContainer):
    """Kafka through ``testcontainers.kafka`` (advertised listeners need its set-up)."""

    name = "kafka"
    image = "confluentinc/cp-kafka:7.6.0"
    module = "testcontainers.kafka:KafkaContainer"
    start_timeout = 180.0

    def values_from(self, container: Any) -> dict[str, str]:
        servers = str(container.get_bootstrap_server())
        host, _, port = servers.rpartition(":")
        return {"url": servers, "bootstrap_servers": servers, "host": host, "port": port}


class ElasticsearchContainer(ModuleContainer):
    """Elasticsearch through ``testcontainers.elasticsearch`` (single node, no security)."""

    name = "elasticsearch"
    image = "docker.elastic.co/elasticsearch/elasticsearch:8.15.0"
    module = "testcontainers.elasticsearch:ElasticSearchContainer"
    start_timeout = 180.0

    def values_from(self, container: Any) -> dict[str, str]:
        url = str(container.get_url())
        parts = urlsplit(url)
        return {"url": url, "host": parts.hostname or "", "port": str(parts.port or "")}


KNOWN: dict[str, type[Service]] = {
    "postgres": PostgresContainer,
    "kafka": KafkaContainer,
    "elasticsearch": ElasticsearchContainer,
}


def start_container(service: Service, image: str | None, *, owner_pid: int) -> ServiceRecord:
    """Start ``service`` from ``image`` (default: the service's), ready and reaped."""
    image = image or service.image
    if not image or (service.container_port is None and not isinstance(service, ModuleContainer)):
        raise ConfigError(
            f"service {service.name!r} has no container image and port; set its 'image' and "
            "'container_port', or name an image: seamtest_services = NAME = container IMAGE"
        )
    require_engine(f"service {service.name!r} (container backend)")
    started = time.perf_counter()
    runtime_dir = Path(tempfile.mkdtemp(prefix=f"seamtest-{service.name}-"))
    password = secrets.token_urlsafe(24)
    container: Any = None
    try:
        with _without_ryuk():
            if isinstance(service, ModuleContainer):
                module, _, cls = service.module.partition(":")
                container = getattr(testcontainers(module), cls)(image)
                container.start()  # the module waits until the service is ready
                values = service.values_from(container)
            else:
                assert service.container_port is not None
                container = testcontainers("testcontainers.core.container").DockerContainer(image)
                container.with_exposed_ports(service.container_port)
                for key, value in service.environment(
                    Launch("127.0.0.1", service.container_port, runtime_dir, password, False)
                ).items():
                    container.with_env(key, value)
                command = service.container_command(
                    Launch("127.0.0.1", service.container_port, runtime_dir, password, False)
                )
                if command:
                    container.with_command(command)
                container.start()
                launch = Launch(
                    container.get_container_host_ip(),
                    int(container.get_exposed_port(service.container_port)),
                    runtime_dir,
                    password,
                    local=False,
                )
                _wait(service, launch)
                values = service.values(launch)
        container_id = str(container.get_wrapped_container().id)
    except BaseException:
        if container is not None:
            with contextlib.suppress(Exception):
                container.stop()
        with contextlib.suppress(OSError):
            runtime_dir.rmdir()
        raise
    spawn_reaper(owner_pid, container_id)
    return ServiceRecord(
        name=service.name,
        values=values,
        backend="container",
        runtime_dir=str(runtime_dir),
        container_id=container_id,
        description=f"{service.name} in container {container_id[:12]} ({image})",
        seconds=time.perf_counter() - started,
    )


def _wait(service: Service, launch: Launch) -> None:
    deadline = time.monotonic() + service.start_timeout
    while True:
        try:
            service.probe(launch)
            return
        except NotReady as exc:
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{service.name} (container on {launch.host}:{launch.port}) did not "
                    f"answer within {service.start_timeout:.0f} s: {exc}"
                ) from None
        time.sleep(0.1)


def remove_container(container_id: str) -> None:
    """Remove a container seamtest started (gone already is fine)."""
    docker = importlib.import_module("docker")
    client = docker.from_env(timeout=30)
    try:
        client.containers.get(container_id).remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()


def spawn_reaper(owner: int, container_id: str) -> subprocess.Popen[bytes]:
    """Remove ``container_id`` when ``owner`` exits, however it exits."""
    return subprocess.Popen(
        [sys.executable, "-m", "seamtest._containers", str(owner), container_id],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
    )


def main(argv: list[str]) -> int:
    owner, container_id = int(argv[0]), argv[1]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _watchdog.wait_for_exit(owner)
    with contextlib.suppress(Exception):  # the owner removed it already, or no engine now
        remove_container(container_id)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
