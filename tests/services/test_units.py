"""Selection logic, errors and the no-engine path: no server needed, each check is fast."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from seamtest import _watchdog
from seamtest._config import Settings, Value
from seamtest._containers import (
    Backend,
    PostgresContainer,
    backend_for,
    engine_address,
    parse_backends,
    ping_engine,
    require_engine,
    start_container,
)
from seamtest._redis import find_redis, parse_redis_url
from seamtest._server import free_port
from seamtest._services import Service, Services
from seamtest._services_plugin import env_templates
from seamtest.errors import (
    ConfigError,
    NoContainerEngine,
    RemoteServerRefused,
    ServiceError,
    ServiceNotFoundError,
)


def test_find_redis_explicit_path_that_is_not_a_server(tmp_path: Path) -> None:
    with pytest.raises(
        ServiceNotFoundError, match=r"SEAMTEST_REDIS_BIN names .* not an executable"
    ):
        find_redis(str(tmp_path / "nope"), "SEAMTEST_REDIS_BIN")


def test_find_redis_accepts_a_directory() -> None:
    found = find_redis("/usr/bin", "seamtest_redis_bin")
    assert found.path == Path("/usr/bin/redis-server")
    assert found.version.startswith(("Redis", "Valkey"))


def test_redis_url_refuses_remote_hosts() -> None:
    with pytest.raises(RemoteServerRefused, match="seamtest_allow_remote"):
        parse_redis_url("redis://cache.example.com:6379", allow_remote=False, origin="x")
    assert parse_redis_url("redis://db.example:1", allow_remote=True, origin="x").port == 1
    address = parse_redis_url("redis://:s%40cret@127.0.0.1", allow_remote=False, origin="x")
    assert (address.password, address.port) == ("s@cret", 6379)
    with pytest.raises(ConfigError, match="not a Redis URL"):
        parse_redis_url("http://127.0.0.1", allow_remote=False, origin="x")


def test_parse_backends() -> None:
    backends = parse_backends(
        ("redis = container", "postgres = container postgres:16", "kafka=container"), "ini"
    )
    assert backends["postgres"] == Backend("container", "postgres:16", "ini")
    assert backend_for("redis", backends).kind == "container"
    assert backend_for("elasticsearch", {}).kind == "container"  # container-only service
    assert backend_for("redis", {}).kind == "local"
    for line, message in [
        ("redis = docker", "backend 'docker' is not one of local, container"),
        ("kafka = local", "kafka is available from the container backend only"),
        ("redis", "is not 'NAME = BACKEND"),
        ("redis = local redis:7", "an image goes with 'container' only"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_backends((line,), "ini")


def test_env_templates_name_the_placeholders() -> None:
    settings = Settings({"seamtest_services_env": Value(("REDIS_URL={redis.url}",), "ini")})
    assert env_templates(settings) == {"REDIS_URL": ("{redis.url}", {"redis"})}
    settings.values["seamtest_services_env"] = Value(("X={url}",), "ini")
    with pytest.raises(ConfigError, match=r"uses \{url\}.*such as \{redis.url\}"):
        env_templates(settings)


def test_no_engine_is_reported_at_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/docker.sock")
    assert engine_address() == (f"unix://{tmp_path}/docker.sock", "DOCKER_HOST")
    started = time.monotonic()
    with pytest.raises(NoContainerEngine, match=r"none answers at unix://.*does not exist"):
        require_engine("service 'redis' (container backend)")
    # a TCP address nobody listens on: refused, still at once
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{free_port()}")
    assert "ConnectionRefusedError" in (ping_engine(os.environ["DOCKER_HOST"]) or "")
    # start_container checks the engine before importing testcontainers or starting anything
    with pytest.raises(NoContainerEngine, match="Start Docker or Podman"):
        start_container(PostgresContainer(), None, owner_pid=os.getpid())
    assert time.monotonic() - started < 5


def test_a_silent_engine_does_not_hang(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_UNIX) as server:  # accepts, never answers
        server.bind(str(tmp_path / "s.sock"))
        server.listen()
        started = time.monotonic()
        problem = ping_engine(f"unix://{tmp_path}/s.sock", timeout=0.3)
    assert problem is not None
    assert "timed out" in problem
    assert time.monotonic() - started < 2


def test_a_service_without_image_cannot_be_a_container() -> None:
    class Local(Service):
        name = "local_only"

    with pytest.raises(ConfigError, match="has no container image and port"):
        start_container(Local(), None, owner_pid=os.getpid())


def test_service_names_are_checked(tmp_path: Path) -> None:
    from seamtest._run import Run

    services = Services(Run("r", tmp_path, os.getpid()))
    with pytest.raises(ServiceError, match="lower-case letters"):
        services.get("My Service", lambda: None)


def test_watchdog_stops_a_service_group_when_the_owner_dies(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    service = subprocess.Popen(["sleep", "60"], start_new_session=True, stdin=subprocess.DEVNULL)
    pid_file = tmp_path / "seamtest.pid"
    pid_file.write_text(f"{service.pid}\n")
    _watchdog.spawn(owner.pid, service.pid, tmp_path, pid_file=pid_file, stop_signal=15)
    owner.kill()
    owner.wait()
    assert service.wait(timeout=10) == -15
    deadline = time.monotonic() + 10  # the watchdog removes the directory right after
    while tmp_path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not tmp_path.exists()
