"""The shop's HTTP API: ``create_app(database_url)`` builds a FastAPI application.

Status codes, and why:

* ``201`` ``POST /users`` created the user; the body is the user as stored.
* ``400`` the request body is not valid JSON at all (``{"name": "Ada",``). FastAPI
  answers 422 by default; a body that cannot even be parsed is a malformed request.
* ``422`` the body is valid JSON but does not fit the schema (a missing ``email``, an
  empty ``name``): FastAPI's default, kept on purpose. The request was understood and
  its content is unacceptable (RFC 9110, section 15.5.21), and the split tells a client
  "fix your encoder" (400) apart from "fix your data" (422). An empty body counts as a
  missing body, hence 422. Both bodies have FastAPI's ``{"detail": [errors]}`` shape.
* ``404`` no user with that id (also for ``GET /users/{id}/orders``).
* ``409`` the email is taken: the database's unique constraint decides, not a
  SELECT-then-INSERT, so two concurrent requests cannot both succeed. Also for
  ``POST /orders/{id}/payments`` while another payment of that order is in progress
  (its advisory lock is held): retry later.
* ``422`` also for a payment larger than what the order still owes.

``GET /products?q=desk+lamp`` is full-text search over product names (PostgreSQL's
tsvector, English stemming); an empty or missing ``q`` is a 422.

Money (``total``) is serialised as a JSON string such as ``"29.99"``: exact, as stored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, Field

from shop.errors import DuplicateEmail, Overpayment, PaymentInProgress, UnknownOrder
from shop.models import Order, Payment, Product, User
from shop.payments import capture_payment
from shop.repository import OrderRepository, ProductRepository, UserRepository

#: Seconds to wait for a connection, at startup and per request: fail, don't hang.
CONNECT_TIMEOUT = 5


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached, or has no schema, when the application starts."""


class NewUser(BaseModel):
    """Body of ``POST /users``."""

    name: str = Field(min_length=1, max_length=200)
    # Deliberately loose: real validation is sending a confirmation mail.
    email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")


class NewPayment(BaseModel):
    """Body of ``POST /orders/{order_id}/payments``: an amount such as ``"19.99"``."""

    amount: Decimal = Field(gt=0, max_digits=10, decimal_places=2)


def get_connection(request: Request) -> Iterator[psycopg.Connection[Any]]:
    """One connection per request; commits if the endpoint returns, rolls back if it raises."""
    url: str = request.app.state.database_url
    # psycopg's Connection context: COMMIT on a clean exit, ROLLBACK on an exception, close.
    with psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT) as conn:
        yield conn


# scope="function": the commit happens before the response is sent, so a client that got
# 201 can rely on the row being there (the default, "request", commits after sending).
Connection = Annotated[psycopg.Connection[Any], Depends(get_connection, scope="function")]

router = APIRouter()


@router.post("/users", status_code=status.HTTP_201_CREATED)
def create_user(new: NewUser, conn: Connection) -> User:
    """Create a user; 409 if the email is taken."""
    try:
        return UserRepository(conn).create(new.name, new.email)
    except DuplicateEmail as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(exc)) from exc


@router.get("/users/{user_id}")
def get_user(user_id: int, conn: Connection) -> User:
    """The user with this id; 404 if there is none."""
    return _existing_user(conn, user_id)


@router.get("/users/{user_id}/orders")
def list_orders(user_id: int, conn: Connection) -> list[Order]:
    """The user's orders, oldest first; 404 if the user does not exist."""
    _existing_user(conn, user_id)
    return OrderRepository(conn).orders_for_user(user_id)


@router.get("/products")
def search_products(
    conn: Connection, q: Annotated[str, Query(min_length=1, max_length=200)]
) -> list[Product]:
    """Products whose name matches ``q`` (web-search syntax), best match first."""
    return ProductRepository(conn).search(q)


@router.post("/orders/{order_id}/payments", status_code=status.HTTP_201_CREATED)
def pay_order(order_id: int, new: NewPayment, conn: Connection) -> Payment:
    """Capture a payment; 404 unknown order, 409 payment in progress, 422 overpayment."""
    try:
        return capture_payment(conn, order_id, new.amount)
    except UnknownOrder as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    except PaymentInProgress as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail=str(exc), headers={"Retry-After": "1"}
        ) from exc
    except Overpayment as exc:
        # 422 as a number: Starlette renamed its constant (..._ENTITY to ..._CONTENT) in 0.48.
        raise HTTPException(422, detail=str(exc)) from exc


def create_app(database_url: str) -> FastAPI:
    """Build the application for the PostgreSQL database at ``database_url``.

    Startup fails with :class:`DatabaseUnavailable` if the database is unreachable or
    not migrated, rather than failing on the first request.
    """
    app = FastAPI(title="shop", lifespan=_lifespan)
    app.state.database_url = database_url
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _invalid_json_is_400)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    await check_database(app.state.database_url)
    yield


async def check_database(database_url: str) -> None:
    """Raise :class:`DatabaseUnavailable` unless the database answers and has our schema."""
    where = _describe(database_url)
    try:
        async with await psycopg.AsyncConnection.connect(
            database_url, connect_timeout=CONNECT_TIMEOUT, autocommit=True
        ) as conn:
            cur = await conn.execute("SELECT to_regclass('users') IS NOT NULL")
            row = await cur.fetchone()
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(
            f"shop cannot reach PostgreSQL at {where} (is the server running, and is the"
            f" URL given to create_app() right?): {exc}"
        ) from exc
    if row is None or not row[0]:
        raise DatabaseUnavailable(
            f"the database at {where} has no 'users' table: apply migrations/ first."
        )


async def _invalid_json_is_400(request: Request, exc: Exception) -> Response:
    """400 for a body that is not JSON; FastAPI's 422 for everything else (module docs)."""
    assert isinstance(exc, RequestValidationError)  # registered for this type only
    if any(error["type"] == "json_invalid" for error in exc.errors()):
        return JSONResponse(
            status_code=status.HTTP_400_BAD_REQUEST,
            content={"detail": jsonable_encoder(exc.errors())},
        )
    return await request_validation_exception_handler(request, exc)


def _existing_user(conn: psycopg.Connection[Any], user_id: int) -> User:
    user = UserRepository(conn).find_by_id(user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no user with id {user_id}")
    return user


def _describe(database_url: str) -> str:
    """The URL's host, port and database, without the password, for error messages."""
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.ProgrammingError:
        return "<unparsable database URL>"
    host = params.get("host", "localhost")
    port = params.get("port", "5432")
    return f"{host}:{port}/{params.get('dbname', '?')} as {params.get('user', '?')}"
