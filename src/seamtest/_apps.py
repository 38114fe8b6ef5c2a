"""The application under test: loading it, running its lifespan, and httpx clients over it.

Nothing here opens a socket: every request is a call into the application object, the
way starlette's TestClient and axum's ``oneshot`` do it.

Loading. ``seamtest_app = "package.module:factory"`` is imported with the same rules as a
callable migration (``importlib``; make the package importable, for instance with
pytest's ``pythonpath`` ini option). A factory with one required positional parameter is
called with the test database's URL. A factory with none is called with no arguments
and ``DATABASE_URL`` set to that URL from just before the call until the app is torn
down (after its lifespan shutdown), then restored: apps that read settings lazily, at
startup or per request, see the test's database too. A name that is already an
application object is refused: it was configured at import time, with some other
database.

Kinds. ASGI: an ``async def __call__(scope, receive, send)`` (FastAPI, Starlette,
Litestar, Django's ASGIHandler). WSGI: a plain ``callable(environ, start_response)``
(Flask, Django's WSGIHandler).

Clients, and why each is built the way it is:

* sync over WSGI: ``httpx.WSGITransport``, in the test's thread.
* sync over ASGI: anyio's blocking portal, an asyncio event loop in a background thread,
  runs the lifespan and every request; the test's thread blocks on each call. anyio is
  a dependency of httpx, so this costs no extra package, and it works for any ASGI app,
  where starlette's TestClient would make starlette a requirement of Litestar and Django
  users and would hand back a TestClient rather than a plain ``httpx.Client``.
* async over ASGI: ``httpx.ASGITransport`` in the test's own event loop, so objects the
  app creates at startup (pools, clients) belong to the loop its requests run in. The
  lifespan starts on the first request or on ``async with aclient``, because only then is
  the test's loop running; it shuts down when the client is closed, or right after the
  test body returns (see ``_apps_plugin``).
* async over WSGI: each request runs in a worker thread (``anyio.to_thread``), because a
  WSGI app blocks; the test's loop stays free, and concurrent requests behave as under a
  threaded WSGI server.

httpx's ASGITransport does not run the lifespan; :class:`Lifespan` does, and passes the
lifespan's ``state`` into every request scope as ASGI servers do (Starlette refuses a
lifespan that yields state to a server that does not).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import os
import warnings
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from typing import Any, Literal, cast

import anyio
import anyio.to_thread
import httpx
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._migrations import CallableMigration
from .errors import AppLifespanError, AppShutdownError, AppStartupError, ConfigError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Kind = Literal["asgi", "wsgi"]

BASE_URL = "http://testserver"
#: The variable a zero-argument factory reads; the twelve-factor name most settings
#: libraries (pydantic-settings, django-environ, Flask configs) are pointed at.
DATABASE_URL = "DATABASE_URL"
#: Seconds an app gets to return after it reported its lifespan finished (or failed)
#: before seamtest cancels it: reporting is the contract, returning is courtesy.
GRACE_SECONDS = 5.0


class AppLifespanWarning(UserWarning):
    """Something about the application's lifespan that did not fail the test."""


# -- loading --------------------------------------------------------------------------


def app_kind(app: object) -> Kind | None:
    """``"asgi"``, ``"wsgi"``, or None when ``app`` is neither (a class or a factory)."""
    if inspect.isclass(app) or not callable(app):
        return None
    call = getattr(app, "__call__", None)  # noqa: B004 - the bound method, for instances
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return "asgi"
    positional = _positional(app)
    if positional == 3:  # a sync callable returning an awaitable: still ASGI 3
        return "asgi"
    if positional == 2:
        return "wsgi"
    return None


def _positional(func: Callable[..., Any], *, required_only: bool = False) -> int | None:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(
        1
        for p in parameters
        if p.kind in kinds and not (required_only and p.default is not inspect.Parameter.empty)
    )


def load_factory(spec: str, origin: str) -> Callable[..., Any]:
    """Import ``package.module:factory`` and check it is a factory, not an app."""
    factory = cast(Callable[..., Any], CallableMigration(spec, origin).load())
    required = _positional(factory, required_only=True)
    if required in (0, 1):
        return factory
    kind = app_kind(factory)
    if kind is not None and not inspect.isfunction(factory):
        article = "an ASGI" if kind == "asgi" else "a WSGI"
        raise ConfigError(
            f"{origin} = {spec!r} is {article} application object, not a factory: "
            "it was configured when its module was imported, not for the test's database. "
            f"Name a function that builds it, such as 'def create_app(database_url): ...', "
            "or define your own 'seamtest_app' fixture that returns the app."
        )
    raise ConfigError(
        f"{origin} = {spec!r}: the factory must take the database URL as its only required "
        f"argument, or no argument (then it reads {DATABASE_URL}); it requires {required}."
    )


@contextmanager
def build_app(spec: str, origin: str, database_url: str) -> Iterator[Any]:
    """Call the factory for ``database_url``; a zero-argument factory reads DATABASE_URL."""
    factory = load_factory(spec, origin)
    with ExitStack() as stack:
        if _positional(factory, required_only=True) == 1:
            app = factory(database_url)
        else:
            stack.enter_context(_environment(DATABASE_URL, database_url))
            app = factory()
        if inspect.isawaitable(app):
            if inspect.iscoroutine(app):
                app.close()
            raise ConfigError(
                f"{origin} = {spec!r} is async; seamtest calls the factory synchronously. "
                "Build the app in a plain function and do async set-up in its lifespan."
            )
        if app_kind(app) is None:
            raise ConfigError(
                f"{origin} = {spec!r} returned {type(app).__qualname__}, which is neither an "
                "ASGI app (async def __call__(scope, receive, send)) nor a WSGI app "
                "(callable(environ, start_response))."
            )
        yield app


@contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def require_kind(app: object) -> Kind:
    kind = app_kind(app)
    if kind is None:
        raise ConfigError(
            f"the seamtest_app fixture returned {type(app).__qualname__}, which is neither an "
            "ASGI app (async def __call__(scope, receive, send)) nor a WSGI app "
            "(callable(environ, start_response))."
        )
    return kind


# -- the ASGI lifespan ----------------------------------------------------------------


class Phase(str, enum.Enum):
    """Where a :class:`Lifespan` is; each operation names the phases it accepts."""

    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    UNSUPPORTED = "unsupported"  # the app raised before asking for a lifespan event
    FAILED = "failed"
    STOPPING = "stopping"
    STOPPED = "stopped"


class Lifespan:
    """Runs an ASGI app's lifespan in the current asyncio loop, as a server would.

    The app runs as a task fed from a queue. It reports through ``send``; seamtest learns
    that it has ended through the task. An app that raises before it ever calls
    ``receive`` does not support lifespans (ASGI: "the server must continue"); an app
    that raises later failed.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.phase = Phase.IDLE
        self.loop: asyncio.AbstractEventLoop | None = None
        self.unsupported_reason: BaseException | None = None
        self._received = False
        self._error: BaseException | None = None
        self._failed_message = ""
        self._task: asyncio.Task[None] | None = None
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._started: asyncio.Future[str] | None = None
        self._stopped: asyncio.Future[str] | None = None

    def _expect(self, action: str, *phases: Phase) -> None:
        if self.phase not in phases:
            raise AppLifespanError(
                f"cannot {action} the app's lifespan: it is {self.phase.value}, not "
                + " or ".join(p.value for p in phases)
            )

    async def startup(self) -> None:
        """Send ``lifespan.startup`` and wait for the app's answer."""
        self._expect("start", Phase.IDLE)
        self.phase = Phase.STARTING
        try:
            self.loop = asyncio.get_running_loop()
        except RuntimeError:
            self.phase = Phase.FAILED
            raise AppLifespanError(
                "seamtest runs ASGI lifespans under asyncio (pytest-asyncio, or anyio's "
                "asyncio backend); this event loop is not asyncio."
            ) from None
        self._started = self.loop.create_future()
        self._stopped = self.loop.create_future()
        self._inbox.put_nowait({"type": "lifespan.startup"})
        self._task = self.loop.create_task(self._main(), name="seamtest lifespan")
        outcome = await self._started
        if outcome == "complete":
            self.phase = Phase.RUNNING
            return
        if outcome == "ended" and not self._received and self._error is not None:
            self.phase = Phase.UNSUPPORTED
            self.unsupported_reason = self._error
            return
        if outcome == "ended" and self._error is None and not self._failed_message:
            self.phase = Phase.UNSUPPORTED  # returned without a word: no lifespan support
            return
        await self._settle()
        self.phase = Phase.FAILED
        # The exception, when there is one, is chained and shown with its traceback; the
        # app's "failed" message (Starlette's is that same traceback) only stands in for it.
        detail = _describe(self._error) if self._error else self._failed_message
        raise AppStartupError(
            "the application's lifespan startup failed, so seamtest could not run the test "
            f"against it (the app's own error, not seamtest's): {detail}"
        ) from self._error

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the app to finish it."""
        if self.phase in (Phase.IDLE, Phase.UNSUPPORTED, Phase.FAILED, Phase.STOPPED):
            self.phase = Phase.STOPPED if self.phase is Phase.IDLE else self.phase
            return
        self._expect("shut down", Phase.RUNNING)
        assert self._stopped is not None
        self.phase = Phase.STOPPING
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        outcome = await self._stopped
        await self._settle()
        self.phase = Phase.STOPPED
        if outcome == "failed" or self._error is not None:
            detail = _describe(self._error) if self._error else self._failed_message
            raise AppShutdownError(
                f"the application's lifespan shutdown failed after the test: {detail}"
            ) from self._error
        if outcome == "ended":
            warnings.warn(
                AppLifespanWarning(
                    "the application's lifespan ended before seamtest asked it to shut down"
                ),
                stacklevel=2,
            )

    async def _settle(self) -> None:
        """Give the app's task a moment to return after it reported; then cancel it."""
        task = self._task
        if task is None or task.done():
            return
        await asyncio.wait({task}, timeout=GRACE_SECONDS)
        if not task.done():
            task.cancel()
            await asyncio.wait({task})

    async def _main(self) -> None:
        scope: Scope = {
            "type": "lifespan",
            "asgi": {"version": "3.0", "spec_version": "2.0"},
            "state": self.state,
        }
        try:
            await self.app(scope, self._receive, self._send)
        except Exception as exc:
            self._error = exc
        finally:
            for future in (self._started, self._stopped):
                if future is not None and not future.done():
                    future.set_result("ended")

    async def _receive(self) -> Message:
        self._received = True
        return await self._inbox.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type")
        if kind in ("lifespan.startup.complete", "lifespan.startup.failed"):
            future, phase = self._started, Phase.STARTING
        elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            future, phase = self._stopped, Phase.STOPPING
        else:
            raise AppLifespanError(f"unexpected lifespan message {kind!r}")
        if self.phase is not phase or future is None or future.done():
            raise AppLifespanError(f"unexpected {kind!r}: the lifespan is {self.phase.value}")
        if kind.endswith(".failed"):
            self._failed_message = str(message.get("message", "")) or "(no message)"
        future.set_result(kind.rsplit(".", 1)[1])

    def for_requests(self, app: ASGIApp) -> ASGIApp:
        """``app`` with the lifespan's state copied into each request's scope."""

        async def with_state(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] in ("http", "websocket"):
                scope = {**scope, "state": dict(self.state)}
            await app(scope, receive, send)

        return with_state


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "the app ended its lifespan without reporting"
    return f"{type(error).__qualname__}: {error}"


# -- transports -----------------------------------------------------------------------


async def _buffered(response: httpx.Response) -> httpx.Response:
    """The response with its raw (undecoded) body read, so a sync client can consume it."""
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)  # what an async transport returns
    try:
        raw = b"".join([chunk async for chunk in stream])
    finally:
        await stream.aclose()
    return httpx.Response(
        response.status_code,
        headers=response.headers,
        stream=httpx.ByteStream(raw),
        extensions=response.extensions,
    )


class PortalASGITransport(httpx.BaseTransport):
    """Sync transport: each request runs in the portal's event loop thread."""

    def __init__(self, portal: BlockingPortal, inner: httpx.AsyncBaseTransport) -> None:
        self._portal = portal
        self._inner = inner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()  # a sync body cannot be iterated from the loop's thread
        return self._portal.call(self._handle, request)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        return await _buffered(await self._inner.handle_async_request(request))


class LifespanASGITransport(httpx.AsyncBaseTransport):
    """Async transport that starts the app's lifespan in the test's loop when first used."""

    def __init__(self, app: ASGIApp) -> None:
        self.lifespan = Lifespan(app)
        self._inner = httpx.ASGITransport(app=cast(Any, self.lifespan.for_requests(app)))
        self._lock = asyncio.Lock()
        self.error: AppLifespanError | None = None

    async def start(self) -> None:
        async with self._lock:
            if self.lifespan.phase is Phase.IDLE:
                await self.lifespan.startup()
            elif self.lifespan.phase is Phase.FAILED:
                raise AppStartupError("the application's lifespan startup failed earlier")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self.start()
        self.lifespan._expect("send a request to", Phase.RUNNING, Phase.UNSUPPORTED)
        return await self._inner.handle_async_request(request)

    async def __aenter__(self) -> LifespanASGITransport:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.lifespan.shutdown()

    def shutdown_after_test(self) -> None:
        """After the test body: shut down in the test's loop while it is open and idle.

        A shutdown error is kept for :meth:`finish_at_teardown`, so that it is reported
        as a teardown error and never replaces the test's own result.
        """
        loop = self.lifespan.loop
        if self.lifespan.phase is not Phase.RUNNING or loop is None:
            return
        if loop.is_closed() or loop.is_running():
            return
        try:
            loop.run_until_complete(self.lifespan.shutdown())
        except AppLifespanError as exc:
            self.error = exc

    def finish_at_teardown(self) -> None:
        """Raise a kept shutdown error; warn about a lifespan nobody could shut down."""
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.lifespan.phase is Phase.RUNNING:
            warnings.warn(
                AppLifespanWarning(
                    "aclient: the app's lifespan shutdown did not run, because the test's "
                    "event loop was closed (or still running) when the test ended; close "
                    "the client in the test: 'async with aclient: ...'"
                ),
                stacklevel=2,
            )


class ThreadedWSGITransport(httpx.AsyncBaseTransport):
    """Async transport over a WSGI app: each request runs in a worker thread."""

    def __init__(self, app: Any) -> None:
        self._sync = httpx.WSGITransport(app=app)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return await anyio.to_thread.run_sync(self._handle, request)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        response = self._sync.handle_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # what a sync transport returns
        try:
            raw = b"".join(stream)
        finally:
            stream.close()
        return httpx.Response(
            response.status_code, headers=response.headers, stream=httpx.ByteStream(raw)
        )


# -- clients --------------------------------------------------------------------------


@contextmanager
def sync_client(app: Any) -> Iterator[httpx.Client]:
    """An httpx.Client over ``app``; an ASGI app's lifespan runs around the block."""
    with ExitStack() as stack:
        transport: httpx.BaseTransport
        if require_kind(app) == "wsgi":
            transport = httpx.WSGITransport(app=app)
        else:
            portal = stack.enter_context(start_blocking_portal("asyncio"))
            lifespan = Lifespan(app)
            portal.call(lifespan.startup)
            stack.callback(portal.call, lifespan.shutdown)
            inner = httpx.ASGITransport(app=cast(Any, lifespan.for_requests(app)))
            transport = PortalASGITransport(portal, inner)
        yield stack.enter_context(httpx.Client(transport=transport, base_url=BASE_URL))


def async_client(app: Any) -> tuple[httpx.AsyncClient, httpx.AsyncBaseTransport]:
    """An httpx.AsyncClient over ``app``, and its transport (see the module docstring)."""
    transport: httpx.AsyncBaseTransport
    if require_kind(app) == "wsgi":
        transport = ThreadedWSGITransport(app)
    else:
        transport = LifespanASGITransport(app)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL), transport
