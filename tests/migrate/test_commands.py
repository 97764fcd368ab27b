"""`baseline`, `exec`, `psql` and `new`."""

from __future__ import annotations

import json
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


def test_no_database_given_is_bad_input(migrations: Migrations):
    migrations.write("0001_a.sql", "SELECT 1;\n")
    result = run_cli("up", "--dir", str(migrations.path))
    assert result.code == 2 and "no database given: --database-url" in result.err


def test_baseline_names_an_existing_file_or_records_nothing(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")
    result = run_cli("baseline", "0099", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 2 and "no migration file has version 0099; the files go up to 0002_b.sql" in result.err
    assert database.history() == []


def test_new_timestamp_never_repeats_a_version(migrations: Migrations):
    names = [
        Path(run_cli("new", f"step {i}", "--timestamp", "--dir", str(migrations.path)).out.strip()).name
        for i in range(3)
    ]
    versions = [name.split("_")[0] for name in names]
    assert len(set(versions)) == 3 and versions == sorted(versions), names


def test_an_untouched_python_template_is_refused(migrations: Migrations):
    assert run_cli("new", "backfill", "--python", "--dir", str(migrations.path)).code == 0
    result = run_cli("check", "--dir", str(migrations.path))
    assert result.code == 2 and "still the template `vpc-migrate new --python` wrote" in result.err


def test_status_says_baseline_pads_missing_versions_and_labels_utc(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")
    migrations.write("0003_c.sql", "CREATE TABLE c (x int);\n")
    args = ("--dir", str(migrations.path), "--database-url", database.url)
    assert run_cli("baseline", "0001", *args).code == 0
    assert run_cli("up", *args).code == 0
    (migrations.path / "0003_c.sql").unlink()
    lines = run_cli("status", *args).out.splitlines()
    assert lines[0].split() == ["VERSION", "STATE", "APPLIED", "AT", "(UTC)", "NAME"]
    assert [line.split()[:2] for line in lines[1:]] == [["0001", "baseline"], ["0002", "applied"], ["0003", "missing"]]


def test_repair_forget_missing_resolves_a_deleted_file(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")
    args = ("--dir", str(migrations.path), "--database-url", database.url)
    assert run_cli("up", *args).code == 0
    (migrations.path / "0002_b.sql").unlink()
    assert run_cli("up", *args).code == 5
    repaired = run_cli("repair", "--forget-missing", *args)
    assert repaired.code == 0 and "forgot 2_b (file missing): its record is gone" in repaired.err
    assert run_cli("up", *args).code == 0 and database.history() == [(1, "a", "applied")]
    assert "b" in database.tables()  # what the migration did stays


def test_dry_run_names_each_file_and_says_what_it_checked(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    result = run_cli("up", "--dry-run", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0
    assert "-- would apply 0001_a.sql (in one transaction)\nCREATE TABLE a (x int);" in result.err
    assert "each pending file's syntax and directives; not run" in result.err
    # The bundled grammar is newer than the test server's: said before anything runs.
    from pglast.parser import get_postgresql_version

    grammar, server = get_postgresql_version()[0], int(database.scalar("SHOW server_version_num")) // 10000
    if server < grammar:
        assert (
            f"note: files are checked with PostgreSQL {grammar}'s grammar and this server runs {server}" in result.err
        )


def test_a_database_error_outside_a_migration_is_a_message_not_a_traceback(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    assert run_cli("up", "--dir", str(migrations.path), "--database-url", database.url).code == 0
    database.query("CREATE ROLE outsider LOGIN")
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")
    outsider = database.server.pg.url(database.name, user="outsider")
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", outsider)
    assert result.code == 1, result.output
    assert "the database refused: permission denied for schema vpc_migrate (SQLSTATE 42501)" in result.err
    assert "Traceback" not in result.err


def test_doctor_tells_a_refused_port_from_a_security_group(migrations: Migrations):
    result = run_cli("doctor", "--json", "--database-url", "postgresql://x@127.0.0.1:1/x")
    checks = {c["name"]: c for c in json.loads(result.out)}
    assert result.code == 3 and "refused the connection: the host is reachable" in checks["TCP"]["detail"]
