"""A long migration is never silent: the run's one watch thread says it is still running, and who blocks it."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from runner.migrate import locking
from tests.fix_pg import Database


def test_a_slow_migration_reports_itself_and_its_blocker(database: Database, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(locking, "SLOW_REPORT_S", (0.3, 0.6))
    database.query("CREATE TABLE hot (id int)")
    blocker = psycopg.connect(database.url, application_name="nightly-report")
    blocker.execute("SELECT count(*) FROM hot")  # ACCESS SHARE until it ends
    migration = psycopg.connect(database.url, autocommit=True)
    watcher = psycopg.connect(database.url, autocommit=True)
    said: list[str] = []
    watch = locking.BlockerWatch(watcher, migration.info.backend_pid, said.append)
    ddl = threading.Thread(target=lambda: migration.execute("ALTER TABLE hot ADD COLUMN x int"))
    try:
        with watch.watching(0.05, "0007_add_x.sql"):
            ddl.start()
            deadline = time.monotonic() + 10
            while len(said) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            blocker.close()  # the ALTER gets its lock and finishes
            ddl.join(10)
    finally:
        watch.close()
        for conn in (migration, watcher):
            conn.close()
    assert said[0].startswith("  0007_add_x.sql: still running after 0 s; waiting for pid")
    assert "nightly-report" in said[0] and "still running after 1 s" not in said[0]
    assert len(said) == 2 and not ddl.is_alive()
    assert watch.last_seen and watch.last_seen[0].application_name == "nightly-report"
