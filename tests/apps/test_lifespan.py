"""The ASGI lifespan runner, app detection and loading: no server, no inner session."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from seamtest._apps import (
    AppLifespanError,
    AppShutdownError,
    AppStartupError,
    Lifespan,
    Message,
    Phase,
    Receive,
    Scope,
    Send,
    app_kind,
    build_app,
    load_factory,
)
from seamtest._apps_plugin import check_wiring, uses_dependency
from seamtest.errors import ConfigError, TransactionIsolationError


def lifespan_app(
    on_startup: Callable[[], None] = lambda: None, on_shutdown: Callable[[], None] = lambda: None
) -> Callable[[Scope, Receive, Send], Any]:
    """A hand-written ASGI app speaking the lifespan protocol, as servers see it."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        try:
            on_startup()
        except Exception as exc:
            await send({"type": "lifespan.startup.failed", "message": str(exc)})
            return
        scope["state"]["ready"] = True
        await send({"type": "lifespan.startup.complete"})
        await receive()
        try:
            on_shutdown()
        except Exception as exc:
            await send({"type": "lifespan.shutdown.failed", "message": str(exc)})
            return
        await send({"type": "lifespan.shutdown.complete"})

    return app


def test_startup_and_shutdown_run_in_order() -> None:
    events: list[str] = []
    lifespan = Lifespan(lifespan_app(lambda: events.append("up"), lambda: events.append("down")))

    async def run() -> None:
        await lifespan.startup()
        assert lifespan.phase is Phase.RUNNING
        assert lifespan.state == {"ready": True}
        await lifespan.shutdown()

    asyncio.run(run())
    assert events == ["up", "down"]
    assert lifespan.phase is Phase.STOPPED


def test_a_failed_startup_carries_the_apps_message() -> None:
    def fail() -> None:
        raise RuntimeError("no cache server")

    lifespan = Lifespan(lifespan_app(fail))
    with pytest.raises(AppStartupError, match=r"lifespan startup failed.*: no cache server"):
        asyncio.run(lifespan.startup())
    assert lifespan.phase is Phase.FAILED


def test_an_exception_after_receive_is_a_failed_startup_chained_to_it() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await receive()
        raise KeyError("SECRET_KEY")

    with pytest.raises(AppStartupError, match="KeyError: 'SECRET_KEY'") as info:
        asyncio.run(Lifespan(app).startup())
    assert isinstance(info.value.__cause__, KeyError)


def test_an_app_that_refuses_the_lifespan_scope_is_unsupported_not_failed() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise ValueError(f"unknown scope {scope['type']}")

    lifespan = Lifespan(app)

    async def run() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    asyncio.run(run())
    assert lifespan.phase is Phase.UNSUPPORTED
    assert isinstance(lifespan.unsupported_reason, ValueError)


def test_a_failed_shutdown_is_an_error() -> None:
    def fail() -> None:
        raise RuntimeError("flush failed")

    lifespan = Lifespan(lifespan_app(on_shutdown=fail))

    async def run() -> None:
        await lifespan.startup()
        await lifespan.shutdown()

    with pytest.raises(AppShutdownError, match="shutdown failed after the test: flush failed"):
        asyncio.run(run())


def test_starting_twice_names_the_phase() -> None:
    lifespan = Lifespan(lifespan_app())

    async def run() -> None:
        await lifespan.startup()
        await lifespan.startup()

    with pytest.raises(AppLifespanError, match="cannot start the app's lifespan: it is running"):
        asyncio.run(run())


def test_requests_get_a_copy_of_the_lifespan_state() -> None:
    lifespan = Lifespan(lifespan_app())
    seen: list[Any] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["state"])
        scope["state"]["mutated"] = True

    async def run() -> None:
        await lifespan.startup()

        async def receive() -> Message:
            return {}

        async def send(message: Message) -> None:
            pass

        await lifespan.for_requests(app)({"type": "http"}, receive, send)
        await lifespan.shutdown()

    asyncio.run(run())
    assert seen == [{"ready": True, "mutated": True}]
    assert lifespan.state == {"ready": True}


class AsgiApp:
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pass


class WsgiApp:
    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        return []


async def asgi_function(scope: Scope, receive: Receive, send: Send) -> None:
    pass


@pytest.mark.parametrize(
    ("app", "kind"),
    [
        (AsgiApp(), "asgi"),
        (asgi_function, "asgi"),
        (WsgiApp(), "wsgi"),
        (AsgiApp, None),  # a class is a factory
        (lambda url: None, None),
        (object(), None),
    ],
)
def test_app_kind(app: object, kind: str | None) -> None:
    assert app_kind(app) == kind


def test_a_factory_with_two_required_arguments_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "two_args.py").write_text("def create(url, settings):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match="only required argument, or no argument"):
        load_factory("two_args:create", "seamtest_app (from ini)")


def test_database_url_is_set_for_the_apps_life_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "env_app.py").write_text(
        "import os\n"
        "class App:\n"
        "    async def __call__(self, scope, receive, send):\n"
        "        pass\n"
        "def create():\n"
        "    app = App()\n"
        "    app.url = os.environ['DATABASE_URL']\n"
        "    return app\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/dev")
    with build_app("env_app:create", "seamtest_app (from ini)", "postgresql://test/db") as app:
        assert app.url == "postgresql://test/db"
        assert os.environ["DATABASE_URL"] == "postgresql://test/db"
    assert os.environ["DATABASE_URL"] == "postgresql://elsewhere/dev"


def test_transaction_isolation_without_a_connection_dependency_says_what_to_set() -> None:
    check_wiring("database", None)
    check_wiring("transaction", "shop.api:get_connection")
    with pytest.raises(TransactionIsolationError, match="Set seamtest_app_connection = "):
        check_wiring("transaction", None)


def test_uses_dependency_looks_through_nested_dependencies() -> None:
    from fastapi import Depends, FastAPI

    def get_connection() -> None:
        return None

    def get_repository(conn: None = Depends(get_connection)) -> None:
        return None

    def unused() -> None:
        return None

    app = FastAPI()

    @app.get("/")
    def index(repository: None = Depends(get_repository)) -> None:
        return None

    assert uses_dependency(app, get_connection)
    assert not uses_dependency(app, unused)


def test_uses_dependency_looks_into_included_routers() -> None:
    from fastapi import APIRouter, Depends, FastAPI

    def get_connection() -> None:
        return None

    def get_tenant() -> None:
        return None

    inner = APIRouter()

    @inner.get("/users")
    def users(conn: None = Depends(get_connection)) -> None:
        return None

    outer = APIRouter()
    outer.include_router(inner, prefix="/v1")
    app = FastAPI()
    app.include_router(outer, dependencies=[Depends(get_tenant)])
    assert uses_dependency(app, get_connection)
    assert uses_dependency(app, get_tenant)
