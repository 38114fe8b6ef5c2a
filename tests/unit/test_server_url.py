"""External server URLs: parsed once, and refused beyond loopback unless allowed."""

from __future__ import annotations

import pytest

from seamtest import ConfigError, RemoteServerRefused, ServerError
from seamtest._server import Endpoint, is_loopback, parse_url

ORIGIN = "seamtest_url (from --seamtest-url)"


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "127.10.20.30", "::1", "localhost", "/var/run/postgresql", ""],
)
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.5",
        "192.168.1.1",
        "0.0.0.0",
        "::",
        "db.example.com",
        "localhost.example.com",
        "2001:db8::1",
    ],
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://app:secret@db.example.com:5432/app",
        "postgres://app@10.1.2.3/app",
        "postgresql://app@[2001:db8::1]:5432/app",
        "postgresql://app@localhost.example.com/app",
    ],
)
def test_remote_hosts_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(RemoteServerRefused) as excinfo:
        parse_url(url, allow_remote=False, origin=ORIGIN)
    message = str(excinfo.value)
    assert message.startswith(ORIGIN)
    assert "seamtest_allow_remote" in message
    assert isinstance(excinfo.value, ServerError)
    endpoint = parse_url(url, allow_remote=True, origin=ORIGIN)
    assert endpoint.kind == "external"
    assert not is_loopback(endpoint.host)


@pytest.mark.parametrize(
    "url",
    [
        # libpq lets query parameters override the authority part of a URL: these reach
        # db.example.com / 10.0.0.5 although the URL's host looks local.
        "postgresql://app@127.0.0.1/app?host=db.example.com",
        "postgresql://app@localhost/app?hostaddr=10.0.0.5",
    ],
)
def test_query_parameters_cannot_smuggle_in_a_remote_host(url: str) -> None:
    with pytest.raises(RemoteServerRefused):
        parse_url(url, allow_remote=False, origin=ORIGIN)


def test_a_full_url_is_parsed_and_decoded() -> None:
    endpoint = parse_url(
        "postgresql://app%40corp:p%40ss%3Aword@127.0.0.1:6543/my%20db?sslmode=disable",
        allow_remote=False,
        origin=ORIGIN,
    )
    assert (endpoint.host, endpoint.port, endpoint.user, endpoint.password, endpoint.dbname) == (
        "127.0.0.1",
        6543,
        "app@corp",
        "p@ss:word",
        "my db",
    )
    assert endpoint.params == {"sslmode": "disable"}
    assert endpoint.socket_dir is None
    # And back: the URL seamtest hands to applications carries the same credentials.
    again = parse_url(endpoint.url(), allow_remote=False, origin=ORIGIN)
    assert (again.user, again.password, again.dbname, again.params) == (
        "app@corp",
        "p@ss:word",
        "my db",
        {"sslmode": "disable"},
    )


def test_defaults_for_a_bare_url() -> None:
    endpoint = parse_url("postgresql://localhost", allow_remote=False, origin=ORIGIN)
    assert (endpoint.port, endpoint.user, endpoint.password, endpoint.dbname) == (
        5432,
        "postgres",
        None,
        "postgres",
    )


def test_a_unix_socket_directory_is_loopback() -> None:
    endpoint = parse_url(
        "postgresql://app@/app?host=/var/run/postgresql", allow_remote=False, origin=ORIGIN
    )
    assert endpoint.host == "/var/run/postgresql"
    assert endpoint.socket_dir == "/var/run/postgresql"
    assert "host=/var/run/postgresql" in endpoint.conninfo()


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "localhost:5432", "127.0.0.1"])
def test_other_schemes_are_refused_with_the_expected_shape(url: str) -> None:
    with pytest.raises(ConfigError, match=r"is not a PostgreSQL URL; expected postgresql://"):
        parse_url(url, allow_remote=False, origin=ORIGIN)


def test_a_bad_port_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="bad port"):
        parse_url("postgresql://app@localhost:99999/app", allow_remote=False, origin=ORIGIN)


def test_redacted_url_hides_the_password() -> None:
    endpoint = Endpoint("external", "127.0.0.1", 5432, "app", "hunter2", "app")
    assert "hunter2" in endpoint.url()
    assert "hunter2" not in endpoint.redacted_url()
    assert endpoint.redacted_url() == "postgresql://app:***@127.0.0.1:5432/app"


def test_endpoints_travel_as_json() -> None:
    endpoint = Endpoint(
        "embedded",
        "127.0.0.1",
        5433,
        "seamtest",
        "pw",
        "postgres",
        socket_dir="/tmp/s",
        params={"sslmode": "disable"},
        version="18.6",
    )
    assert Endpoint.from_json(endpoint.to_json()) == endpoint
