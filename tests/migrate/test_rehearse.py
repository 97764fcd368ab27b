"""`up --rehearse`: the pending transactional migrations run in one transaction under the migration lock
and the timeouts, then it is rolled back: the server's own errors before merge, nothing changed."""

from __future__ import annotations

import psycopg

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database


def rehearse(database: Database, migrations: Migrations, *extra: str):
    return run_cli("up", "--rehearse", "--dir", str(migrations.path), "--database-url", database.url, *extra)


def test_a_semantic_error_the_parser_cannot_see_is_found_and_nothing_changes(
    database: Database, migrations: Migrations
):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY);\n")
    migrations.write(
        "0002_orders.sql",
        "CREATE TABLE orders (id int);\n\nALTER TABLE orders ADD FOREIGN KEY (user_id)\n  REFERENCES users (id);\n",
    )
    assert run_cli("check", "--dir", str(migrations.path)).code == 0, "valid syntax: only the server finds this"
    result = rehearse(database, migrations)
    assert result.code == 1, result.output
    assert '0002_orders.sql:3: column "user_id" referenced in foreign key constraint does not exist' in result.err
    assert database.tables() == set() and database.history() == []
    assert database.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'vpc_migrate'") == 0


def test_later_migrations_see_earlier_ones_then_all_of_it_is_rolled_back(database: Database, migrations: Migrations):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY);\n")
    migrations.write(
        "0002_backfill.sql", "INSERT INTO users VALUES (1), (2);\nALTER TABLE users ADD COLUMN name text;\n"
    )
    result = rehearse(database, migrations)
    assert result.code == 0, result.output
    assert "rehearsed 0001_users.sql" in result.err and "rehearsed 0002_backfill.sql" in result.err
    assert "rehearsal done: 2 of 2 ran and were rolled back; nothing changed" in result.err
    assert database.tables() == set() and database.history() == []
    applied = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert applied.code == 0 and database.tables() == {"users"}


def test_it_stops_before_a_migration_outside_a_transaction(database: Database, migrations: Migrations):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int PRIMARY KEY, email text);\n")
    migrations.write(
        "0002_index.sql", "-- vpc-migrate: no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n"
    )
    migrations.write("0003_more.sql", "ALTER TABLE users ADD COLUMN name text;\n")
    result = rehearse(database, migrations)
    assert result.code == 0, result.output
    assert "stopped before 0002_index.sql: it runs outside a transaction; it and the 1 after it" in result.err
    assert "rehearsal done: 1 of 3 ran" in result.err
    assert database.tables() == set()


def test_a_held_lock_stops_it_once_at_the_lock_timeout_exit_4(database: Database, migrations: Migrations):
    database.query("CREATE TABLE hot (id int)")
    migrations.write("0001_alter.sql", "ALTER TABLE hot ADD COLUMN added int;\n")
    blocker = psycopg.connect(database.url, application_name="nightly-report")
    try:
        blocker.execute("SELECT count(*) FROM hot")
        result = rehearse(database, migrations, "--lock-timeout", "200ms")
    finally:
        blocker.close()
    assert result.code == 4, result.output
    assert "the rehearsal stopped, rolled back" in result.err and "a rehearsal does not retry" in result.err
    assert database.scalar("SELECT count(*) FROM information_schema.columns WHERE table_name = 'hot'") == 1


def test_rehearse_and_dry_run_together_are_refused(database: Database, migrations: Migrations):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    result = rehearse(database, migrations, "--dry-run")
    assert result.code == 2 and "not allowed with argument" in result.err


def test_drift_refuses_a_rehearsal_as_it_refuses_a_run(database: Database, migrations: Migrations):
    path = migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    assert run_cli("up", "--dir", str(migrations.path), "--database-url", database.url).code == 0
    path.write_text("CREATE TABLE users (id bigint);\n")
    migrations.write("0002_more.sql", "ALTER TABLE users ADD COLUMN name text;\n")
    result = rehearse(database, migrations)
    assert result.code == 5 and "refusing to migrate" in result.err, result.output
