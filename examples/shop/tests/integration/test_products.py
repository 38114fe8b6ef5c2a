"""PostgreSQL features a mock cannot fake: JSONB containment and full-text search.

A fake repository would have to reimplement ``@>`` on nested JSON and English stemming
to pass these tests, and would still say nothing about whether the real query is right
or uses its index.

Isolation: ``transaction``. Read-mostly queries on one connection: rollback cleans up.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from psycopg import errors
from psycopg.types.json import Jsonb
from shop import Product, ProductRepository

from tests.common.builders import make_product

pytestmark = [
    pytest.mark.integration,
    pytest.mark.seamtest(isolation="transaction", fixtures=["products"]),
]


def skus(products: list[Product]) -> list[str]:
    return [p.sku for p in products]


def test_attributes_round_trip_as_json(db: psycopg.Connection) -> None:
    shirt = ProductRepository(db).find_by_sku("TSHIRT-RED")

    assert shirt is not None
    assert shirt.attributes == {
        "color": "red",
        "sizes": ["S", "M", "L"],
        "material": {"cotton": 100},
    }


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ({"color": "red"}, ["MUG-RED", "TSHIRT-RED"]),
        ({"sizes": ["M"]}, ["TSHIRT-RED"]),  # an array contains a sub-array
        ({"sizes": ["M", "S"]}, ["TSHIRT-RED"]),  # in any order
        ({"sizes": ["XL"]}, []),
        ({"material": {"cotton": 100}}, ["TSHIRT-RED"]),  # nested objects
        ({"watts": 40}, ["LAMP-DESK"]),  # numbers compare as numbers
        ({"watts": "40"}, []),  # and a string is not a number
        ({"rooms": ["office"], "color": "brass"}, ["LAMP-DESK"]),  # every key must match
    ],
)
def test_jsonb_containment(
    db: psycopg.Connection, wanted: dict[str, object], expected: list[str]
) -> None:
    assert skus(ProductRepository(db).with_attributes(wanted)) == expected


def test_attributes_must_be_an_object(db: psycopg.Connection) -> None:
    with pytest.raises(errors.CheckViolation) as excinfo:
        db.execute(
            "INSERT INTO products (sku, name, price, attributes) VALUES ('X', 'X', 1, %s)",
            (Jsonb(["red"]),),
        )

    assert excinfo.value.diag.constraint_name == "products_attributes_check"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lamp", ["LAMP-DESK", "LAMP-FLOOR"]),
        ("Lamps", ["LAMP-DESK", "LAMP-FLOOR"]),  # case and plural: English stemming
        ("desk lamp", ["LAMP-DESK"]),  # every word must match
        ("lamp -desk", ["LAMP-FLOOR"]),  # web-search syntax: minus excludes
        ('"red mug"', []),  # a phrase: the words must be adjacent
        ('"camping mug"', ["MUG-RED"]),
        ("red", ["MUG-RED", "TSHIRT-RED"]),
        ("the", []),  # a stop word alone matches nothing, and does not raise
        ("lamp & ) (", ["LAMP-DESK", "LAMP-FLOOR"]),  # tsquery operators in user input
    ],
)
def test_full_text_search(db: psycopg.Connection, query: str, expected: list[str]) -> None:
    assert sorted(skus(ProductRepository(db).search(query))) == expected


def test_search_ranks_the_better_match_first(db: psycopg.Connection) -> None:
    make_product(db, sku="LAMP-LAMP", name="Lamp Lamp: the Lamp Lover's Lamp")

    assert skus(ProductRepository(db).search("lamp"))[0] == "LAMP-LAMP"


def test_search_sees_renamed_products(db: psycopg.Connection) -> None:
    # The search column is generated from the name: no trigger, no stale index.
    db.execute("UPDATE products SET name = 'Brass Reading Light' WHERE sku = 'LAMP-DESK'")

    assert skus(ProductRepository(db).search("reading")) == ["LAMP-DESK"]
    assert skus(ProductRepository(db).search("desk")) == []


def index_scans(db: psycopg.Connection, index: str) -> int:
    """Scans of ``index`` by this transaction so far (PostgreSQL's per-transaction stats)."""
    row = db.execute("SELECT pg_stat_get_xact_numscans(%s::regclass)", (index,)).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (lambda repo: repo.search("lamp"), "products_search_idx"),
        (lambda repo: repo.with_attributes({"color": "red"}), "products_attributes_idx"),
    ],
)
def test_queries_can_use_their_gin_index(
    db: psycopg.Connection, query: Callable[[ProductRepository], list[Product]], index: str
) -> None:
    # With four rows the planner rightly prefers a sequential scan; forbidding it asks
    # whether the index *can* serve the query. One whose expression differs from the
    # index (to_tsvector('simple', ...) instead of the 'english' column) cannot, and
    # would scan the table anyway.
    db.execute("SET LOCAL enable_seqscan = off")
    before = index_scans(db, index)

    found = query(ProductRepository(db))

    assert found
    assert index_scans(db, index) > before
