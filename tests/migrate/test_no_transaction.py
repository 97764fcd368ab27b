"""Files that must run outside a transaction: started/applied/failed records, invalid indexes, repair."""

from __future__ import annotations

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database


def up(database: Database, migrations: Migrations):
    return run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)


def test_create_index_concurrently_runs_and_is_recorded(database: Database, migrations: Migrations):
    migrations.write("0001_t.sql", "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000);\n")
    migrations.write("0002_idx.sql", "-- vpc-migrate: no-transaction\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n")
    result = up(database, migrations)
    assert result.code == 0, result.output
    assert database.query("SELECT state, transactional FROM vpc_migrate.history WHERE version = '2'") == [
        ("applied", False)
    ]
    assert database.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x'::regclass") is True


def test_failed_concurrent_index_reports_the_invalid_index_blocks_up_until_repair(
    database: Database, migrations: Migrations
):
    migrations.write("0001_t.sql", "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (1);\n")
    migrations.write(
        "0002_uniq.sql", "-- vpc-migrate: no-transaction\nCREATE UNIQUE INDEX CONCURRENTLY t_x_key ON t (x);\n"
    )
    first = up(database, migrations)
    assert first.code == 1, first.output
    assert "0002_uniq.sql:2:" in first.err and "23505" in first.err
    assert "public.t_x_key" in first.err and "invalid" in first.err
    assert database.query("SELECT state FROM vpc_migrate.history WHERE version = '2'") == [("failed",)]
    assert database.scalar("SELECT error FROM vpc_migrate.history WHERE version = '2'").count("public.t_x_key") == 1

    blocked = up(database, migrations)
    assert blocked.code == 5 and "0002_uniq.sql: failed" in blocked.err

    # The operator fixes it by hand: drop the invalid index and the duplicate row.
    database.query("DROP INDEX t_x_key")
    database.query("DELETE FROM t WHERE ctid = (SELECT max(ctid) FROM t)")
    repair = run_cli("repair", "--dir", str(migrations.path), "--database-url", database.url)
    assert repair.code == 0 and "cleared failed record of 0002_uniq.sql" in repair.err
    assert up(database, migrations).code == 0
    assert database.query("SELECT state FROM vpc_migrate.history ORDER BY version") == [("applied",), ("applied",)]
    assert database.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 't_x_key'::regclass") is True


def test_repair_with_nothing_to_do(database: Database, migrations: Migrations):
    migrations.write("0001_t.sql", "CREATE TABLE t (x int);\n")
    assert up(database, migrations).code == 0
    result = run_cli("repair", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0 and "nothing to repair" in result.err
