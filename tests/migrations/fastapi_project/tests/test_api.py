"""The project's own tests: each gets a fresh clone of the migrated template."""

import pytest
from app.main import create_app
from fastapi.testclient import TestClient


@pytest.fixture
def client(db_url):
    app = create_app(db_url)
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


def test_create_and_read_a_user(client):
    created = client.post("/users", json={"name": "Alice", "email": "alice@example.com"})
    assert created.status_code == 201
    assert client.get(f"/users/{created.json()['id']}").json()["name"] == "Alice"


def test_each_test_starts_empty(db):
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    db.execute("INSERT INTO users (name, email) VALUES ('Bob', 'bob@example.com')")
    db.commit()


def test_and_is_a_clone_of_the_template(db):
    assert db.execute("SELECT count(*) FROM users").fetchone()[0] == 0
    name = db.execute("SELECT current_database()").fetchone()[0]
    assert "tpl_" not in name
    assert db.execute("SELECT version_num FROM alembic_version").fetchone()[0] == "0002"
