"""`baseline`, `exec`, `psql` and `new`."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from tests.fix_cli import Migrations, finish, run_cli, start_cli
from tests.fix_pg import Database


def test_baseline_adopts_an_existing_database(database: Database, migrations: Migrations):
    database.query("CREATE TABLE users (id int)")  # made long ago, by hand
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    migrations.write("0002_orders.sql", "CREATE TABLE orders (id int);\n")
    result = run_cli("baseline", "1", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output
    assert database.history() == [(1, "users", "baseline")]
    up = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert up.code == 0, up.output
    assert database.history() == [(1, "users", "baseline"), (2, "orders", "applied")]
    again = run_cli("baseline", "2", "--dir", str(migrations.path), "--database-url", database.url)
    assert again.code == 2 and "already has 2 record(s)" in again.err


CHILD = textwrap.dedent("""
    import os, sys, psycopg
    # Connects with only what vpc-migrate injected, and checks the migration lock is held meanwhile.
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        held = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()[0]
        conn.execute("CREATE TABLE made_by_child (held int)")
        conn.execute("INSERT INTO made_by_child VALUES (%s)", [held])
    with psycopg.connect(autocommit=True) as conn:  # PGHOST/PGPORT/PGUSER/PGDATABASE
        conn.execute("INSERT INTO made_by_child VALUES (-1)")
    sys.exit(int(sys.argv[1]))
""")


def test_exec_runs_a_real_child_with_connection_env_under_the_lock_and_returns_its_code(
    database: Database, tmp_path: Path
):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    result = run_cli("exec", "--database-url", database.url, "--", sys.executable, str(script), "7")
    assert result.code == 7, result.output
    assert database.query("SELECT held FROM made_by_child ORDER BY held") == [(-1,), (1,)]
    # Lock released afterwards.
    assert database.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


def test_exec_waits_for_a_running_migration_lock(database: Database, migrations: Migrations):
    migrations.write("0001_slow.sql", "CREATE TABLE slow (x int); SELECT pg_sleep(1.5);\n")
    runner = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("SELECT pg_sleep(1.5)")
    result = run_cli(
        "exec",
        "--database-url",
        database.url,
        "--",
        sys.executable,
        "-c",
        "import os, psycopg; c = psycopg.connect(os.environ['DATABASE_URL']);"
        " print(c.execute('SELECT count(*) FROM vpc_migrate.history').fetchone()[0])",
    )
    assert finish(runner).code == 0
    assert result.code == 0, result.output
    assert result.out.strip() == "1", "exec ran only after the migration committed"


def test_psql_opens_with_the_same_connection(database: Database):
    result = run_cli("psql", "--database-url", database.url, "--", "-tAc", "SELECT current_database()")
    assert result.code == 0, result.output
    assert result.out.strip() == database.name


def test_new_continues_the_folders_numbering(migrations: Migrations):
    migrations.write("0007_previous.sql", "SELECT 1;\n")
    result = run_cli("new", "Add orders index!", "--dir", str(migrations.path))
    assert result.code == 0, result.err
    created = Path(result.out.strip())
    assert created.name == "0008_add_orders_index.sql" and created.exists()
    py = run_cli("new", "backfill names", "--python", "--dir", str(migrations.path))
    assert Path(py.out.strip()).name == "0009_backfill_names.py"
    # Freshly created templates refuse to run until written.
    check = run_cli("check", "--dir", str(migrations.path))
    assert check.code == 2 and "0008_add_orders_index.sql: contains no SQL statement" in check.err


def test_new_uses_timestamps_in_a_timestamp_folder(tmp_path: Path):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "20250101120000_init.sql").write_text("SELECT 1;")
    result = run_cli("new", "next", "--dir", str(folder))
    name = Path(result.out.strip()).name
    assert len(name.split("_")[0]) == 14 and name.split("_")[0] > "20250101120000"
