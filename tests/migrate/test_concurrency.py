"""Parallel deploys, the migration lock, lock timeouts on a live table, and being stopped or killed."""

from __future__ import annotations

import os
import signal
import threading

import psycopg
import psycopg.errors
import pytest

from tests.fix_cli import Migrations, finish, run_cli, start_cli
from tests.fix_pg import Database

ADVISORY_LOCKS = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"


def test_eight_parallel_runs_apply_each_migration_exactly_once(database: Database, migrations: Migrations):
    migrations.write("0001_counter.sql", "CREATE TABLE counter (n int);\n")
    migrations.write("0002_bump.sql", "INSERT INTO counter VALUES (2); SELECT pg_sleep(0.3);\n")
    migrations.write(
        "0003_idx.sql", "-- vpc-migrate: no-transaction\nCREATE INDEX CONCURRENTLY counter_n ON counter (n);\n"
    )
    migrations.write("0004_bump.py", "def migrate(conn):\n    conn.execute('INSERT INTO counter VALUES (4)')\n")
    runs = [start_cli("up", "--dir", str(migrations.path), "--database-url", database.url) for _ in range(8)]
    results = [finish(run) for run in runs]
    assert [r.code for r in results] == [0] * 8, [r.err for r in results if r.code]
    assert database.query("SELECT n FROM counter ORDER BY n") == [(2,), (4,)]
    assert [row[0] for row in database.history()] == [1, 2, 3, 4]
    assert sum("4 applied, now at version 0004" in r.err for r in results) == 1
    assert sum("nothing to apply" in r.err for r in results) == 7
    assert database.scalar(ADVISORY_LOCKS) == 0


def test_lock_not_obtained_in_time_is_exit_4_naming_the_holder(database: Database, migrations: Migrations):
    migrations.write("0001_slow.sql", "CREATE TABLE slow (x int); SELECT pg_sleep(3);\n")
    first = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("SELECT pg_sleep(3)")
    second = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, "--lock-wait", "0.5s")
    assert second.code == 4, second.output
    assert "waiting for the migration lock, held by pid" in second.err
    assert "vpc-migrate lock" in second.err  # the holder's application_name
    assert finish(first).code == 0


def start_up(database: Database, migrations: Migrations, *extra: str):
    return start_cli("up", "--dir", str(migrations.path), "--database-url", database.url, *extra)


@pytest.fixture
def hot_table(database: Database) -> Database:
    database.query("CREATE TABLE hot (id int PRIMARY KEY, v text)")
    database.query("INSERT INTO hot SELECT g, 'x' FROM generate_series(1, 100) g")
    return database


def _blocker(database: Database, app: str) -> psycopg.Connection:
    """A session holding ACCESS SHARE on `hot` in an open transaction (a long report, say)."""
    conn = psycopg.connect(database.url, application_name=app)
    conn.execute("SELECT count(*) FROM hot")
    return conn


def test_lock_timeout_retries_until_the_blocker_is_gone(hot_table: Database, migrations: Migrations):
    migrations.write("0001_alter.sql", "ALTER TABLE hot ADD COLUMN added int;\n")
    blocker = _blocker(hot_table, "nightly-report")
    run = start_up(hot_table, migrations, "--lock-timeout", "100ms", "--lock-retries", "30")
    hot_table.wait_until_running("ALTER TABLE hot")
    # At least one attempt timed out and rolled back before the blocker goes away.
    hot_table.wait_until(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'vpc-migrate migrate%'"
        " AND query = 'ROLLBACK'"
    )
    blocker.commit()
    blocker.close()
    result = finish(run)
    assert result.code == 0, result.output
    assert "lock timeout (100 ms) on attempt 1/31" in result.err
    assert "nightly-report" in result.err  # the blocking session is named
    assert (
        hot_table.scalar(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'hot' AND column_name = 'added'"
        )
        == 1
    )


def test_lock_retries_exhausted_is_exit_4_naming_blockers_and_rolls_back(hot_table: Database, migrations: Migrations):
    migrations.write("0001_alter.sql", "CREATE TABLE side (x int);\nALTER TABLE hot ADD COLUMN added int;\n")
    blocker = _blocker(hot_table, "stuck-batch-job")
    try:
        result = run_cli(
            "up",
            "--dir",
            str(migrations.path),
            "--database-url",
            hot_table.url,
            "--lock-timeout",
            "100ms",
            "--lock-retries",
            "2",
        )
    finally:
        blocker.close()
    assert result.code == 4, result.output
    assert "in 3 attempts; rolled back" in result.err and "stuck-batch-job" in result.err
    assert "side" not in hot_table.tables() and hot_table.history() == []


def test_application_queries_never_queue_behind_the_waiting_migration(hot_table: Database, migrations: Migrations):
    """While a DDL waits for its lock, later queries on the table queue behind it. With vpc-migrate the
    wait is cut at the lock timeout (100 ms here), so an application query with a 2 s lock_timeout of
    its own never times out; the control run below shows it would, behind an untimed ALTER."""
    migrations.write("0001_alter.sql", "ALTER TABLE hot ADD COLUMN added int;\n")
    blocker = _blocker(hot_table, "long-report")
    app_errors: list[str] = []
    stop = threading.Event()

    def application() -> None:
        with psycopg.connect(hot_table.url, autocommit=True) as conn:
            conn.execute("SET lock_timeout = '2s'")
            while not stop.is_set():
                try:
                    conn.execute("SELECT v FROM hot WHERE id = 1").fetchone()
                except psycopg.errors.LockNotAvailable as err:
                    app_errors.append(str(err))

    app = threading.Thread(target=application)
    app.start()
    run = start_up(hot_table, migrations, "--lock-timeout", "100ms", "--lock-retries", "40")
    try:
        hot_table.wait_until_running("ALTER TABLE hot")
        threading.Event().wait(3.0)  # several retry rounds while the application keeps querying
        blocker.commit()
        assert finish(run).code == 0
    finally:
        stop.set()
        app.join()
        blocker.close()
    assert app_errors == []

    # Control: the same situation with an ALTER that has no lock timeout stalls the application.
    blocker = _blocker(hot_table, "long-report")
    ddl = psycopg.connect(hot_table.url, autocommit=True)
    worker = threading.Thread(target=lambda: ddl.execute("ALTER TABLE hot ADD COLUMN control int"))
    worker.start()
    try:
        hot_table.wait_until(
            "SELECT count(*) FROM pg_stat_activity WHERE strpos(query, 'ALTER TABLE hot ADD COLUMN control') > 0"
            " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        with psycopg.connect(hot_table.url, autocommit=True) as conn, pytest.raises(psycopg.errors.LockNotAvailable):
            conn.execute("SET lock_timeout = '2s'")
            conn.execute("SELECT v FROM hot WHERE id = 1")
    finally:
        blocker.close()
        worker.join()
        ddl.close()


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stop_signal_cancels_rolls_back_and_releases_the_lock(
    database: Database, migrations: Migrations, signum: int, code: int
):
    migrations.write("0001_first.sql", "CREATE TABLE first_done (x int);\n")
    migrations.write("0002_long.sql", "CREATE TABLE half_done (x int);\nSELECT pg_sleep(60);\n")
    run = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("SELECT pg_sleep(60)")
    os.kill(run.pid, signum)
    result = finish(run, timeout=20)
    assert result.code == code, result.output
    assert f"interrupted by {signal.Signals(signum).name}" in result.err
    assert database.tables() == {"first_done"}
    assert database.history() == [(1, "first", "applied")]
    assert database.scalar(ADVISORY_LOCKS) == 0
    assert database.running("SELECT pg_sleep(60)") == 0


def test_stop_signal_during_a_no_transaction_migration_leaves_a_failed_record(
    database: Database, migrations: Migrations
):
    migrations.write("0001_long.sql", "-- vpc-migrate: no-transaction\nSELECT pg_sleep(60);\n")
    run = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("SELECT pg_sleep(60)")
    os.kill(run.pid, signal.SIGTERM)
    assert finish(run, timeout=20).code == 143
    assert database.history() == [(1, "long", "failed")]
    assert "interrupted" in database.scalar("SELECT error FROM vpc_migrate.history")


def test_a_killed_run_leaves_a_state_the_next_run_handles(database: Database, migrations: Migrations):
    migrations.write("0001_table.sql", "CREATE TABLE t (x int);\nSELECT pg_sleep(60);\n")
    run = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("SELECT pg_sleep(60)")
    run.kill()  # SIGKILL: no handler runs, the sockets just close
    finish(run)
    # The lock session notices at once; the migration session, mid-statement, within
    # client_connection_check_interval. The next run waits out its uncommitted CREATE TABLE
    # through lock-timeout retries instead of hanging, then applies the migration itself.
    migrations.write("0001_table.sql", "CREATE TABLE t (x int);\n")
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, "--lock-retries", "20")
    assert result.code == 0, result.output
    assert database.history() == [(1, "table", "applied")]
    assert database.scalar(ADVISORY_LOCKS) == 0
