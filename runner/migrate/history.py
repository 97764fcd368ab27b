"""The history table: one row per version, in its own schema (default ``vpc_migrate``).

A version is the primary key, so an applied migration can never be recorded twice; a transactional
migration's row is written in the migration's own transaction, so both commit or neither does. A Flyway
repeatable has one row too (``R__<description>``), rewritten each time it runs again.

Format 2 keeps the version as text (``12``, ``1.2``, ``R__views``); format 1 kept a bigint. A format-1
table is read as it is and written to as it is until a version that is not a whole number must be written:
then it is converted in place (``ALTER COLUMN ... TYPE text``, its lock wait bounded by the lock timeout).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

import psycopg
import psycopg.errors
from psycopg import sql

from .errors import BadInput, LockNotObtained, MigrateError
from .files import Migration, Version

FORMAT = 2  # the history table's format; its comment says which (none: format 1)
_FORMAT_MARK = "vpc-migrate history, format "
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
    version           text PRIMARY KEY,
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
COMMENT ON TABLE {table} IS 'vpc-migrate history, format 2';
"""


class Record(NamedTuple):
    """One history row (a tuple: a no-op run reads thousands)."""

    version: Version
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

    def ensure(self, conn: Any, versions: Iterable[Version] = (), lock_timeout_ms: int = 1000) -> None:
        """Create the schema and table; only under the migration lock. A format-1 table (bigint versions) is
        converted to format 2 only when one of ``versions``, about to be written, is not a whole number
        (Flyway's 1.2, R__views): until then it stays as it is, readable by older vpc-migrate releases."""
        shape = self._shape(conn)
        if shape is None:
            conn.execute(sql.SQL(_DDL).format(schema=sql.Identifier(self.schema), table=self.table))
        elif shape[0] != "text" and any(v.repeatable or len(v.parts) > 1 for v in versions):
            self._convert(conn, lock_timeout_ms)

    def _convert(self, conn: Any, lock_timeout_ms: int) -> None:
        where = f"{self.schema}.history"
        statement = sql.SQL("ALTER TABLE {} ALTER COLUMN version TYPE text").format(self.table)
        comment = sql.SQL("COMMENT ON TABLE {} IS {}").format(self.table, sql.Literal(f"{_FORMAT_MARK}{FORMAT}"))
        try:
            with conn.transaction():  # the ALTER's lock wait is bounded, as every migration's is
                conn.execute(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}")
                conn.execute(statement)
                conn.execute(comment)
        except psycopg.errors.LockNotAvailable:
            raise LockNotObtained(
                f"could not convert {where} to format 2 (text versions, for Flyway's dotted versions and "
                f"repeatables): another session held it past lock_timeout ({lock_timeout_ms} ms)",
                hint="run again when the sessions reading it are done (`vpc-migrate doctor` shows who holds locks)",
            ) from None
        except psycopg.Error as err:
            reason = err.diag.message_primary or type(err).__name__
            raise MigrateError(
                f"could not convert {where} to format 2 (text versions, needed for Flyway's dotted versions and "
                f"repeatables): {reason} (SQLSTATE {err.sqlstate})",
                hint=f"have the table's owner run: ALTER TABLE {where} ALTER COLUMN version TYPE text; COMMENT ON "
                f"TABLE {where} IS '{_FORMAT_MARK}{FORMAT}' (a view on the table: drop it first, create it after)",
            ) from None

    def exists(self, conn: Any) -> bool:
        return self._shape(conn) is not None

    def _shape(self, conn: Any) -> tuple[str, int] | None:
        """The version column's type (text in format 2, bigint in format 1) and the table's format; None
        when there is no table. A table from a newer vpc-migrate is refused: its rows may mean more."""
        row = conn.execute(
            "SELECT format_type(atttypid, NULL), obj_description(attrelid, 'pg_class') FROM pg_attribute"
            " WHERE attrelid = to_regclass(%s) AND attname = 'version' AND NOT attisdropped",
            [f"{self.schema}.history"],
        ).fetchone()
        if row is None:
            return None
        mark = re.fullmatch(re.escape(_FORMAT_MARK) + r"(\d+)", str(row[1] or ""))
        table_format = int(mark[1]) if mark else 1
        if table_format > FORMAT:
            raise BadInput(
                f"{self.schema}.history is in format {table_format}, written by a newer vpc-migrate; this one "
                f"reads formats up to {FORMAT}",
                hint="use the vpc-migrate release that wrote it, or a newer one",
            )
        return str(row[0]), table_format

    def records(self, conn: Any) -> dict[Version, Record]:
        if not self.exists(conn):
            return {}
        cur = conn.execute(
            sql.SQL(
                "SELECT version::text, name, checksum, kind, transactional, state, started_at, finished_at,"
                " duration_ms, error FROM {}"
            ).format(self.table)
        )
        return {(version := Version.parse(row[0])): Record(version, *row[1:]) for row in cur}

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
            f"{self._applied_prefix}{text(m.version.key)}, {text(m.name)}, {text(m.checksum)}, {text(m.kind)}, "
            f"{'true' if m.settings.transactional else 'false'}, 'applied', {since}{self._ci_literals}, "
            f"clock_timestamp(), (extract(epoch FROM clock_timestamp() - {since}) * 1000)::bigint)"
            + (self._rewrite_row if m.version.repeatable else "")
        )

    def record_running(self, conn: Any, migration: Migration, started_at: datetime) -> None:
        """Non-transactional files: the row exists before the work starts, so a crash leaves a trace."""
        self._insert(conn, migration, state="running", started_at=started_at, finished=False)

    # A repeatable that runs again takes over its row: Flyway keeps every run, vpc-migrate the last.
    _rewrite_row = (
        " ON CONFLICT (version) DO UPDATE SET name = excluded.name, checksum = excluded.checksum,"
        " kind = excluded.kind, transactional = excluded.transactional, state = excluded.state,"
        " started_at = excluded.started_at, finished_at = excluded.finished_at,"
        " duration_ms = excluded.duration_ms, db_user = excluded.db_user, error = NULL"
        + "".join(f", {column} = excluded.{column}" for column in CI_COLUMNS)
    )

    def mark(self, conn: Any, version: Version, state: str, error: str | None = None) -> None:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET state = %s, error = %s, finished_at = clock_timestamp(),"
                " duration_ms = (extract(epoch FROM clock_timestamp() - started_at) * 1000)::bigint"
                " WHERE version::text = %s"
            ).format(self.table),
            [state, error, version.key],
        )

    def delete(self, conn: Any, versions: list[Version]) -> None:
        keys = [version.key for version in versions]
        conn.execute(sql.SQL("DELETE FROM {} WHERE version::text = ANY(%s)").format(self.table), [keys])

    def update_checksum(self, conn: Any, migration: Migration) -> None:
        conn.execute(
            sql.SQL("UPDATE {} SET checksum = %s, name = %s WHERE version::text = %s").format(self.table),
            [migration.checksum, migration.name, migration.version.key],
        )

    def _insert(self, conn: Any, m: Migration, *, state: str, started_at: datetime, finished: bool) -> None:
        query = self._insert_query(m, state=state, finished=finished, literal=False, started_at=started_at)
        conn.execute(query, self._values(m, state, started_at) + ([started_at] if finished else []))

    def _values(self, m: Migration, state: str, started_at: datetime) -> list[Any]:
        return [
            m.version.key,
            m.name,
            m.checksum,
            m.kind,
            m.settings.transactional,
            state,
            started_at,
            *self.ci.values(),
        ]

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
        ) + sql.SQL(self._rewrite_row if m.version.repeatable else "")
