"""Every migration starts from a clean session: what one file SETs never reaches the next, and no attempt
runs without the lock and statement timeouts, even after a file turned them off where validation can't see."""

from __future__ import annotations

import psycopg

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database

# Built at run time, so validation (which refuses a visible `SET lock_timeout = 0`) cannot see it.
HIDDEN_TIMEOUTS_OFF = (
    "DO $$ BEGIN\n"
    "  PERFORM set_config('lock' || '_timeout', '0', false);\n"
    "  PERFORM set_config('statement' || '_timeout', '0', false);\n"
    "END $$;\n"
)


def up(database: Database, migrations: Migrations, *extra: str):
    return run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, *extra)


def test_settings_a_file_commits_do_not_reach_the_next_file(database: Database, migrations: Migrations):
    database.query("CREATE SCHEMA other")
    migrations.write("0001_search_path.sql", "CREATE TABLE other.t1 (x int);\nSET search_path = other;\n")
    migrations.write("0002_python.py", "def migrate(conn):\n    conn.execute('SET search_path = nowhere')\n")
    migrations.write("0003_plain.sql", "CREATE TABLE t3 (x int);\n")  # unqualified: must land in public
    migrations.write(
        "0004_no_tx.sql", "-- vpc-migrate: no-transaction\nSET search_path = other;\nCREATE TABLE t4 (x int);\n"
    )
    migrations.write("0005_plain.sql", "CREATE TABLE t5 (x int);\n")
    result = up(database, migrations)
    assert result.code == 0, result.output
    assert database.tables() == {"t3", "t5"} and database.tables("other") == {"t1", "t4"}


def test_a_file_that_turns_the_timeouts_off_cannot_stall_the_next_one(database: Database, migrations: Migrations):
    """The leaked-timeout case: the next file's ALTER meets a lock and exits 4 within its retry budget."""
    database.query("CREATE TABLE hot (id int PRIMARY KEY)")
    migrations.write("0001_hidden.sql", HIDDEN_TIMEOUTS_OFF)
    migrations.write("0002_alter.sql", "ALTER TABLE hot ADD COLUMN added int;\n")
    blocker = psycopg.connect(database.url, application_name="long-report")
    blocker.execute("SELECT count(*) FROM hot")  # holds ACCESS SHARE until it commits
    try:
        result = up(database, migrations, "--lock-timeout", "100ms", "--lock-retries", "2")
    finally:
        blocker.close()  # released only after the run ended: the run gave up while the lock was still held
    assert result.code == 4, result.output
    # Each attempt ended on the server's lock_timeout (SQLSTATE 55P03), the budget of three spent: no stall.
    assert "0002_alter.sql: could not get its table locks within lock_timeout (100 ms) in 3 attempts" in result.err
    assert "long-report" in result.err
    assert database.history() == [(1, "hidden", "applied")]


def test_the_session_gets_its_timeouts_back_after_every_kind_of_file(database: Database, migrations: Migrations):
    check = (
        "INSERT INTO seen SELECT current_setting('lock_timeout'), current_setting('statement_timeout'),"
        " current_setting('search_path');\n"
    )
    migrations.write("10_seen.sql", "CREATE TABLE seen (lock text, statement text, path text);\n")
    migrations.write("20_hidden.sql", HIDDEN_TIMEOUTS_OFF + "SET search_path = pg_catalog;\n")
    migrations.write("21_check.sql", check)
    migrations.write("30_python.py", "def migrate(conn):\n    conn.execute(\"SET lock_timeout = '0'\")\n")
    migrations.write("31_check.sql", check)
    migrations.write("40_no_tx.sql", "-- vpc-migrate: no-transaction\n" + HIDDEN_TIMEOUTS_OFF)
    migrations.write("41_check.sql", check)
    result = up(database, migrations, "--lock-timeout", "750ms", "--statement-timeout", "45s")
    assert result.code == 0, result.output
    assert database.query("SELECT * FROM seen") == [("750ms", "45s", '"$user", public')] * 3
