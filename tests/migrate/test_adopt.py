"""runner.migrate.adopt: each tool's history table, created and filled here as that tool does it in
PostgreSQL, read back and matched to migration files; every refusal names the first disagreement."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from runner.migrate.adopt import TOOLS, Applied, match, read_history
from runner.migrate.errors import BadInput, DriftDetected, ExitCode
from tests.fix_pg import Database

# The DDL each tool runs (from its source), {schema}/{table} where the tool lets you choose them.
FLYWAY = """
CREATE TABLE "{schema}"."{table}" (
    "installed_rank" INT NOT NULL,
    "version" VARCHAR(50),
    "description" VARCHAR(200) NOT NULL,
    "type" VARCHAR(20) NOT NULL,
    "script" VARCHAR(1000) NOT NULL,
    "checksum" INTEGER,
    "installed_by" VARCHAR(100) NOT NULL,
    "installed_on" TIMESTAMP NOT NULL DEFAULT now(),
    "execution_time" INTEGER NOT NULL,
    "success" BOOLEAN NOT NULL
);
ALTER TABLE "{schema}"."{table}" ADD CONSTRAINT "{table}_pk" PRIMARY KEY ("installed_rank");
CREATE INDEX "{table}_s_idx" ON "{schema}"."{table}" ("success");
"""
GOLANG_MIGRATE = (
    'CREATE TABLE IF NOT EXISTS "{schema}"."{table}" (version bigint not null primary key, dirty boolean not null)'
)
# dbmate 2.36 (checked by running it) makes version a varchar without a length; older releases 255 or 128
DBMATE = 'create table if not exists "{schema}".{table} (version varchar primary key)'
DBMATE_255 = 'create table if not exists "{schema}".{table} (version varchar(255) primary key)'
DBMATE_128 = 'create table if not exists "{schema}".{table} (version varchar(128) primary key)'
GOOSE = """
CREATE TABLE {table} (
    id serial NOT NULL,
    version_id bigint NOT NULL,
    is_applied boolean NOT NULL,
    tstamp timestamp NULL default now(),
    PRIMARY KEY(id)
);
INSERT INTO {table} (version_id, is_applied) VALUES (0, true);
"""
SQITCH = """
CREATE SCHEMA "{schema}";
CREATE TABLE "{schema}".projects (
    project         TEXT        PRIMARY KEY,
    uri             TEXT            NULL UNIQUE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    creator_name    TEXT        NOT NULL,
    creator_email   TEXT        NOT NULL
);
CREATE TABLE "{schema}".changes (
    change_id       TEXT        PRIMARY KEY,
    script_hash     TEXT            NULL,
    change          TEXT        NOT NULL,
    project         TEXT        NOT NULL REFERENCES "{schema}".projects(project) ON UPDATE CASCADE,
    note            TEXT        NOT NULL DEFAULT '',
    committed_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    committer_name  TEXT        NOT NULL,
    committer_email TEXT        NOT NULL,
    planned_at      TIMESTAMPTZ NOT NULL,
    planner_name    TEXT        NOT NULL,
    planner_email   TEXT        NOT NULL,
    UNIQUE(project, script_hash)
);
"""
ALEMBIC = "CREATE TABLE {table} (version_num VARCHAR(32) NOT NULL, CONSTRAINT {table}_pkc PRIMARY KEY (version_num))"


def flyway_row(rank: int, version: str | None, description: str, kind: str = "SQL", success: bool = True) -> str:
    script = {
        "SCHEMA": '"public"',
        "BASELINE": "<< Flyway Baseline >>",
        "DELETE": f"V{version}__{description.replace(' ', '_')}.sql",
    }.get(kind, f"{'R' if version is None else 'V' + str(version)}__{description.replace(' ', '_')}.sql")
    checksum = "NULL" if kind in ("SCHEMA", "BASELINE", "DELETE") else str(1000 + rank)
    return (
        "INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, checksum,"
        " installed_by, execution_time, success) VALUES"
        f" ({rank}, {'NULL' if version is None else repr(version)}, {description!r}, {kind!r}, {script!r},"
        f" {checksum}, 'ci', 12, {success})"
    )


def setup(database: Database, ddl: str, *rows: str, schema: str = "public", table: str = "") -> None:
    database.query(ddl.format(schema=schema, table=table))
    for row in rows:
        database.query(row)


@pytest.fixture
def conn(database: Database) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(database.url, autocommit=True) as connection:  # as vpc-migrate connects
        yield connection


def files(*versions: str) -> dict[str, str]:
    return {v: f"{v}_m{int(v)}.sql" for v in versions}


def versions(applied: list[Applied]) -> list[str]:
    return [a.version for a in applied]


# --- the happy path, tool by tool ---------------------------------------------------------------------


def test_flyway_versioned_rows_in_installed_order_repeatables_and_schema_marker_skipped(
    database: Database, conn: psycopg.Connection[Any]
):
    setup(
        database,
        FLYWAY,
        flyway_row(0, None, "<< Flyway Schema Creation >>", "SCHEMA"),
        flyway_row(1, "1", "create users"),
        flyway_row(2, "2", "add orders"),
        flyway_row(3, None, "views"),  # R__views.sql, a repeatable migration
        flyway_row(4, "004", "index orders"),
        table="flyway_schema_history",
    )
    applied = read_history(conn, "flyway")
    assert applied == [
        Applied("1", "create users"),
        Applied("2", "add orders"),
        Applied("4", "index orders"),  # 004 as recorded, compared as a number
    ]
    assert match(applied, {"1": "V1__create_users.sql", "2": "V2__add_orders.sql", "4": "V4__x.sql"}, "flyway") == [
        "1",
        "2",
        "4",
    ]
    # a file newer than the newest applied is pending: left for `up`, not recorded
    assert match(applied, files("0001", "0002", "0004", "0005"), "flyway") == ["0001", "0002", "0004"]


def test_flyway_baseline_covers_every_file_up_to_it_with_or_without_a_file_of_its_own(
    database: Database, conn: psycopg.Connection[Any]
):
    setup(
        database,
        FLYWAY,
        flyway_row(1, "3", "<< Flyway Baseline >>", "BASELINE"),
        flyway_row(2, "4", "add orders"),
        flyway_row(3, "5", "add payments"),
        table="flyway_schema_history",
    )
    applied = read_history(conn, "flyway")
    assert applied == [
        Applied("3", "<< Flyway Baseline >>", baseline=True),
        Applied("4", "add orders"),
        Applied("5", "add payments"),
    ]
    # files 1 and 2 predate the baseline: the database already had them; no file has version 3
    assert match(applied, files("1", "2", "4", "5", "6"), "flyway") == ["1", "2", "4", "5"]
    assert match(applied, files("3", "4", "5"), "flyway") == ["3", "4", "5"]
    with pytest.raises(DriftDetected, match=r"no migration file has that version") as gone:
        match(applied, files("1", "2", "5"), "flyway")
    assert "version 4 (add orders)" in gone.value.message


def test_flyway_deleted_and_undone_versions_are_no_longer_applied(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        FLYWAY,
        flyway_row(1, "1", "a"),
        flyway_row(2, "2", "b"),
        flyway_row(3, "3", "c"),
        flyway_row(4, "3", "c", "DELETE"),  # `flyway repair` after V3's file went missing
        flyway_row(5, "2", "b", "UNDO_SQL"),  # `flyway undo` (Teams): U2__b.sql
        flyway_row(6, "2", "b"),  # and applied again
        table="flyway_schema_history",
    )
    applied = read_history(conn, "flyway")
    assert applied == [Applied("1", "a"), Applied("2", "b")]
    assert match(applied, files("1", "2", "3"), "flyway") == ["1", "2"]


def test_golang_migrate_one_row_means_every_file_up_to_it(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        GOLANG_MIGRATE,
        "INSERT INTO schema_migrations (version, dirty) VALUES (3, false)",
        table="schema_migrations",
    )
    applied = read_history(conn, "golang-migrate")
    assert applied == [Applied("3", "")]
    assert match(applied, files("000001", "000002", "000003", "000004"), "golang-migrate") == [
        "000001",
        "000002",
        "000003",
    ]


def test_golang_migrate_with_nothing_applied(database: Database, conn: psycopg.Connection[Any]):
    setup(database, GOLANG_MIGRATE, table="schema_migrations")  # after `migrate down` all the way: no row
    assert read_history(conn, "golang-migrate") == []
    assert match([], files("1", "2"), "golang-migrate") == []


@pytest.mark.parametrize("ddl", [DBMATE, DBMATE_255, DBMATE_128], ids=["varchar", "varchar255", "varchar128"])
def test_dbmate_one_row_per_applied_version(ddl: str, database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        ddl,
        # dbmate inserts each version as written in the file name; rollback deletes it
        "insert into \"public\".schema_migrations (version) values ('20230105090000')",
        "insert into \"public\".schema_migrations (version) values ('20230101120000')",
        table="schema_migrations",
    )
    applied = read_history(conn, "dbmate")
    assert applied == [Applied("20230101120000", ""), Applied("20230105090000", "")]
    assert match(applied, files("20230101120000", "20230105090000", "20230201000000"), "dbmate") == [
        "20230101120000",
        "20230105090000",
    ]


def test_goose_latest_row_decides_and_its_own_version_0_is_ignored(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        GOOSE,
        # goose up (4 migrations), then:
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true), (2, true), (3, true), (4, true)",
        # older goose recorded a `down` as a row with is_applied = false ...
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (4, false)",
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (3, false)",
        # ... current goose deletes the version's rows
        "DELETE FROM goose_db_version WHERE version_id = 2",
        # and `goose up` again re-applies 2 and 3
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (2, true), (3, true)",
        table="goose_db_version",
    )
    applied = read_history(conn, "goose")
    assert applied == [Applied("1", ""), Applied("2", ""), Applied("3", "")]
    assert match(applied, files("00001", "00002", "00003", "00004"), "goose") == ["00001", "00002", "00003"]


def test_goose_timestamp_versions(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        GOOSE,
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (20230101120000, true), (20230102120000, true)",
        table="goose_db_version",
    )
    applied = read_history(conn, "goose")
    assert versions(applied) == ["20230101120000", "20230102120000"]
    assert match(applied, files("20230101120000", "20230102120000"), "goose") == ["20230101120000", "20230102120000"]


def test_only_the_version_0_row_means_nothing_applied(database: Database, conn: psycopg.Connection[Any]):
    setup(database, GOOSE, table="goose_db_version")
    assert read_history(conn, "goose") == []
    assert match([], files("1"), "goose") == []


# --- refusals -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "looked_for", "setting"),
    [
        ("flyway", "flyway_schema_history on the search_path", "flyway's `table`"),
        ("golang-migrate", "schema_migrations on the search_path", "x-migrations-table"),
        ("dbmate", "schema_migrations on the search_path", "--migrations-table"),
        ("goose", "goose_db_version on the search_path", "-table"),
        ("sqitch", "sqitch.changes", "`registry`"),
        ("alembic", "alembic_version on the search_path", "version_table"),
    ],
)
def test_a_missing_table_names_what_was_looked_for_and_how_to_point_elsewhere(
    tool: str, looked_for: str, setting: str, conn: psycopg.Connection[Any]
):
    with pytest.raises(BadInput) as refused:
        read_history(conn, tool)
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert f"no {tool} history table in this database: looked for {looked_for}" in refused.value.message
    assert setting in (refused.value.hint or "") and "give that schema and table" in (refused.value.hint or "")


def test_a_missing_table_in_a_named_schema(conn: psycopg.Connection[Any]):
    with pytest.raises(BadInput, match=r"looked for nowhere\.flyway_schema_history$"):
        read_history(conn, "flyway", schema="nowhere")
    with pytest.raises(BadInput, match=r"looked for app\.history$"):
        read_history(conn, "goose", table="app.history")


def test_the_search_path_is_shown(conn: psycopg.Connection[Any]):
    conn.execute("SET search_path = app, public")
    with pytest.raises(BadInput, match=r"looked for alembic_version on the search_path \(app, public\)"):
        read_history(conn, "alembic")


def test_golang_migrate_dirty_is_drift(database: Database, conn: psycopg.Connection[Any]):
    setup(database, GOLANG_MIGRATE, "INSERT INTO schema_migrations VALUES (2, true)", table="schema_migrations")
    with pytest.raises(DriftDetected) as refused:
        read_history(conn, "golang-migrate")
    assert refused.value.exit_code == ExitCode.DRIFT
    assert "golang-migrate marked version 2 dirty" in refused.value.message
    assert "migrate force" in (refused.value.hint or "")


def test_golang_migrate_dirty_with_no_version(database: Database, conn: psycopg.Connection[Any]):
    # a failed first `down` leaves (-1, true): golang-migrate's NilVersion, dirty
    setup(database, GOLANG_MIGRATE, "INSERT INTO schema_migrations VALUES (-1, true)", table="schema_migrations")
    with pytest.raises(DriftDetected, match="version -1 dirty"):
        read_history(conn, "golang-migrate")


def test_golang_migrate_with_more_than_one_row_is_not_what_it_writes(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        GOLANG_MIGRATE,
        "INSERT INTO schema_migrations VALUES (2, false), (3, false)",
        table="schema_migrations",
    )
    with pytest.raises(DriftDetected, match=r"public\.schema_migrations holds 2 rows"):
        read_history(conn, "golang-migrate")


def test_golang_migrate_at_a_version_no_file_has(database: Database, conn: psycopg.Connection[Any]):
    setup(database, GOLANG_MIGRATE, "INSERT INTO schema_migrations VALUES (9, false)", table="schema_migrations")
    with pytest.raises(DriftDetected, match="golang-migrate is at version 9, and no migration file has that version"):
        match(read_history(conn, "golang-migrate"), files("1", "2", "10"), "golang-migrate")


def test_flyway_failed_row_is_drift(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        FLYWAY,
        flyway_row(1, "1", "a"),
        flyway_row(2, "2", "add index concurrently", success=False),
        table="flyway_schema_history",
    )
    with pytest.raises(DriftDetected) as refused:
        read_history(conn, "flyway")
    assert refused.value.exit_code == ExitCode.DRIFT
    assert refused.value.message == (
        "flyway recorded version 2 (add index concurrently) as failed (installed_rank 2, success = false)"
    )
    assert "flyway repair" in (refused.value.hint or "")


def test_flyway_failed_repeatable_is_drift_too(database: Database, conn: psycopg.Connection[Any]):
    setup(database, FLYWAY, flyway_row(1, None, "views", success=False), table="flyway_schema_history")
    with pytest.raises(DriftDetected, match=r"flyway recorded repeatable migration \(views\) as failed"):
        read_history(conn, "flyway")


def test_flyway_dotted_versions_are_read_and_matched_part_by_part(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        FLYWAY,
        flyway_row(1, "1", "a"),
        flyway_row(2, "1.1", "b"),
        flyway_row(3, "1.2.0", "c"),
        table="flyway_schema_history",
    )
    applied = read_history(conn, "flyway")
    assert versions(applied) == ["1", "1.1", "1.2"]  # 1.2.0 is 1.2, as Flyway compares them
    dotted = {"1": "V1__a.sql", "1_1": "V1_1__b.sql", "1.2": "V1.2__c.sql", "1.10": "V1.10__d.sql"}
    assert match(applied, dotted, "flyway") == ["1", "1_1", "1.2"]
    with pytest.raises(DriftDetected, match=r"flyway recorded version 1\.2 \(c\) as applied, and no migration file"):
        match(applied, {"1": "V1__a.sql", "1.1": "V1.1__b.sql", "1.10": "V1.10__d.sql"}, "flyway")


def test_a_history_version_with_no_file(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database,
        DBMATE,
        *(f"insert into schema_migrations (version) values ('{v}')" for v in ("1", "2", "3")),
        table="schema_migrations",
    )
    applied = read_history(conn, "dbmate")
    with pytest.raises(DriftDetected) as refused:
        match(applied, files("0001", "0003"), "dbmate")
    assert refused.value.exit_code == ExitCode.DRIFT
    assert refused.value.message == "dbmate recorded version 2 as applied, and no migration file has that version"


def test_a_gap_a_file_older_than_the_newest_applied_that_was_never_applied(
    database: Database, conn: psycopg.Connection[Any]
):
    setup(
        database,
        GOOSE,
        "INSERT INTO goose_db_version (version_id, is_applied) VALUES (1, true), (3, true)",
        table="goose_db_version",
    )
    with pytest.raises(DriftDetected) as refused:
        match(read_history(conn, "goose"), files("0001", "0002", "0003"), "goose")
    assert refused.value.message.startswith(
        "0002_m2.sql (version 2) is older than the newest version goose applied (3), and goose never applied it"
    )
    assert "apply it out of order, or remove the file" in (refused.value.hint or "")


def test_the_first_disagreement_in_version_order_is_named_and_the_rest_counted():
    applied = [Applied("1", ""), Applied("5", ""), Applied("7", ""), Applied("3", "")]
    with pytest.raises(DriftDetected) as refused:
        match(applied, files("01", "02", "03", "07", "09"), "dbmate")
    # 2 is a gap, 5 has no file, 4 is in neither; 9 is pending
    assert refused.value.message.startswith("02_m2.sql (version 2) is older than the newest version dbmate applied")
    assert refused.value.message.endswith("(first of 2 disagreements)")


def test_leading_zeros_do_not_matter():
    applied = [Applied("1", ""), Applied("2", "")]
    assert match(applied, {"001": "001_a.sql", "2": "2_b.sql"}, "dbmate") == ["001", "2"]
    with pytest.raises(BadInput, match=r"001_a\.sql and 1_a\.sql have the same version 1"):
        match(applied, {"001": "001_a.sql", "1": "1_a.sql"}, "dbmate")


# --- schema_migrations: golang-migrate's or dbmate's ----------------------------------------------------


def test_golang_migrate_reading_dbmates_table_says_so(database: Database, conn: psycopg.Connection[Any]):
    setup(database, DBMATE, "insert into schema_migrations (version) values ('1')", table="schema_migrations")
    with pytest.raises(BadInput) as refused:
        read_history(conn, "golang-migrate")
    assert refused.value.message.startswith("public.schema_migrations looks like dbmate's table")
    assert refused.value.hint == "use --from dbmate"


def test_dbmate_reading_golang_migrates_table_says_so(database: Database, conn: psycopg.Connection[Any]):
    setup(database, GOLANG_MIGRATE, "INSERT INTO schema_migrations VALUES (1, false)", table="schema_migrations")
    with pytest.raises(BadInput) as refused:
        read_history(conn, "dbmate")
    assert refused.value.message.startswith("public.schema_migrations looks like golang-migrate's table")
    assert refused.value.hint == "use --from golang-migrate"


def test_a_table_of_another_shape_is_refused_naming_its_columns(database: Database, conn: psycopg.Connection[Any]):
    database.query("CREATE TABLE goose_db_version (id serial PRIMARY KEY, version text)")
    with pytest.raises(BadInput) as refused:
        read_history(conn, "goose")
    assert refused.value.message == (
        "public.goose_db_version is not shaped like goose's history table: version_id, is_applied missing or of"
        " another type (columns: id, version)"
    )


# --- where the table is ---------------------------------------------------------------------------------


def test_schema_and_table_overrides(database: Database, conn: psycopg.Connection[Any]):
    database.query("CREATE SCHEMA app")
    setup(database, FLYWAY, schema="app", table="schema_version")  # Flyway 3/4's table name
    database.query(
        "INSERT INTO app.schema_version (installed_rank, version, description, type, script, installed_by,"
        " execution_time, success) VALUES (1, '1', 'a', 'SQL', 'V1__a.sql', 'ci', 1, true)"
    )
    assert read_history(conn, "flyway", schema="app", table="schema_version") == [Applied("1", "a")]
    assert read_history(conn, "flyway", table="app.schema_version") == [Applied("1", "a")]
    with pytest.raises(BadInput, match="no flyway history table"):
        read_history(conn, "flyway")  # not on the search_path


def test_a_table_found_through_the_search_path(database: Database, conn: psycopg.Connection[Any]):
    database.query("CREATE SCHEMA app")
    setup(database, DBMATE, "insert into app.schema_migrations values ('7')", schema="app", table="schema_migrations")
    conn.execute("SET search_path = app, public")
    assert read_history(conn, "dbmate") == [Applied("7", "")]


def test_quoted_names_are_identifiers_not_sql(database: Database, conn: psycopg.Connection[Any]):
    database.query('CREATE SCHEMA "Odd Schema"')
    database.query('CREATE TABLE "Odd Schema"."Alembic; Version" (version_num VARCHAR(32) NOT NULL PRIMARY KEY)')
    database.query("""INSERT INTO "Odd Schema"."Alembic; Version" VALUES ('abc')""")
    assert read_history(conn, "alembic", schema="Odd Schema", table="Alembic; Version") == [Applied("abc", "")]
    with pytest.raises(BadInput, match="no alembic history table"):
        read_history(conn, "alembic", schema="public; DROP TABLE x", table="t")


def test_a_refusal_leaves_the_callers_transaction_usable(database: Database):
    name = f"reader_{database.name}"
    database.query(GOOSE.format(table="goose_db_version"))
    database.query(f'CREATE ROLE "{name}" LOGIN')
    with psycopg.connect(database.server.pg.url(database.name, user=name)) as conn:  # not autocommit
        conn.execute("SELECT 1")  # a transaction under way: the read runs in a savepoint
        with pytest.raises(BadInput) as refused:
            read_history(conn, "goose")
        assert refused.value.message == "cannot read goose's history table public.goose_db_version: permission denied"
        assert conn.execute("SELECT 1").fetchone() == (1,)


# --- sqitch and alembic: names, not numbers ---------------------------------------------------------------


def sqitch_change(change: str, note: str, seconds: int, project: str = "shop") -> str:
    return (
        "INSERT INTO sqitch.changes (change_id, script_hash, change, project, note, committed_at, committer_name,"
        " committer_email, planned_at, planner_name, planner_email) VALUES"
        f" (md5({change!r}), md5({change!r} || 'sql'), {change!r}, {project!r}, {note!r},"
        f" '2024-01-01'::timestamptz + interval '{seconds} seconds', 'Ann', 'ann@example.com', '2023-12-01', 'Ann',"
        " 'ann@example.com')"
    )


def test_sqitch_changes_are_read_in_deploy_order_and_match_asks_for_a_version(
    database: Database, conn: psycopg.Connection[Any]
):
    setup(
        database,
        SQITCH,
        "INSERT INTO sqitch.projects (project, creator_name, creator_email) VALUES ('shop', 'Ann', 'ann@example.com')",
        sqitch_change("orders", "Adds orders", 2),
        sqitch_change("users", "Adds users", 1),
        schema="sqitch",
    )
    applied = read_history(conn, "sqitch")
    assert applied == [Applied("users", "Adds users"), Applied("orders", "Adds orders")]
    with pytest.raises(BadInput) as refused:
        match(applied, files("1", "2"), "sqitch")
    assert refused.value.exit_code == ExitCode.BAD_INPUT
    assert refused.value.message == (
        "sqitch records change names, not numbered versions, so nothing tells which file each one is; sqitch has"
        " deployed 2 change(s), the last orders (oldest first: users, orders)"
    )
    assert "vpc-migrate baseline VERSION" in (refused.value.hint or "")


def test_sqitch_long_histories_show_the_last_changes():
    applied = [Applied(f"change{i}", "") for i in range(1, 13)]
    with pytest.raises(BadInput, match=r"deployed 12 change\(s\), the last change12 \(oldest first: \.\.\., change3,"):
        match(applied, {}, "sqitch")


def test_alembic_heads_are_read_and_match_asks_for_a_version(database: Database, conn: psycopg.Connection[Any]):
    setup(
        database, ALEMBIC, "INSERT INTO alembic_version (version_num) VALUES ('ae1027a6acf')", table="alembic_version"
    )
    applied = read_history(conn, "alembic")
    assert applied == [Applied("ae1027a6acf", "")]
    with pytest.raises(BadInput) as refused:
        match(applied, files("1"), "alembic")
    assert "alembic records revision ids, not numbered versions" in refused.value.message
    assert refused.value.message.endswith("alembic's current head revision: ae1027a6acf")


ALEMBIC_ENV = """
import os
from alembic import context
from sqlalchemy import create_engine

with create_engine(os.environ["ADOPT_DATABASE_URL"]).connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
"""


def test_alembic_table_as_alembic_itself_makes_it(database: Database, conn: psycopg.Connection[Any], tmp_path: Path):
    """Real alembic (a dev dependency) upgrades two revisions; its table is read as alembic left it."""
    versions_dir = tmp_path / "versions"
    versions_dir.mkdir()
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s\n")
    (tmp_path / "env.py").write_text(ALEMBIC_ENV)
    for revision, down in (("1975ea83b712", None), ("ae1027a6acf", "1975ea83b712")):
        (versions_dir / f"{revision}_m.py").write_text(
            f"revision = {revision!r}\ndown_revision = {down!r}\nbranch_labels = None\ndepends_on = None\n\n\n"
            "def upgrade():\n    pass\n"
        )
    env = {
        **os.environ,
        "ADOPT_DATABASE_URL": database.url.replace("postgresql://", "postgresql+psycopg://", 1),
    }
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(tmp_path / "alembic.ini"), "upgrade", "head"],
        env=env,
        check=True,
        capture_output=True,
    )
    assert read_history(conn, "alembic") == [Applied("ae1027a6acf", "")]


# --- tools ------------------------------------------------------------------------------------------------


def test_an_unknown_tool_is_bad_input(conn: psycopg.Connection[Any]):
    with pytest.raises(BadInput, match="unknown tool 'liquibase': --from takes one of flyway, golang-migrate"):
        read_history(conn, "liquibase")
    with pytest.raises(BadInput, match="unknown tool 'liquibase'"):
        match([], {}, "liquibase")


def test_every_tool_is_known():
    assert TOOLS == ("flyway", "golang-migrate", "dbmate", "goose", "sqitch", "alembic")
