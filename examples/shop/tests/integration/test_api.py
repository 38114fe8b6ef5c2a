"""The HTTP API in-process (``client``/``aclient``), each test on its own database.

Isolation: ``database`` (the default, so no marker). The app opens its own connections
by URL and commits once per request, exactly as in production; the test then checks
through ``db``, a second connection, what the app committed. Neither works on a rolled
back transaction, and several tests here rely on real commits and locks between
connections.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import psycopg
import pytest
from shop import UserRepository
from shop.payments import try_lock_order

from tests.common.builders import make_order, make_payment

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


@pytest.mark.seamtest(fixtures=["products"])
def test_product_search_finds_stemmed_words_best_first(client: httpx.Client) -> None:
    response = client.get("/products", params={"q": "lamps"})

    assert response.status_code == 200
    assert [p["sku"] for p in response.json()] == ["LAMP-DESK", "LAMP-FLOOR"]
    assert response.json()[0]["attributes"]["rooms"] == ["office", "study"]


def test_product_search_needs_a_query(client: httpx.Client) -> None:
    assert client.get("/products").status_code == 422
    assert client.get("/products", params={"q": ""}).status_code == 422


def test_payment_is_captured(client: httpx.Client, db: psycopg.Connection) -> None:
    order = make_order(db, total=Decimal("30.00"))
    db.commit()  # the app reads the order on its own connection

    response = client.post(f"/orders/{order.id}/payments", json={"amount": "12.50"})

    assert response.status_code == 201, response.text
    assert response.json()["status"] == "captured"
    assert Decimal(response.json()["amount"]) == Decimal("12.50")


def test_payment_for_unknown_order_is_404(client: httpx.Client) -> None:
    response = client.post("/orders/424242/payments", json={"amount": "1.00"})

    assert response.status_code == 404
    assert response.json() == {"detail": "no order with id 424242"}


def test_overpayment_is_422(client: httpx.Client, db: psycopg.Connection) -> None:
    order = make_order(db, total=Decimal("30.00"))
    make_payment(db, order=order, amount=Decimal("20.00"))
    db.commit()

    response = client.post(f"/orders/{order.id}/payments", json={"amount": "10.01"})

    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"a payment of 10.01 exceeds what order {order.id} still owes (10.00)"
    )


def test_payment_while_another_is_in_progress_is_409(
    client: httpx.Client, db: psycopg.Connection
) -> None:
    order = make_order(db)
    db.commit()
    assert try_lock_order(db, order.id)  # this test's connection now holds the order's lock

    busy = client.post(f"/orders/{order.id}/payments", json={"amount": "1.00"})
    db.rollback()  # releases the lock (it lives as long as the transaction)
    free = client.post(f"/orders/{order.id}/payments", json={"amount": "1.00"})

    assert busy.status_code == 409
    assert busy.headers["retry-after"] == "1"
    assert "payment in progress" in busy.json()["detail"]
    assert free.status_code == 201
