"""`baseline --from TOOL`: switching in one command, from the previous tool's own history table (created here
as each tool creates it), refused naming the first disagreement."""

from __future__ import annotations

import pytest

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database

TABLES = {
    "flyway": (
        "CREATE TABLE flyway_schema_history (installed_rank integer PRIMARY KEY, version varchar(50),"
        " description varchar(200) NOT NULL, type varchar(20) NOT NULL, script varchar(1000) NOT NULL,"
        " checksum integer, installed_by varchar(100) NOT NULL, installed_on timestamp NOT NULL DEFAULT now(),"
        " execution_time integer NOT NULL, success boolean NOT NULL)"
    ),
    "golang-migrate": "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)",
    "dbmate": "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY)",
    "goose": (
        "CREATE TABLE goose_db_version (id serial PRIMARY KEY, version_id bigint NOT NULL,"
        " is_applied boolean NOT NULL, tstamp timestamp DEFAULT now())"
    ),
}


def _flyway_row(rank: int, version: str | None, success: bool = True) -> str:
    v = "NULL" if version is None else f"'{version}'"
    return (
        f"INSERT INTO flyway_schema_history VALUES ({rank}, {v}, 'd', 'SQL', 'V{version}__d.sql', 1, 'ci',"
        f" now(), 5, {success})"
    )


APPLIED_1_TO_3 = {
    "flyway": [_flyway_row(1, "1"), _flyway_row(2, "2"), _flyway_row(3, None), _flyway_row(4, "3")],
    "golang-migrate": ["INSERT INTO schema_migrations VALUES (3, false)"],
    "dbmate": [f"INSERT INTO schema_migrations VALUES ('{v}')" for v in ("1", "2", "3")],
    "goose": [
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true), (1, true), (2, true), (4, true),"
        " (3, true), (4, false)"
    ],
}


def baseline(database: Database, migrations: Migrations, *args: str):
    return run_cli("baseline", *args, "--dir", str(migrations.path), "--database-url", database.url)


def _files(migrations: Migrations, count: int = 4) -> None:
    for version in range(1, count + 1):
        migrations.write(f"{version:04d}_m{version}.sql", f"CREATE TABLE m{version} (x int);\n")


@pytest.mark.parametrize("tool", list(APPLIED_1_TO_3))
def test_switching_records_what_the_previous_tool_applied_and_up_does_the_rest(
    tool: str, database: Database, migrations: Migrations
):
    _files(migrations)
    for version in (1, 2, 3):
        database.query(f"CREATE TABLE m{version} (x int)")  # what the old tool did
    database.query(TABLES[tool])
    for statement in APPLIED_1_TO_3[tool]:
        database.query(statement)
    result = baseline(database, migrations, "--from", tool)
    assert result.code == 0, result.output
    assert "baselined 3 migration(s) up to 0003_m3.sql" in result.err
    assert database.history() == [(1, "m1", "baseline"), (2, "m2", "baseline"), (3, "m3", "baseline")]
    up = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert up.code == 0 and "1 applied, now at version 0004" in up.err


@pytest.mark.parametrize(
    ("tool", "rows", "code", "message"),
    [
        ("golang-migrate", ["INSERT INTO schema_migrations VALUES (2, true)"], 5, "marked version 2 dirty"),
        (
            "golang-migrate",
            ["INSERT INTO schema_migrations VALUES (9, false)"],
            5,
            "at version 9, and no migration file",
        ),
        (
            "flyway",
            [_flyway_row(1, "1"), _flyway_row(2, "2", success=False)],
            5,
            "flyway recorded version 2 (d) as failed",
        ),
        (
            "flyway",
            [_flyway_row(1, "1"), _flyway_row(2, "1.1")],
            5,
            "flyway recorded version 1.1 (d) as applied, and no migration file has that version",
        ),
        ("flyway", [_flyway_row(1, "1.x")], 2, "flyway recorded version 1.x (d), which is not a version"),
        (
            "dbmate",
            ["INSERT INTO schema_migrations VALUES ('1'), ('3')"],
            5,
            "0002_m2.sql (version 2) is older than the newest version dbmate applied (3)",
        ),
        (
            "dbmate",
            ["INSERT INTO schema_migrations VALUES ('7')"],
            5,
            "older than the newest version dbmate applied (7)",
        ),
        ("goose", ["INSERT INTO goose_db_version (version_id, is_applied) VALUES (0, true)"], 2, "recorded nothing"),
    ],
)
def test_disagreements_are_refused_naming_the_first_one_and_nothing_is_recorded(
    tool: str, rows: list[str], code: int, message: str, database: Database, migrations: Migrations
):
    _files(migrations)
    database.query(TABLES[tool])
    for statement in rows:
        database.query(statement)
    result = baseline(database, migrations, "--from", tool)
    assert result.code == code, result.output
    assert message in result.err
    assert database.history() == []


def test_the_wrong_tool_or_no_table_is_bad_input(database: Database, migrations: Migrations):
    _files(migrations)
    missing = baseline(database, migrations, "--from", "flyway")
    assert (
        missing.code == 2
        and "no flyway history table in this database: looked for flyway_schema_history" in missing.err
    )
    database.query(TABLES["dbmate"])
    wrong = baseline(database, migrations, "--from", "golang-migrate")
    assert wrong.code == 2 and "public.schema_migrations looks like dbmate's table" in wrong.err
    assert baseline(database, migrations).code == 2
    assert database.history() == []


@pytest.mark.parametrize(
    ("tool", "table", "rows"),
    [
        (
            "sqitch",
            "CREATE SCHEMA sqitch; CREATE TABLE sqitch.changes (change_id text PRIMARY KEY, change text NOT NULL,"
            " project text NOT NULL, note text NOT NULL DEFAULT '', committed_at timestamptz NOT NULL DEFAULT now())",
            "INSERT INTO sqitch.changes (change_id, change, project, committed_at)"
            " VALUES ('a1', 'users', 'shop', now()), ('b2', 'orders', 'shop', now() + interval '1 s')",
        ),
        (
            "alembic",
            "CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)",
            "INSERT INTO alembic_version VALUES ('ae1027a6acf')",
        ),
    ],
)
def test_tools_that_name_changes_ask_for_the_version(
    tool: str, table: str, rows: str, database: Database, migrations: Migrations
):
    _files(migrations)
    database.query(table)
    database.query(rows)
    result = baseline(database, migrations, "--from", tool)
    assert result.code == 2 and "not numbered versions, so nothing tells which file each one is" in result.err
    assert ("orders" if tool == "sqitch" else "ae1027a6acf") in result.err


def test_switching_from_flyway_with_dotted_versions_and_a_repeatable(database: Database, migrations: Migrations):
    migrations.write("V1__users.sql", "CREATE TABLE users (id int PRIMARY KEY);\n")
    migrations.write("V1_1__orders.sql", "CREATE TABLE orders (id int PRIMARY KEY, user_id int);\n")
    migrations.write("V1.2__index.sql", "CREATE INDEX orders_user ON orders (user_id);\n")
    migrations.write("V1.10__audit.sql", "CREATE TABLE audit (id int);\n")
    migrations.write("R__user_orders.sql", "CREATE OR REPLACE VIEW user_orders AS SELECT user_id FROM orders;\n")
    # What Flyway did: 1, 1.1 (V1_1 is recorded as 1.1), the repeatable (version NULL), and 1.2; 1.10 is new.
    database.query(
        "CREATE TABLE users (id int PRIMARY KEY); CREATE TABLE orders (id int PRIMARY KEY, user_id int);"
        " CREATE INDEX orders_user ON orders (user_id);"
        " CREATE VIEW user_orders AS SELECT user_id FROM orders"
    )
    database.query(TABLES["flyway"])
    for rank, version in enumerate(("1", "1.1", None, "1.2"), start=1):
        database.query(_flyway_row(rank, version))
    result = baseline(database, migrations, "--from", "flyway")
    assert result.code == 0, result.output
    assert "baselined 3 migration(s) up to V1.2__index.sql" in result.err
    assert database.history() == [(1, "users", "baseline"), ("1.1", "orders", "baseline"), ("1.2", "index", "baseline")]
    # The next `up`: 1.10, then the repeatable once (Flyway's checksum is not vpc-migrate's, so it runs again;
    # a repeatable is written to be re-run).
    up = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert up.code == 0, up.output
    assert "2 applied, now at version 1.10" in up.err
    assert [row[0] for row in database.history()] == [1, "1.1", "1.2", "1.10", "R__user_orders"]
