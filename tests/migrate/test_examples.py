"""The shipped example migrations apply cleanly (they are what the README's try-it command runs)."""

from __future__ import annotations

from tests.fix_cli import REPO, run_cli
from tests.fix_pg import Database


def test_example_migrations_apply_and_verify(database: Database):
    folder = str(REPO / "examples" / "migrations")
    assert run_cli("up", "--dir", folder, "--database-url", database.url).code == 0
    assert database.tables() >= {"customers", "orders"}
    assert database.query("SELECT display_name FROM customers ORDER BY id") == [("Ada",), ("Grace",)]
    assert database.scalar("SELECT convalidated FROM pg_constraint WHERE conname = 'orders_total_positive'") is True
    assert run_cli("verify", "--dir", folder, "--database-url", database.url).code == 0
