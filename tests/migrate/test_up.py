"""`up`, `status` and `verify` against a real PostgreSQL: applying, re-running, failing, drift."""

from __future__ import annotations

import json

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database


def up(database: Database, migrations: Migrations, *extra: str):
    return run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, *extra)


def status_json(database: Database, migrations: Migrations) -> list[dict]:
    result = run_cli("status", "--json", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output
    return json.loads(result.out)


def write_three(migrations: Migrations) -> None:
    migrations.write("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);\n")
    migrations.write(
        "0002_seed.sql",
        "INSERT INTO users VALUES (1, 'a@example.com');\nINSERT INTO users VALUES (2, 'b@example.com');\n",
    )
    migrations.write(
        "0003_names.py",
        "def migrate(conn):\n"
        "    conn.execute('ALTER TABLE users ADD COLUMN name text')\n"
        "    conn.execute(\"UPDATE users SET name = split_part(email, '@', 1)\")\n",
    )


def test_fresh_apply_runs_every_file_in_order_and_records_it(database: Database, migrations: Migrations):
    write_three(migrations)
    result = up(database, migrations)
    assert result.code == 0, result.output
    assert database.history() == [(1, "users", "applied"), (2, "seed", "applied"), (3, "names", "applied")]
    assert database.query("SELECT name FROM users ORDER BY id") == [("a",), ("b",)]
    assert "3 applied, now at version 0003" in result.err
    rows = database.query(
        "SELECT checksum, kind, transactional, duration_ms >= 0, db_user FROM vpc_migrate.history ORDER BY version"
    )
    assert [r[1:] for r in rows] == [("sql", True, True, "postgres")] * 2 + [("python", True, True, "postgres")]
    assert all(len(r[0]) == 64 for r in rows)


def test_second_run_is_a_no_op(database: Database, migrations: Migrations):
    write_three(migrations)
    assert up(database, migrations).code == 0
    before = database.query("SELECT version, finished_at FROM vpc_migrate.history ORDER BY version")
    result = up(database, migrations)
    assert result.code == 0, result.output
    assert "nothing to apply" in result.err and "at version 0003" in result.err
    assert database.query("SELECT version, finished_at FROM vpc_migrate.history ORDER BY version") == before
    assert database.scalar("SELECT count(*) FROM users") == 2


def test_failing_migration_rolls_back_itself_keeps_earlier_ones_and_names_file_and_line(
    database: Database, migrations: Migrations
):
    migrations.write("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY);\n")
    migrations.write(
        "0002_broken.sql", "CREATE TABLE orders (id bigint);\n\nINSERT INTO orders\n  SELECT nosuch FROM users;\n"
    )
    migrations.write("0003_after.sql", "CREATE TABLE after_failure (id bigint);\n")
    result = up(database, migrations)
    assert result.code == 1, result.output
    assert "0002_broken.sql:4:" in result.err and "nosuch" in result.err and "42703" in result.err
    assert database.history() == [(1, "users", "applied")]
    assert database.tables() == {"users"}  # orders rolled back with its history row; 0003 never ran


def test_python_migration_error_reports_its_line(database: Database, migrations: Migrations):
    migrations.write(
        "0001_fail.py",
        "def migrate(conn):\n    conn.execute('CREATE TABLE t (x int)')\n"
        "    raise ValueError('backfill found bad data')\n",
    )
    result = up(database, migrations)
    assert result.code == 1, result.output
    assert "0001_fail.py:3: ValueError: backfill found bad data" in result.err
    assert database.tables() == set() and database.history() == []


def test_target_stops_at_the_given_version(database: Database, migrations: Migrations):
    write_three(migrations)
    assert up(database, migrations, "--target", "2").code == 0
    assert [r[0] for r in database.history()] == [1, 2]
    assert [e["state"] for e in status_json(database, migrations)] == ["applied", "applied", "pending"]


def test_dry_run_prints_the_plan_and_changes_nothing(database: Database, migrations: Migrations):
    write_three(migrations)
    result = up(database, migrations, "--dry-run")
    assert result.code == 0, result.output
    assert "3 pending, nothing changed" in result.err and "CREATE TABLE users" in result.err
    assert database.tables() == set()
    assert database.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'vpc_migrate'") == 0


def test_status_json_lists_every_state(database: Database, migrations: Migrations):
    write_three(migrations)
    assert up(database, migrations, "--target", "0002").code == 0
    entries = status_json(database, migrations)
    assert [(e["version"], e["name"], e["state"]) for e in entries] == [
        ("0001", "users", "applied"),
        ("0002", "seed", "applied"),
        ("0003", "names", "pending"),
    ]
    assert entries[0]["applied_at"] and entries[2]["applied_at"] is None
    assert all(len(e["checksum"]) == 64 for e in entries)


def test_edited_applied_file_is_drift(database: Database, migrations: Migrations):
    write_three(migrations)
    assert up(database, migrations).code == 0
    migrations.write("0002_seed.sql", "INSERT INTO users VALUES (3, 'c@example.com');\n")
    assert [e["state"] for e in status_json(database, migrations)] == ["applied", "changed", "applied"]
    verify = run_cli("verify", "--dir", str(migrations.path), "--database-url", database.url)
    assert verify.code == 5 and "0002_seed.sql: changed" in verify.err
    migrations.write("0004_more.sql", "CREATE TABLE more (x int);\n")
    result = up(database, migrations)
    assert result.code == 5, result.output
    assert "more" not in database.tables()
    accept = run_cli("repair", "--accept-checksums", "--dir", str(migrations.path), "--database-url", database.url)
    assert accept.code == 0 and "re-recorded the checksum of 0002_seed.sql" in accept.err
    assert up(database, migrations).code == 0 and "more" in database.tables()


def test_deleted_applied_file_is_missing_drift(database: Database, migrations: Migrations):
    write_three(migrations)
    assert up(database, migrations).code == 0
    (migrations.path / "0001_users.sql").unlink()
    entries = status_json(database, migrations)
    assert entries[0]["state"] == "missing" and entries[0]["file"] is None
    verify = run_cli("verify", "--dir", str(migrations.path), "--database-url", database.url)
    assert verify.code == 5 and "applied, but the file is gone" in verify.err


def test_out_of_order_pending_is_drift_unless_allowed(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    migrations.write("0003_c.sql", "CREATE TABLE c (x int);\n")
    assert up(database, migrations).code == 0
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")  # merged late from another branch
    entries = status_json(database, migrations)
    assert entries[1]["state"] == "pending" and entries[1]["out_of_order"] is True
    assert run_cli("verify", "--dir", str(migrations.path), "--database-url", database.url).code == 5
    refused = up(database, migrations)
    assert refused.code == 5 and "older than the newest applied" in refused.err
    assert "b" not in database.tables()
    assert up(database, migrations, "--allow-out-of-order").code == 0
    assert "b" in database.tables()


def test_verify_passes_on_a_clean_database(database: Database, migrations: Migrations):
    write_three(migrations)
    assert up(database, migrations, "--target", "1").code == 0
    result = run_cli("verify", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0 and "no drift: 1 applied, 2 pending" in result.err


def test_statement_timeout_cancels_and_says_how_to_raise_it(database: Database, migrations: Migrations):
    migrations.write("0001_slow.sql", "SELECT pg_sleep(5);\n")
    result = up(database, migrations, "--statement-timeout", "200ms")
    assert result.code == 1, result.output
    assert "57014" in result.err and "statement-timeout=" in result.err
    migrations.write("0001_slow.sql", "-- vpc-migrate: statement-timeout=10s\nSELECT pg_sleep(0.3);\n")
    assert up(database, migrations, "--statement-timeout", "200ms").code == 0


def test_unreachable_database_is_exit_3(migrations: Migrations):
    write_three(migrations)
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", "postgresql://x@127.0.0.1:1/db")
    assert result.code == 3, result.output
    assert "cannot connect" in result.err and "not reachable" in result.err
