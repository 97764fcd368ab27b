"""`baseline --from TOOL`: what the previous tool recorded as applied, read from its own history table.

The tables, as each tool creates them (its documentation and source):
- Flyway: ``flyway_schema_history`` (installed_rank, version, ..., success); repeatables have no version.
- golang-migrate: ``schema_migrations (version bigint, dirty boolean)``, one row: the current version.
- dbmate: ``schema_migrations (version varchar)``, one row per applied version.
- goose: ``goose_db_version (id, version_id, is_applied, tstamp)``; a version's latest row decides; 0 is goose's own.
sqitch (``sqitch.changes``) and alembic (``alembic_version``) name changes, not numbered versions: for them
the user names the last applied file with ``baseline VERSION``; the message shows what the tool recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import psycopg.errors

from .errors import BadInput, DriftDetected

TOOLS = ("flyway", "golang-migrate", "dbmate", "goose", "sqitch", "alembic")
TABLES = {
    "flyway": "flyway_schema_history",
    "golang-migrate": "schema_migrations",
    "dbmate": "schema_migrations",
    "goose": "goose_db_version",
    "sqitch": "sqitch.changes",
    "alembic": "alembic_version",
}


def applied_versions(conn: psycopg.Connection[Any], tool: str, file_versions: list[int]) -> list[int]:
    """The file versions `tool` applied, in order; refuses (exit 5) naming the first disagreement."""
    if tool not in TOOLS:
        raise BadInput(f"--from {tool!r}: one of {', '.join(TOOLS)}")
    try:
        with conn.transaction():  # a missing table must not leave the session in a failed transaction
            recorded = _READERS[tool](conn)
    except psycopg.errors.UndefinedTable:
        raise BadInput(
            f"no {TABLES[tool]} table in this database: is it the database {tool} migrated? "
            "(its table is looked for on the search_path)"
        ) from None
    if tool == "golang-migrate":  # one row: everything up to it is applied
        current = recorded[-1] if recorded else None
        if current is not None and current not in file_versions:
            raise DriftDetected(f"golang-migrate is at version {current}, and no migration file has that version")
        return [v for v in file_versions if current is not None and v <= current]
    applied = sorted(set(recorded))
    files = set(file_versions)
    for version in applied:
        if version not in files:
            raise DriftDetected(f"{tool} recorded version {version} as applied, and no migration file has it")
    newest = applied[-1] if applied else None
    for version in file_versions:
        if newest is not None and version < newest and version not in applied:
            raise DriftDetected(
                f"file version {version} is older than {tool}'s newest applied ({newest}) but {tool} never applied "
                "it: apply or remove it with the old tool first, so the history and the files agree"
            )
    return applied


def _flyway(conn: psycopg.Connection[Any]) -> list[int]:
    rows = conn.execute(
        "SELECT version, success FROM flyway_schema_history WHERE version IS NOT NULL ORDER BY installed_rank"
    ).fetchall()
    failed = [version for version, success in rows if not success]
    if failed:
        raise DriftDetected(f"flyway recorded version {failed[0]} as failed: run `flyway repair` first")
    dotted = [version for version, _ in rows if not str(version).isdigit()]
    if dotted:
        raise BadInput(f"flyway version {dotted[0]} is not a whole number: dotted versions are not supported yet")
    return [int(version) for version, _ in rows]


def _schema_migrations(conn: psycopg.Connection[Any], tool: str) -> list[int]:
    columns = {
        row[0]
        for row in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass"
            " AND attnum > 0 AND NOT attisdropped"
        )
    }
    shaped_like = "golang-migrate" if "dirty" in columns else "dbmate"
    if shaped_like != tool:
        raise BadInput(
            f"schema_migrations here is {shaped_like}'s table (columns {sorted(columns)}): --from {shaped_like}"
        )
    if tool == "golang-migrate":
        row = conn.execute("SELECT version, dirty FROM schema_migrations").fetchone()
        if row and row[1]:
            raise DriftDetected(
                f"golang-migrate marked version {row[0]} dirty (it failed half-way): `migrate force` first"
            )
        return [int(row[0])] if row else []
    versions = [str(row[0]) for row in conn.execute("SELECT version FROM schema_migrations")]
    return [int(v) for v in versions if v.isdigit()]


def _goose(conn: psycopg.Connection[Any]) -> list[int]:
    latest: dict[int, bool] = {}
    for version, is_applied in conn.execute("SELECT version_id, is_applied FROM goose_db_version ORDER BY id"):
        latest[int(version)] = bool(is_applied)
    return [version for version, applied in latest.items() if applied and version != 0]


def _named_changes(conn: psycopg.Connection[Any], tool: str) -> list[int]:
    query = (
        "SELECT change FROM sqitch.changes ORDER BY committed_at"
        if tool == "sqitch"
        else "SELECT version_num FROM alembic_version"
    )
    names = [str(row[0]) for row in conn.execute(query)]
    raise BadInput(
        f"{tool} records names, not numbered versions (it has applied: {', '.join(names[-3:]) or 'nothing'}): "
        "name the last applied file yourself with `vpc-migrate baseline VERSION`"
    )


def _golang_migrate(conn: psycopg.Connection[Any]) -> list[int]:
    return _schema_migrations(conn, "golang-migrate")


def _dbmate(conn: psycopg.Connection[Any]) -> list[int]:
    return _schema_migrations(conn, "dbmate")


def _sqitch(conn: psycopg.Connection[Any]) -> list[int]:
    return _named_changes(conn, "sqitch")


def _alembic(conn: psycopg.Connection[Any]) -> list[int]:
    return _named_changes(conn, "alembic")


_READERS: dict[str, Callable[[psycopg.Connection[Any]], list[int]]] = {
    "flyway": _flyway,
    "golang-migrate": _golang_migrate,
    "dbmate": _dbmate,
    "goose": _goose,
    "sqitch": _sqitch,
    "alembic": _alembic,
}
