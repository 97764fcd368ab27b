"""The history table's formats: format 2 keeps versions as text; a format-1 table (bigint versions, as
vpc-migrate created it before) is used as it is, and converted in place only when a version that is not a
whole number must be written, with its lock wait bounded; a table from a newer release is refused."""

from __future__ import annotations

import psycopg

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database

# The history table as vpc-migrate created it in format 1.
FORMAT_1 = """
CREATE SCHEMA vpc_migrate;
CREATE TABLE vpc_migrate.history (
    version bigint PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('sql', 'python')), transactional boolean NOT NULL,
    state text NOT NULL CHECK (state IN ('running', 'applied', 'failed', 'baseline')),
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), finished_at timestamptz, duration_ms bigint,
    db_user text NOT NULL DEFAULT current_user, error text, github_repository text, github_run_id text,
    github_sha text, github_actor text, runner_name text
);
COMMENT ON TABLE vpc_migrate.history IS 'vpc-migrate history, format 1';
"""
USERS = "CREATE TABLE users (id int PRIMARY KEY, active boolean NOT NULL);\n"


def up(migrations: Migrations, url: str, *args: str):
    return run_cli("up", "--dir", str(migrations.path), "--database-url", url, *args)


def version_type(database: Database) -> str:
    return str(
        database.scalar(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'vpc_migrate.history'::regclass AND attname = 'version'"
        )
    )


def format_1_with_users_applied(migrations: Migrations, database: Database) -> None:
    """A database vpc-migrate brought to 0001 in format 1."""
    migrations.write("0001_users.sql", USERS)
    database.query(USERS)
    database.query(FORMAT_1)
    database.query(
        "INSERT INTO vpc_migrate.history (version, name, checksum, kind, transactional, state, finished_at)"
        " SELECT 1, 'users', encode(sha256(%s::bytea), 'hex'), 'sql', true, 'applied', now()",
        [USERS],
    )


def test_new_tables_are_format_2(migrations: Migrations, database: Database):
    migrations.write("0001_users.sql", USERS)
    assert up(migrations, database.url).code == 0
    assert version_type(database) == "text"
    assert database.scalar("SELECT obj_description('vpc_migrate.history'::regclass)") == "vpc-migrate history, format 2"


def test_a_format_1_table_stays_format_1_while_every_version_is_a_whole_number(
    migrations: Migrations, database: Database
):
    """Both ways of writing a row (the one-round-trip batch, and statement by statement for a no-transaction
    file), by a role that may write the table but does not own it (it could not convert it)."""
    format_1_with_users_applied(migrations, database)
    migrations.write("0002_later.sql", "CREATE TABLE later (x int);\n")
    migrations.write(
        "0003_index.sql", "-- vpc-migrate: no-transaction\nCREATE INDEX CONCURRENTLY later_x ON later (x);\n"
    )
    database.query("CREATE ROLE deployer LOGIN")
    database.query(
        "GRANT USAGE ON SCHEMA vpc_migrate TO deployer; GRANT CREATE ON SCHEMA public TO deployer;"
        " GRANT SELECT, INSERT, UPDATE, DELETE ON vpc_migrate.history TO deployer;"
        " GRANT SELECT ON users TO deployer"
    )
    deployer = database.server.pg.url(database.name, user="deployer")
    result = up(migrations, deployer)
    assert result.code == 0, result.output
    assert "2 applied, now at version 0003" in result.err
    assert version_type(database) == "bigint"
    assert database.history() == [(1, "users", "applied"), (2, "later", "applied"), (3, "index", "applied")]


def test_a_format_1_table_is_converted_when_a_flyway_version_must_be_written(
    migrations: Migrations, database: Database
):
    format_1_with_users_applied(migrations, database)
    (migrations.path / "0001_users.sql").rename(migrations.path / "V1__users.sql")
    migrations.write("V1.1__later.sql", "CREATE TABLE later (x int);\n")
    migrations.write("R__active.sql", "CREATE OR REPLACE VIEW active AS SELECT id FROM users WHERE active;\n")
    result = up(migrations, database.url)
    assert result.code == 0, result.output
    assert version_type(database) == "text"
    assert database.scalar("SELECT obj_description('vpc_migrate.history'::regclass)") == "vpc-migrate history, format 2"
    assert database.history() == [
        (1, "users", "applied"),
        ("1.1", "later", "applied"),
        ("R__active", "active", "applied"),
    ]


def test_the_conversion_waits_for_its_lock_no_longer_than_the_lock_timeout(migrations: Migrations, database: Database):
    format_1_with_users_applied(migrations, database)
    migrations.write("0001_users.sql", USERS)
    migrations.write("R__active.sql", "CREATE OR REPLACE VIEW active AS SELECT id FROM users WHERE active;\n")
    reader = psycopg.connect(database.url, application_name="dashboard")
    reader.execute("SELECT count(*) FROM vpc_migrate.history")  # its transaction holds ACCESS SHARE
    try:
        result = up(migrations, database.url, "--lock-timeout", "200ms")
    finally:
        reader.close()  # only after the run ended: the run gave up while the reader still held the table
    assert result.code == 4, result.output
    assert "could not convert vpc_migrate.history to format 2" in result.err
    assert "lock_timeout (200 ms)" in result.err
    assert version_type(database) == "bigint" and "active" not in database.tables()
    again = up(migrations, database.url)  # nothing was half done: the next run converts and applies
    assert again.code == 0, again.output
    assert version_type(database) == "text"


def test_a_conversion_the_database_refuses_names_the_table_and_the_way_out(migrations: Migrations, database: Database):
    format_1_with_users_applied(migrations, database)
    database.query("CREATE VIEW public.migrations AS SELECT version, name FROM vpc_migrate.history")
    migrations.write("R__active.sql", "CREATE OR REPLACE VIEW active AS SELECT id FROM users WHERE active;\n")
    result = up(migrations, database.url)
    assert result.code == 1, result.output
    assert "could not convert vpc_migrate.history to format 2" in result.err
    assert "SQLSTATE 0A000" in result.err  # feature_not_supported: a view depends on the column
    assert "ALTER TABLE vpc_migrate.history ALTER COLUMN version TYPE text" in result.err
    assert "active" not in database.tables() and version_type(database) == "bigint"


def test_a_run_refused_for_drift_creates_nothing(migrations: Migrations, database: Database):
    format_1_with_users_applied(migrations, database)
    migrations.write("0001_users.sql", USERS + "-- edited after it ran\n")
    migrations.write("R__active.sql", "CREATE OR REPLACE VIEW active AS SELECT id FROM users WHERE active;\n")
    result = up(migrations, database.url)
    assert result.code == 5, result.output
    assert version_type(database) == "bigint"


def test_a_table_from_a_newer_release_is_refused(migrations: Migrations, database: Database):
    migrations.write("0001_users.sql", USERS)
    assert up(migrations, database.url).code == 0
    database.query("COMMENT ON TABLE vpc_migrate.history IS 'vpc-migrate history, format 3'")
    for command in ("up", "status"):
        result = run_cli(command, "--dir", str(migrations.path), "--database-url", database.url)
        assert result.code == 2, result.output
        assert "vpc_migrate.history is in format 3, written by a newer vpc-migrate" in result.err
