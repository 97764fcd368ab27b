"""The history table: one row per version, in its own schema (default ``vpc_migrate``).

A version is the primary key, so an applied migration can never be recorded twice; a transactional
migration's row is written in the migration's own transaction, so both commit or neither does.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import sql

from .errors import BadInput
from .files import Migration

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# CI context recorded with every row, when present.
CI_COLUMNS = {
    "github_repository": "GITHUB_REPOSITORY",
    "github_run_id": "GITHUB_RUN_ID",
    "github_sha": "GITHUB_SHA",
    "github_actor": "GITHUB_ACTOR",
    "runner_name": "RUNNER_NAME",
}

_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    version           bigint PRIMARY KEY,
    name              text NOT NULL,
    checksum          text NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('sql', 'python')),
    transactional     boolean NOT NULL,
    state             text NOT NULL CHECK (state IN ('running', 'applied', 'failed', 'baseline')),
    started_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at       timestamptz,
    duration_ms       bigint,
    db_user           text NOT NULL DEFAULT current_user,
    error             text,
    github_repository text,
    github_run_id     text,
    github_sha        text,
    github_actor      text,
    runner_name       text
);
COMMENT ON TABLE {table} IS 'vpc-migrate history, format 1';
"""


@dataclass(frozen=True)
class Record:
    version: int
    name: str
    checksum: str
    kind: str
    transactional: bool
    state: str  # running | applied | failed | baseline
    started_at: datetime
    finished_at: datetime | None
    duration_ms: int | None
    error: str | None


class History:
    def __init__(self, schema: str, environ: Mapping[str, str]) -> None:
        if not _IDENTIFIER.match(schema):
            raise BadInput(f"history schema {schema!r} must be a lower-case SQL identifier")
        self.schema = schema
        self.table = sql.Identifier(schema, "history")
        self.ci = {column: environ[var] for column, var in CI_COLUMNS.items() if environ.get(var)}
        self._applied_prefix: str | None = None
        self._ci_literals = ""
        self._plain_quoting = False

    def ensure(self, conn: Any) -> None:
        """Create the schema and table; called only while holding the migration lock."""
        if not self.exists(conn):
            conn.execute(sql.SQL(_DDL).format(schema=sql.Identifier(self.schema), table=self.table))

    def exists(self, conn: Any) -> bool:
        row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{self.schema}.history"]).fetchone()
        return bool(row and row[0])

    def records(self, conn: Any) -> dict[int, Record]:
        if not self.exists(conn):
            return {}
        cur = conn.execute(
            sql.SQL(
                "SELECT version, name, checksum, kind, transactional, state, started_at, finished_at,"
                " duration_ms, error FROM {} ORDER BY version"
            ).format(self.table)
        )
        return {row[0]: Record(*row) for row in cur}

    def record_applied(self, conn: Any, migration: Migration, started_at: datetime, state: str = "applied") -> None:
        """Insert a finished row; inside the migration's transaction for transactional files."""
        self._insert(conn, migration, state=state, started_at=started_at, finished=True)

    def applied_sql(self, conn: Any, migration: Migration, started_at: datetime) -> str:
        """record_applied's row as one plain SQL statement, for a one-round-trip batch.

        Composed once per run with psycopg's quoting (table, columns, the CI values); per migration only
        the values vary: numbers, booleans, and text quoted for standard_conforming_strings, which the
        connection reports on (otherwise psycopg quotes each value).
        """
        if self._applied_prefix is None:
            columns = ["version", "name", "checksum", "kind", "transactional", "state", "started_at", *self.ci]
            self._applied_prefix = (
                sql.SQL("INSERT INTO {} ({}, finished_at, duration_ms) VALUES (")
                .format(self.table, sql.SQL(", ").join(map(sql.Identifier, columns)))
                .as_string(conn)
            )
            self._ci_literals = "".join(", " + sql.Literal(v).as_string(conn) for v in self.ci.values())
            self._plain_quoting = conn.info.parameter_status("standard_conforming_strings") == "on"
        m = migration

        def text(value: str) -> str:
            if self._plain_quoting and "\0" not in value:
                return "'" + value.replace("'", "''") + "'"
            return sql.Literal(value).as_string(conn)

        since = f"'{started_at.isoformat()}'::timestamptz"
        return (
            f"{self._applied_prefix}{int(m.version)}, {text(m.name)}, {text(m.checksum)}, {text(m.kind)}, "
            f"{'true' if m.settings.transactional else 'false'}, 'applied', {since}{self._ci_literals}, "
            f"clock_timestamp(), (extract(epoch FROM clock_timestamp() - {since}) * 1000)::bigint)"
        )

    def record_running(self, conn: Any, migration: Migration, started_at: datetime) -> None:
        """Non-transactional files: the row exists before the work starts, so a crash leaves a trace."""
        self._insert(conn, migration, state="running", started_at=started_at, finished=False)

    def mark(self, conn: Any, version: int, state: str, error: str | None = None) -> None:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET state = %s, error = %s, finished_at = clock_timestamp(),"
                " duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint"
                " WHERE version = %s"
            ).format(self.table),
            [state, error, version],
        )

    def delete(self, conn: Any, versions: list[int]) -> None:
        conn.execute(sql.SQL("DELETE FROM {} WHERE version = ANY(%s)").format(self.table), [versions])

    def update_checksum(self, conn: Any, migration: Migration) -> None:
        conn.execute(
            sql.SQL("UPDATE {} SET checksum = %s, name = %s WHERE version = %s").format(self.table),
            [migration.checksum, migration.name, migration.version],
        )

    def _insert(self, conn: Any, m: Migration, *, state: str, started_at: datetime, finished: bool) -> None:
        query = self._insert_query(m, state=state, finished=finished, literal=False, started_at=started_at)
        conn.execute(query, self._values(m, state, started_at) + ([started_at] if finished else []))

    def _values(self, m: Migration, state: str, started_at: datetime) -> list[Any]:
        return [m.version, m.name, m.checksum, m.kind, m.settings.transactional, state, started_at, *self.ci.values()]

    def _insert_query(
        self, m: Migration, *, state: str, finished: bool, literal: bool, started_at: datetime
    ) -> sql.Composed:
        columns = ["version", "name", "checksum", "kind", "transactional", "state", "started_at", *self.ci]
        values: list[sql.Composable] = (
            [sql.Literal(v) for v in self._values(m, state, started_at)]
            if literal
            else [sql.Placeholder()] * len(columns)
        )
        since = sql.Literal(started_at) if literal else sql.Placeholder()
        return sql.SQL("INSERT INTO {} ({}, finished_at, duration_ms) VALUES ({}, {})").format(
            self.table,
            sql.SQL(", ").join(map(sql.Identifier, columns)),
            sql.SQL(", ").join(values),
            sql.SQL("clock_timestamp(), (extract(epoch FROM clock_timestamp() - {}) * 1000)::bigint").format(since)
            if finished
            else sql.SQL("NULL, NULL"),
        )
