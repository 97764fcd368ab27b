"""Migration file parsing: statements and their lines, directives, durations, new-file names."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from runner.migrate.durations import parse_duration_ms
from runner.migrate.errors import BadInput
from runner.migrate.files import Settings, Version, validate
from runner.migrate.layouts import load_migrations, new_migration


def test_statements_keep_their_line_numbers_and_postgres_syntax(tmp_path: Path):
    (tmp_path / "0001_fn.sql").write_text(
        "-- header comment\n"
        "CREATE TABLE a (x int);\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN 1; -- ; inside\nEND;\n$$;\n"
        "CREATE FUNCTION g() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\nEND;\n"
        "INSERT INTO a VALUES (1) /* ; */; SELECT 'it''s; fine';\n"
    )
    (m,) = validate(load_migrations(tmp_path))
    assert [(s.line, s.text.split()[0]) for s in m.statements] == [
        (2, "CREATE"),
        (3, "CREATE"),
        (8, "CREATE"),
        (12, "INSERT"),
        (12, "SELECT"),
    ]
    assert m.statements[2].text.endswith("END")


def test_directives_set_per_file_settings(tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text(
        "-- plain comment\n-- vpc-migrate: no-transaction, lock-timeout=250ms\n"
        "-- vpc-migrate: statement-timeout=0\nVACUUM;\n"
    )
    (tmp_path / "0002_b.py").write_text("# vpc-migrate: lock-timeout=2s\ndef migrate(conn):\n    pass\n")
    a, b = load_migrations(tmp_path)
    assert a.settings == Settings(transactional=False, lock_timeout_ms=250, statement_timeout_ms=0)
    assert b.settings == Settings(transactional=True, lock_timeout_ms=2000)


def test_directive_after_the_first_statement_is_not_a_directive(tmp_path: Path):
    (tmp_path / "0001_a.sql").write_text("SELECT 1;\n-- vpc-migrate: no-transaction\n")
    (m,) = load_migrations(tmp_path)
    assert m.settings.transactional


def test_versions_sort_numerically_not_as_text(tmp_path: Path):
    for name in ("10_c.sql", "9_b.sql", "0001_a.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [m.version.key for m in load_migrations(tmp_path)] == ["1", "9", "10"]


def test_flyway_versions_compare_part_by_part_and_repeatables_come_last_by_description(tmp_path: Path):
    names = [
        "R__b_views.sql",
        "V2__e.sql",
        "V1.10__d.sql",
        "R__a_grants.sql",
        "V1_2__c.sql",
        "V1__a.sql",
        "V1.1.5__b.sql",
    ]
    for name in names:
        (tmp_path / name).write_text("SELECT 1;")
    loaded = load_migrations(tmp_path)
    assert [m.path.name for m in loaded] == [
        "V1__a.sql",
        "V1.1.5__b.sql",
        "V1_2__c.sql",
        "V1.10__d.sql",
        "V2__e.sql",
        "R__a_grants.sql",
        "R__b_views.sql",
    ]
    assert [m.version.key for m in loaded] == ["1", "1.1.5", "1.2", "1.10", "2", "R__a_grants", "R__b_views"]
    assert [m.version_text for m in loaded][-2:] == ["R", "R"]


@pytest.mark.parametrize(
    ("text", "key"),
    [("0004", "4"), ("1.0", "1"), ("1_2", "1.2"), ("1.02", "1.2"), ("2.0.0", "2"), ("R__views", "R__views")],
)
def test_a_version_is_keyed_as_its_numbers(text: str, key: str):
    assert Version.parse(text).key == key
    assert Version.parse(key) == Version.parse(text)


@pytest.mark.parametrize("text", ["", "1.", ".1", "1..2", "v1", "1-2", "R__"])
def test_a_version_that_is_not_numbers_is_refused(text: str):
    with pytest.raises(BadInput, match="must be digits"):
        Version.parse(text)


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("2s", 2000), ("1.5s", 1500), ("5min", 300_000), ("1h", 3_600_000), ("0", 0), ("30", 30_000)],
)
def test_durations(text: str, ms: int):
    assert parse_duration_ms(text, what="x") == ms


def test_bad_duration_names_the_setting():
    with pytest.raises(BadInput, match="--lock-wait: 'soon'"):
        parse_duration_ms("soon", what="--lock-wait")


def new_name(folder: Path, title: str, *, python: bool = False, use_timestamp: bool = False) -> str:
    now = datetime(2026, 11, 21, 9, 30, 0, tzinfo=UTC)
    return new_migration(folder, title, python=python, use_timestamp=use_timestamp, now=now)[0]


def test_new_file_names(tmp_path: Path):
    assert new_name(tmp_path, "Create users") == "0001_create_users.sql"
    (tmp_path / "0099_x.sql").write_text("SELECT 1;")
    assert new_name(tmp_path, "y", python=True) == "0100_y.py"
    assert new_name(tmp_path, "z", use_timestamp=True) == "20261121093000_z.sql"
    with pytest.raises(BadInput):
        new_name(tmp_path, "!!!")


@pytest.mark.parametrize(
    ("files", "created"),
    [
        ({"V1__a.sql": "SELECT 1;", "V1.9__b.sql": "SELECT 1;", "R__v.sql": "SELECT 1;"}, "V1.10__add_orders.sql"),
        ({"V1_2__a.sql": "SELECT 1;"}, "V1_3__add_orders.sql"),
        ({"V20250101120000__a.sql": "SELECT 1;"}, "V20261121093000__add_orders.sql"),
        ({"000007_a.up.sql": "SELECT 1;", "000007_a.down.sql": "SELECT 1;"}, "000008_add_orders.up.sql"),
        ({"20250101120000_a.sql": "-- migrate:up\nSELECT 1;\n-- migrate:down\n"}, "20261121093000_add_orders.sql"),
        ({"00003_a.sql": "-- +goose Up\nSELECT 1;\n"}, "00004_add_orders.sql"),
        ({"20250101120000_init/migration.sql": "SELECT 1;"}, "20261121093000_add_orders/migration.sql"),
        ({"2025-01-01-120000_init/up.sql": "SELECT 1;"}, "2026-11-21-093000_add_orders/up.sql"),
    ],
)
def test_new_writes_the_next_file_in_the_folders_own_layout(tmp_path: Path, files: dict[str, str], created: str):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    path, template = new_migration(
        tmp_path, "Add orders", python=False, use_timestamp=False, now=datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    )
    assert path == created
    (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / path).write_text(template)
    # The template is read as that tool's, is the newest migration, and is refused until written.
    loaded = load_migrations(tmp_path)
    assert loaded[-1 if not loaded[-1].version.repeatable else -2].filename == path
    assert len({m.tool for m in loaded}) == 1
    with pytest.raises(BadInput):
        validate([m for m in loaded if m.filename == path])


def test_new_refuses_python_in_another_tools_folder(tmp_path: Path):
    (tmp_path / "V1__a.sql").write_text("SELECT 1;")
    with pytest.raises(BadInput, match="holds flyway migrations: Python migrations are vpc-migrate's own"):
        new_name(tmp_path, "backfill", python=True)
