"""Fixtures for the app-testing suite: inner projects with a FastAPI and a Flask app.

The embedded server is the suite's one ``pg_server`` (``tests/conftest.py``: started once
per pytest process, stopped at its end); inner sessions reach it with ``--seamtest-url``,
so none of them starts a server of its own.
"""

from __future__ import annotations

import pytest

from seamtest._server import Endpoint
from tests.helpers import ITEMS_MIGRATION, on_shared_server, write_files

#: A FastAPI app over the ``items`` table. Its lifespan counts the rows through its own
#: connection (so a started app has reached the test's database), hands the count to
#: requests as lifespan state, and logs startup and shutdown to a file per process that the
#: outer test reads.
FASTAPI_APP = """
    import contextlib, os, pathlib

    import psycopg
    from fastapi import Depends, FastAPI, HTTPException, Request

    def log(line):
        # One log per process: under xdist two workers' apps never interleave their lines.
        LOG = pathlib.Path(__file__).parent / f"lifespan.{os.getpid()}.log"
        with LOG.open("a") as f:
            f.write(line + "\\n")

    def get_connection(request: Request):
        with psycopg.connect(request.app.state.database_url) as conn:
            yield conn

    def unused_dependency():
        yield None

    def create_app(database_url):
        @contextlib.asynccontextmanager
        async def lifespan(app):
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                cur = await conn.execute("SELECT count(*) FROM items")
                (rows,) = await cur.fetchone()
            log(f"startup {rows}")
            yield {"rows_at_startup": rows}
            log("shutdown")

        app = FastAPI(lifespan=lifespan)
        app.state.database_url = database_url

        @app.get("/items")
        def items(conn=Depends(get_connection)):
            return [r[0] for r in conn.execute("SELECT label FROM items ORDER BY id")]

        @app.post("/items", status_code=201)
        def add(body: dict, conn=Depends(get_connection)):
            conn.execute("INSERT INTO items (label) VALUES (%s)", [body["label"]])
            return {"label": body["label"]}

        @app.post("/conflict")
        def conflict(conn=Depends(get_connection)):
            conn.execute("INSERT INTO items (label) VALUES ('doomed')")
            raise HTTPException(409, "no")

        @app.get("/state")
        def state(request: Request):
            return {"rows_at_startup": request.state.rows_at_startup}

        return app

    def create_app_from_environment():
        return create_app(os.environ["DATABASE_URL"])

    def create_broken_app(database_url):
        @contextlib.asynccontextmanager
        async def lifespan(app):
            raise RuntimeError("cannot reach the payment service")
            yield

        return FastAPI(lifespan=lifespan)

    def create_raw_app(database_url):
        async def app(scope, receive, send):
            assert scope["type"] == "http", "no lifespan support here"
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"raw"})

        return app

    app_object = FastAPI()
"""

FLASK_APP = """
    import psycopg
    from flask import Flask, request

    def create_app(database_url):
        app = Flask(__name__)

        @app.get("/items")
        def items():
            with psycopg.connect(database_url) as conn:
                return [r[0] for r in conn.execute("SELECT label FROM items ORDER BY id")]

        @app.post("/items")
        def add():
            label = request.get_json()["label"]
            with psycopg.connect(database_url) as conn:
                conn.execute("INSERT INTO items (label) VALUES (%s)", [label])
            return {"label": label}, 201

        return app
"""


@pytest.fixture
def project(inner: pytest.Pytester, pg_server: Endpoint, db_prefix: str) -> pytest.Pytester:
    """An inner project with both apps, on the shared server, under a dropped-after prefix."""
    on_shared_server(
        inner,
        pg_server,
        db_prefix,
        seamtest_migrations="migrations",
        seamtest_app="fastapp:create_app",
        pythonpath=".",
    )
    write_files(inner, "migrations", ITEMS_MIGRATION)
    write_files(inner, ".", {"fastapp.py": FASTAPI_APP, "flaskapp.py": FLASK_APP})
    return inner
