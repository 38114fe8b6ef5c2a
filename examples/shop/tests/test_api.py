"""The HTTP API in-process (``client``/``aclient``), each test on its own database."""

from __future__ import annotations

from decimal import Decimal

import httpx
import psycopg
import pytest
from shop import UserRepository

pytestmark = pytest.mark.integration

ADA = {"name": "Ada Lovelace", "email": "ada@example.com"}


def test_create_user_returns_201_and_the_user(client: httpx.Client) -> None:
    response = client.post("/users", json=ADA)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == ADA["name"]
    assert body["email"] == ADA["email"]
    assert isinstance(body["id"], int)
    assert body["created_at"]


def test_created_user_can_be_fetched(client: httpx.Client) -> None:
    created = client.post("/users", json=ADA).json()

    response = client.get(f"/users/{created['id']}")

    assert response.status_code == 200
    assert response.json() == created


def test_unknown_user_is_404(client: httpx.Client) -> None:
    response = client.get("/users/424242")

    assert response.status_code == 404
    assert response.json() == {"detail": "no user with id 424242"}


def test_malformed_json_is_400(client: httpx.Client) -> None:
    response = client.post(
        "/users",
        content=b'{"name": "Ada", "email": ',
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 400
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_missing_field_is_422(client: httpx.Client) -> None:
    # Valid JSON that does not fit the schema stays FastAPI's 422 (see shop/api.py).
    response = client.post("/users", json={"name": "Ada"})

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "email"]


def test_duplicate_email_is_409(client: httpx.Client) -> None:
    assert client.post("/users", json=ADA).status_code == 201

    response = client.post("/users", json={"name": "Impostor", "email": ADA["email"]})

    assert response.status_code == 409
    assert "ada@example.com" in response.json()["detail"]


@pytest.mark.seamtest(fixtures=["users", "orders"])
def test_orders_of_user_1_oldest_first(client: httpx.Client) -> None:
    response = client.get("/users/1/orders")

    assert response.status_code == 200
    orders = response.json()
    assert len(orders) == 3
    assert Decimal(orders[0]["total"]) == Decimal("29.99")
    assert [o["created_at"] for o in orders] == sorted(o["created_at"] for o in orders)


def test_orders_of_unknown_user_is_404(client: httpx.Client) -> None:
    assert client.get("/users/424242/orders").status_code == 404


def test_api_and_repository_agree(client: httpx.Client, db: psycopg.Connection) -> None:
    # The app commits on its own connection before answering, so `db` sees the row.
    created = client.post("/users", json=ADA).json()

    stored = UserRepository(db).find_by_email(ADA["email"])

    assert stored is not None
    assert stored.id == created["id"]
    assert stored.name == created["name"]


async def test_async_client_round_trip(aclient: httpx.AsyncClient) -> None:
    created = await aclient.post("/users", json=ADA)
    fetched = await aclient.get(f"/users/{created.json()['id']}")

    assert created.status_code == 201
    assert fetched.json() == created.json()
