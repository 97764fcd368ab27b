"""Flyway's repeatable migrations (``R__<description>.sql``), with Flyway's semantics: they run after every
versioned migration, ordered by description, and run again whenever their checksum changes; a changed
repeatable is pending, not drift."""

from __future__ import annotations

import json
import time

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database

VIEW = "CREATE OR REPLACE VIEW active_users AS SELECT id FROM users WHERE active;\n"
VIEW_WITH_EMAIL = "CREATE OR REPLACE VIEW active_users AS SELECT id, email FROM users WHERE active;\n"


def up(migrations: Migrations, database: Database, *args: str):
    return run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, *args)


def status(migrations: Migrations, database: Database) -> list[dict[str, object]]:
    result = run_cli("status", "--json", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output
    return list(json.loads(result.out))


def view_columns(database: Database) -> list[str]:
    return [
        row[0]
        for row in database.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'active_users'"
            " ORDER BY ordinal_position"
        )
    ]


def version_type(database: Database) -> str:
    return str(
        database.scalar(
            "SELECT format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = 'vpc_migrate.history'::regclass AND attname = 'version'"
        )
    )


def users(migrations: Migrations) -> None:
    migrations.write("V1__users.sql", "CREATE TABLE users (id int PRIMARY KEY, active boolean NOT NULL);\n")


def test_a_repeatable_runs_after_the_versioned_ones_and_again_only_when_it_changes(
    migrations: Migrations, database: Database
):
    users(migrations)
    migrations.write("R__active_users.sql", VIEW)
    first = up(migrations, database)
    assert first.code == 0, first.output
    assert first.err.index("applied V1__users.sql") < first.err.index("applied R__active_users.sql")
    assert "2 applied, now at version 1" in first.err
    assert "nothing to apply" in up(migrations, database).err  # unchanged: not run again

    # A new versioned migration and a changed repeatable: the versioned one first, then the repeatable again.
    migrations.write("V2__email.sql", "ALTER TABLE users ADD COLUMN email text;\n")
    migrations.write("R__active_users.sql", VIEW_WITH_EMAIL)
    rows = {row["name"]: row for row in status(migrations, database)}
    assert rows["active_users"]["state"] == "pending" and rows["active_users"]["runs_again"] is True
    assert rows["active_users"]["repeatable"] is True and rows["email"]["runs_again"] is False
    text = run_cli("status", "--dir", str(migrations.path), "--database-url", database.url)
    assert "R                pending" in text.out and "active_users (changed: runs again)" in text.out
    verify = run_cli("verify", "--dir", str(migrations.path), "--database-url", database.url)
    assert verify.code == 0 and "no drift" in verify.err  # a changed repeatable is not drift

    second = up(migrations, database)
    assert second.code == 0, second.output
    assert second.err.index("applied V2__email.sql") < second.err.index("applied R__active_users.sql")
    assert "2 applied, now at version 2" in second.err
    assert view_columns(database) == ["id", "email"]
    # One row per repeatable, holding its last run.
    assert database.history() == [
        (1, "users", "applied"),
        (2, "email", "applied"),
        ("R__active_users", "active_users", "applied"),
    ]
    assert database.scalar("SELECT checksum FROM vpc_migrate.history WHERE version = 'R__active_users'") == next(
        row["checksum"] for row in status(migrations, database) if row["name"] == "active_users"
    )


def test_repeatables_run_in_order_of_description(migrations: Migrations, database: Database):
    users(migrations)
    # b depends on a: description order (a_, b_), not file-system or creation order, makes this work.
    migrations.write("R__b_summary.sql", "CREATE OR REPLACE VIEW summary AS SELECT count(*) AS n FROM active_users;\n")
    migrations.write("R__a_active_users.sql", VIEW)
    result = up(migrations, database)
    assert result.code == 0, result.output
    assert result.err.index("applied R__a_active_users.sql") < result.err.index("applied R__b_summary.sql")


def test_a_failing_rerun_keeps_the_last_good_record(migrations: Migrations, database: Database):
    users(migrations)
    migrations.write("R__active_users.sql", VIEW)
    assert up(migrations, database).code == 0
    before = database.query("SELECT checksum, finished_at FROM vpc_migrate.history WHERE version = 'R__active_users'")
    migrations.write("R__active_users.sql", "CREATE OR REPLACE VIEW active_users AS SELECT nosuch FROM users;\n")
    failed = up(migrations, database)
    assert failed.code == 1, failed.output  # a migration failed
    assert "R__active_users.sql:1" in failed.err
    after = database.query("SELECT checksum, finished_at FROM vpc_migrate.history WHERE version = 'R__active_users'")
    assert after == before and view_columns(database) == ["id"]


def test_a_deleted_repeatable_is_missing_drift_until_forgotten(migrations: Migrations, database: Database):
    users(migrations)
    migrations.write("R__active_users.sql", VIEW)
    assert up(migrations, database).code == 0
    (migrations.path / "R__active_users.sql").unlink()
    refused = up(migrations, database)
    assert refused.code == 5 and "R__active_users (file missing): applied, but the file is gone" in refused.err
    repaired = run_cli("repair", "--forget-missing", "--dir", str(migrations.path), "--database-url", database.url)
    assert repaired.code == 0 and "forgot R__active_users (file missing)" in repaired.err
    assert database.history() == [(1, "users", "applied")]


def test_target_stops_the_versioned_ones_and_repeatables_still_run(migrations: Migrations, database: Database):
    users(migrations)
    migrations.write("V1.1__email.sql", "ALTER TABLE users ADD COLUMN email text;\n")
    migrations.write("V2__later.sql", "CREATE TABLE later (x int);\n")
    migrations.write("R__active_users.sql", VIEW_WITH_EMAIL)
    result = up(migrations, database, "--target", "1.1")
    assert result.code == 0, result.output
    assert [row[0] for row in database.history()] == [1, "1.1", "R__active_users"]
    assert "later" not in database.tables()
    refused = up(migrations, database, "--target", "R__active_users")
    assert refused.code == 2 and "a repeatable migration has no version" in refused.err


def test_placeholders_and_no_transaction_work_in_a_repeatable(migrations: Migrations, database: Database):
    users(migrations)
    migrations.write(
        "R__index.sql",
        "-- vpc-migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON users (active);\n",
    )
    assert up(migrations, database, "--placeholder", "name=users_active").code == 0
    migrations.write(
        "R__index.sql",
        "-- vpc-migrate: no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ${name} ON users (active, id);\n",
    )
    again = up(migrations, database, "--placeholder", "name=users_active_id")
    assert again.code == 0, again.output
    indexes = {row[0] for row in database.query("SELECT indexname FROM pg_indexes WHERE tablename = 'users'")}
    assert {"users_active", "users_active_id"} <= indexes
    assert database.query("SELECT state, transactional, error FROM vpc_migrate.history WHERE version = 'R__index'") == [
        ("applied", False, None)
    ]


def test_repeatables_order_as_flyway_compares_descriptions_underscores_as_spaces(
    migrations: Migrations, database: Database
):
    users(migrations)
    # Flyway compares "Create view" with "CreateFunctions": the space sorts first. As text with the
    # underscore, the other file would come first, and the view would miss the function it uses.
    migrations.write("R__Create_view.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS one;\n")
    migrations.write(
        "R__CreateFunctions.sql", "CREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT one FROM v';\n"
    )
    result = up(migrations, database)
    assert result.code == 0, result.output
    assert result.err.index("applied R__Create_view.sql") < result.err.index("applied R__CreateFunctions.sql")


def test_a_placeholder_value_that_changes_runs_a_repeatable_again(migrations: Migrations, database: Database):
    users(migrations)
    migrations.write("R__grants.sql", "COMMENT ON TABLE users IS '${env}';\n")
    assert up(migrations, database, "--placeholder", "env=staging").code == 0
    assert "nothing to apply" in up(migrations, database, "--placeholder", "env=staging").err
    again = up(migrations, database, "--placeholder", "env=production")
    assert again.code == 0 and "applied R__grants.sql" in again.err
    assert database.scalar("SELECT obj_description('users'::regclass)") == "production"
    # ${flyway:timestamp}: Flyway's way to run a repeatable on every run.
    migrations.write("R__stamp.sql", "COMMENT ON TABLE users IS 'refreshed ${flyway:timestamp}';\n")
    assert "applied R__stamp.sql" in up(migrations, database, "--placeholder", "env=production").err
    time.sleep(1.1)  # the timestamp has one-second resolution
    assert "applied R__stamp.sql" in up(migrations, database, "--placeholder", "env=production").err


def test_the_version_reported_is_the_newest_versioned_one(migrations: Migrations, database: Database):
    migrations.write("R__v.sql", "CREATE OR REPLACE VIEW v AS SELECT 1 AS one;\n")
    only = up(migrations, database)
    assert only.code == 0 and only.err.rstrip().endswith("1 applied")  # no version to name
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    migrations.write("0003_c.sql", "CREATE TABLE c (x int);\n")
    assert "now at version 0003" in up(migrations, database).err
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")  # merged late
    late = up(migrations, database, "--allow-out-of-order")
    assert late.code == 0 and "1 applied, now at version 0003" in late.err
    rows = {row["key"]: row for row in status(migrations, database)}
    assert set(rows) == {"1", "2", "3", "R__v"} and rows["R__v"]["version"] == "R"
    doctor = run_cli("doctor", "--database-url", database.url)
    assert "4 record(s), latest version 3" in doctor.out
