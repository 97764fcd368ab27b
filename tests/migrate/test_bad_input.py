"""Bad migration files and bad usage: exit 2, a message naming the problem, the database untouched."""

from __future__ import annotations

import pytest

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database

GOOD = "CREATE TABLE good (x int);\n"

BAD_FILES = {
    "duplicate version": ({"0002_a.sql": GOOD, "002_b.sql": GOOD}, "version 2 is also used by"),
    "bad name": ({"add_users.sql": GOOD}, "name must be <digits>_<name>.sql"),
    "not UTF-8": ({"0002_latin1.sql": "INSERT INTO t VALUES ('caf\xe9');".encode("latin-1")}, "not valid UTF-8"),
    "empty": ({"0002_empty.sql": "  \n\n"}, "file is empty"),
    "only comments": ({"0002_comments.sql": "-- nothing yet\n"}, "contains no SQL statement"),
    "SQL syntax": (
        {"0002_typo.sql": "CREATE TABLE ok (x int);\nCREAT TABLE typo (x int);\n"},
        "0002_typo.sql:2: SQL syntax error",
    ),
    "python syntax": ({"0002_bad.py": "def migrate(conn)\n    pass\n"}, "0002_bad.py:1: Python syntax error"),
    "no migrate()": ({"0002_nofunc.py": "def upgrade(conn):\n    pass\n"}, "defines no top-level function migrate"),
    "unknown directive": ({"0002_d.sql": "-- vpc-migrate: no-transactions\n" + GOOD}, "unknown directive"),
    "bad duration": ({"0002_d.sql": "-- vpc-migrate: lock-timeout=soon\n" + GOOD}, "is not a duration"),
    "CIC in a transaction": (
        {"0002_cic.sql": "CREATE INDEX CONCURRENTLY i ON good (x);\n"},
        "cannot run inside a transaction",
    ),
    "transaction control": (
        {"0002_tx.sql": GOOD + "COMMIT;\nCREATE TABLE after_commit (x int);\n"},
        "transaction control (COMMIT)",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES), ids=list(BAD_FILES))
def test_bad_file_is_exit_2_before_touching_the_database(case: str, database: Database, migrations: Migrations):
    files, message = BAD_FILES[case]
    migrations.write("0001_first.sql", GOOD)
    for name, content in files.items():
        migrations.write(name, content)
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 2, result.output
    assert message in result.err
    assert "nothing was run" in result.err
    assert database.tables() == set()
    assert database.scalar("SELECT count(*) FROM pg_namespace WHERE nspname = 'vpc_migrate'") == 0


def test_all_problems_are_reported_at_once(migrations: Migrations):
    migrations.write("0001_a.sql", "")
    migrations.write("0002_b.sql", "SELEC 1;")
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", "postgresql://unused@127.0.0.1:1/x")
    assert result.code == 2
    assert "0001_a.sql: file is empty" in result.err and "0002_b.sql:1: SQL syntax error" in result.err


def test_other_files_in_the_folder_are_ignored(database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", GOOD)
    migrations.write("README.md", "# notes")
    migrations.write("__init__.py", "")
    migrations.write(".hidden.sql", "garbage")
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["up", "--lock-timeout", "fast"], "--lock-timeout: 'fast' is not a duration"),
        (["up", "--target", "v2"], "must be digits"),
        (["up", "--dir", "/nonexistent/migrations"], "does not exist"),
        (["up", "--schema", "Bad-Name"], "must be a lower-case SQL identifier"),
        (["up", "--database-url", "postgresql://x@h/db", "--ssm-parameter", "/p"], "not both"),
        (["up", "--iam", "--host", "db.example.internal", "--user", "app"], "needs a region"),
        (["up", "--iam", "--user", "app", "--region", "us-east-1"], "needs the database host"),
        (
            ["up", "--iam", "--host", "h", "--user", "u", "--region", "us-east-1", "--sslmode", "disable"],
            "would send the IAM token without TLS",
        ),
        (["up", "--hold-on-failure", "a while"], "--hold-on-failure: 'a while' is not a duration"),
        (["exec"], "exec needs a command"),
        (["exec", "--", "definitely-not-a-command-here"], "command not found"),
        (["bogus-command"], "invalid choice"),
    ],
)
def test_bad_usage_is_exit_2(args: list[str], message: str, migrations: Migrations, database: Database):
    migrations.write("0001_a.sql", GOOD)
    if "--dir" not in args and args[0] == "up":
        args = [*args, "--dir", str(migrations.path)]
    if not any(a in args for a in ("--iam", "--database-url")):
        args = [*args, "--database-url", database.url]
    result = run_cli(*args)
    assert result.code == 2, result.output
    assert message in result.err
    assert database.tables() == set()


def test_check_validates_every_file_without_a_database(migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\nCREATE INDEX ON a (x);\n")
    migrations.write("0002_b.py", "def migrate(conn):\n    conn.execute('SELECT 1')\n")
    good = run_cli("check", "--dir", str(migrations.path))
    assert good.code == 0 and "2 migration file(s) valid (2 SQL statement(s))" in good.err
    migrations.write("0003_c.sql", "CREATE TABLE c (x int);\nSELEC 1;\n")
    bad = run_cli("check", "--dir", str(migrations.path))
    assert bad.code == 2 and "0003_c.sql:2: SQL syntax error" in bad.err
    assert "file names are" not in bad.err  # the naming hint only when a name is wrong


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "SET statement_timeout = 0;\nCREATE TABLE a (x int);\n",
            "0001_dump.sql:1: this statement turns off statement_timeout",
        ),
        (
            "CREATE TABLE a (x int);\nSET lock_timeout TO DEFAULT;\n",
            "0001_dump.sql:2: this statement turns off lock_timeout",
        ),
        ("RESET ALL;\n", "turns off lock_timeout and statement_timeout"),
        ("SELECT pg_catalog.set_config('lock_timeout', '0', false);\n", "turns off lock_timeout"),
        ("\\restrict Xq9\nCREATE TABLE a (x int);\n", "0001_dump.sql:1: \\restrict is a psql meta-command, not SQL"),
        (
            "CREATE TABLE a (x int, y text);\nCOPY a (x, y) FROM stdin;\n1\tone\n2\ttwo\n\\.\n",
            "0001_dump.sql:3: the data after COPY ... FROM stdin is read by psql",
        ),
        (
            "CREATE TABLE a (x int);\nCOPY a TO STDOUT;\n",
            "0001_dump.sql:2: COPY ... FROM STDIN / TO STDOUT streams data",
        ),
        (
            "CREATE TABLE a (x int);\nINSERT INTO a VALUES (:'v');\n",
            "0001_dump.sql:2: a psql variable (:name) is not SQL",
        ),
        (
            "BEGIN;\nCREATE TABLE a (x int);\nSAVEPOINT s;\nCOMMIT;\n",
            "0001_dump.sql:3: transaction control (SAVEPOINT)",
        ),
    ],
)
def test_what_only_psql_understands_or_what_would_turn_a_timeout_off_is_refused(
    migrations: Migrations, body: str, message: str
):
    migrations.write("0001_dump.sql", body)
    result = run_cli("check", "--dir", str(migrations.path))
    assert result.code == 2, result.output
    assert message in result.err
    assert "vpc-migrate exec -- psql" in result.err or "timeout" in message or "SAVEPOINT" in message


def test_settings_that_keep_a_timeout_are_accepted(migrations: Migrations):
    migrations.write("0001_ok.sql", "SET LOCAL lock_timeout = '5s';\nSET statement_timeout = '10min';\nSELECT 1;\n")
    assert run_cli("check", "--dir", str(migrations.path)).code == 0


def test_a_whole_file_transaction_wrapper_becomes_the_migrations_own(database: Database, migrations: Migrations):
    migrations.write("0001_wrapped.sql", "BEGIN;\nCREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nCOMMIT;\n")
    migrations.write("0002_wrapped_bad.sql", "START TRANSACTION;\nCREATE TABLE b (x int);\nSELECT 1 / 0;\nEND;\n")
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 1, result.output
    assert "0002_wrapped_bad.sql:3:" in result.err
    assert database.history() == [(1, "wrapped", "applied")] and database.tables() == {"a"}
    migrations.write("0003_no_tx.sql", "-- vpc-migrate: no-transaction\nBEGIN;\nSELECT 1;\nCOMMIT;\n")
    refused = run_cli("check", "--dir", str(migrations.path))
    assert refused.code == 2 and "a no-transaction file cannot be wrapped in BEGIN ... COMMIT" in refused.err
