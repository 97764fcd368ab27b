"""A transactional SQL file in one round trip (runner/migrate/batch.py): still all-or-nothing, and every
error still names its file and line, whether the server reports a position or not."""

from __future__ import annotations

import pytest

from tests.fix_cli import Migrations, finish, run_cli, start_cli
from tests.fix_pg import Database


def up(database: Database, migrations: Migrations, env: dict[str, str] | None = None):
    return run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, env=env)


@pytest.mark.parametrize(
    ("body", "line", "sqlstate"),
    [
        # No position from the server: the statement that failed is the one after the results that came back.
        (
            "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n\nSELECT 1 / 0;\nCREATE TABLE never (x int);\n",
            4,
            "22012",
        ),
        # A position inside a multi-line statement: the line within it.
        ("CREATE TABLE a (x int);\nINSERT INTO a\n  SELECT x\n    FROM nosuch;\n", 4, "42P01"),
        # A statement ending with a comment must not swallow the separator after it.
        ("CREATE TABLE a (x int) -- trailing comment\n;\nSELECT nosuch FROM a;\n", 3, "42703"),
    ],
)
def test_an_error_names_its_line_and_the_whole_file_rolls_back(
    database: Database, migrations: Migrations, body: str, line: int, sqlstate: str
):
    migrations.write("0001_ok.sql", "CREATE TABLE ok (x int);\n")
    migrations.write("0002_bad.sql", body)
    result = up(database, migrations)
    assert result.code == 1, result.output
    assert f"0002_bad.sql:{line}:" in result.err and f"SQLSTATE {sqlstate}" in result.err
    assert database.history() == [(1, "ok", "applied")]
    assert database.tables() == {"ok"}
    assert database.scalar("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'") == 0


def test_a_deferred_constraint_failing_at_commit_points_at_the_last_statement(
    database: Database, migrations: Migrations
):
    migrations.write(
        "0001_deferred.sql",
        "CREATE TABLE p (id int PRIMARY KEY);\n"
        "CREATE TABLE c (p int REFERENCES p DEFERRABLE INITIALLY DEFERRED);\n"
        "INSERT INTO c VALUES (42);\n",
    )
    result = up(database, migrations)
    assert result.code == 1, result.output
    assert "0001_deferred.sql:3:" in result.err and "SQLSTATE 23503" in result.err
    assert database.history() == [] and database.tables() == set()


def test_the_migration_its_history_row_and_commit_travel_as_one_query(database: Database, migrations: Migrations):
    migrations.write("0001_slow.sql", "SELECT pg_sleep(1);\n")
    running = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("pg_sleep(1)")
    (text,) = database.query(
        "SELECT query FROM pg_stat_activity WHERE strpos(query, 'pg_sleep(1)') > 0 AND pid <> pg_backend_pid()"
    )[0]
    assert text.startswith("BEGIN\n;\nSELECT pg_sleep(1)")
    assert 'INSERT INTO "vpc_migrate"."history"' in text and "\n;\nCOMMIT\n;\nRESET ALL\n;\nRESET ROLE\n;\n" in text
    assert finish(running).code == 0


def test_history_values_are_quoted_in_the_batch(database: Database, migrations: Migrations):
    """CI values come from the environment: any text, quotes and backslashes included, stays data."""
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    actor = "o'brien\\'); DROP TABLE a; --"
    result = up(database, migrations, env={"GITHUB_ACTOR": actor, "GITHUB_REPOSITORY": "acme/shop"})
    assert result.code == 0, result.output
    assert database.query("SELECT github_actor, github_repository, state FROM vpc_migrate.history") == [
        (actor, "acme/shop", "applied")
    ]
    assert database.tables() == {"a"}
    assert database.scalar("SELECT duration_ms >= 0 AND finished_at >= started_at FROM vpc_migrate.history")
