"""Applying one migration safely on a live database.

Transactional files run in one transaction with their history row, under ``SET LOCAL lock_timeout``
and ``statement_timeout``: a DDL that cannot get its lock quickly gives up instead of making every
later query on the table queue behind it, and the whole migration is retried after a jittered,
growing pause. Every attempt is bounded; there is no final attempt without a timeout.

A transactional SQL file goes to the server in one round trip (runner/migrate/batch.py); Python files
and files outside a transaction run statement by statement.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import time
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
import psycopg.errors

from . import batch
from .connection import session_setup
from .durations import format_ms
from .errors import Interrupted, LockNotObtained, MigrationFailed
from .files import Migration, Statement
from .history import History
from .locking import BlockerWatch, Session
from .output import Reporter

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class Policy:
    """Run-wide lock-safety settings; a file's directives override the timeouts."""

    lock_timeout_ms: int = 1000
    statement_timeout_ms: int = 60_000  # transactional files; no-transaction files default to none
    lock_retries: int = 8
    retry_base_s: float = 0.5
    retry_cap_s: float = 10.0

    def backoff_s(self, attempt: int) -> float:
        """Pause after failed attempt ``attempt`` (1-based): exponential, capped, jittered."""
        ceiling = min(self.retry_cap_s, self.retry_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Outcome:
    migration: Migration
    duration_ms: float
    attempts: int


class Engine:
    def __init__(
        self,
        conn: psycopg.Connection[Any],
        lock_conn: psycopg.Connection[Any],
        history: History,
        policy: Policy,
        reporter: Reporter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.conn = conn
        self.lock_conn = lock_conn
        self.history = history
        self.policy = policy
        self.reporter = reporter
        self.sleep = sleep
        self.pid = conn.info.backend_pid
        self.watch = BlockerWatch(lock_conn, self.pid, reporter.info)
        self._statement: Statement | None = None
        self._position: int | None = None  # 0-based offset of an error in self._statement
        # The run's timeouts hold for the whole session; a file's directives override them with
        # SET LOCAL inside its transaction. After each migration the session is put back exactly so
        # (RESET ALL and RESET ROLE first): a SET search_path, SET ROLE or SET lock_timeout a file
        # committed never reaches the next file.
        self._clean_session = [
            "RESET ALL",
            "RESET ROLE",
            *session_setup(conn.info.server_version),
            f"SET lock_timeout = {policy.lock_timeout_ms}",
            f"SET statement_timeout = {policy.statement_timeout_ms}",
        ]
        conn.execute("; ".join(self._clean_session[2:]))

    def close(self) -> None:
        self.watch.close()

    def apply(self, migration: Migration) -> Outcome:
        if migration.settings.transactional:
            return self._apply_in_transaction(migration)
        return self._apply_outside_transaction(migration)

    # -- transactional ---------------------------------------------------------------------
    def _apply_in_transaction(self, m: Migration) -> Outcome:
        lock_ms = _pick(m.settings.lock_timeout_ms, self.policy.lock_timeout_ms)
        statement_ms = _pick(m.settings.statement_timeout_ms, self.policy.statement_timeout_ms)
        attempts = self.policy.lock_retries + 1
        for attempt in range(1, attempts + 1):
            started_at, t0 = datetime.now(UTC), time.perf_counter()
            overrides = (
                []
                if (lock_ms, statement_ms) == (self.policy.lock_timeout_ms, self.policy.statement_timeout_ms)
                else [
                    f"SET LOCAL lock_timeout = {lock_ms}",
                    f"SET LOCAL statement_timeout = {statement_ms}",
                ]
            )
            with self.watch.watching(_watch_interval(lock_ms), m.filename) as watch:
                try:
                    if m.kind == "sql":
                        self._run_batch(m, overrides, started_at)
                    else:
                        try:
                            with self.conn.transaction():
                                for setting in overrides:
                                    self.conn.execute(setting)
                                self._run_body(m)
                                self.history.record_applied(self.conn, m, started_at)
                        finally:
                            self._reset_session()
                    return Outcome(m, (time.perf_counter() - t0) * 1000, attempt)
                except psycopg.errors.LockNotAvailable as err:
                    lock_error = err
                except psycopg.Error as err:
                    raise self._failure(m, err) from None
                except (Interrupted, MigrationFailed):
                    raise
                except Exception as err:  # a Python migration's own exception
                    raise self._failure(m, err) from None
            blockers = _describe_sessions(watch.last_seen)
            if attempt == attempts:
                raise LockNotObtained(
                    f"{m.filename}: could not get its table locks within lock_timeout ({format_ms(lock_ms)}) "
                    f"in {attempts} attempts; rolled back. Blocked by: {blockers}",
                    hint=f"last error: {lock_error.diag.message_primary}. Retry when the blocking sessions are "
                    "done, or raise --lock-timeout / --lock-retries (application queries queue behind the "
                    "migration for up to the lock timeout on each attempt)",
                )
            pause = self.policy.backoff_s(attempt)
            self.reporter.info(
                f"  {m.filename}: lock timeout ({format_ms(lock_ms)}) on attempt {attempt}/{attempts}, "
                f"blocked by {blockers}; rolled back, retrying in {pause:.1f} s"
            )
            self.sleep(pause)
        raise AssertionError("unreachable: the loop returns or raises")

    # -- rehearsal ----------------------------------------------------------------------------
    def rehearse(self, migrations: list[Migration]) -> tuple[list[Migration], Migration | None]:
        """Run ``migrations`` in order in one transaction, then roll it back: what the server says about
        them, nothing changed. Each statement waits for a lock at most the lock timeout, once (no retry:
        the locks taken so far are held until the rollback). Stops before the first migration that cannot
        run inside a transaction, or is Python (which could commit): returned second; later ones may
        depend on it, so they are not rehearsed either."""
        rehearsed: list[Migration] = []
        self.conn.execute("BEGIN")
        try:
            for m in migrations:
                if not m.settings.transactional or m.kind != "sql":
                    return rehearsed, m
                lock_ms = _pick(m.settings.lock_timeout_ms, self.policy.lock_timeout_ms)
                statement_ms = _pick(m.settings.statement_timeout_ms, self.policy.statement_timeout_ms)
                pieces = [
                    batch.Piece(f"SET LOCAL lock_timeout = {lock_ms}"),
                    batch.Piece(f"SET LOCAL statement_timeout = {statement_ms}"),
                    *(batch.Piece(statement.text, statement) for statement in m.statements),
                ]
                with self.watch.watching(_watch_interval(lock_ms), m.filename) as watch:
                    self._statement, self._position = None, None
                    try:
                        batch.run(self.conn, pieces)
                    except batch.BatchError as err:
                        self._statement, self._position = err.piece.tag, err.position
                        if isinstance(err.error, psycopg.errors.LockNotAvailable):
                            raise LockNotObtained(
                                f"{m.filename}: could not get its table locks within lock_timeout "
                                f"({format_ms(lock_ms)}); the rehearsal stopped, rolled back. Blocked by: "
                                f"{_describe_sessions(watch.last_seen)}",
                                hint="a rehearsal does not retry: run it when the blocking sessions are done",
                            ) from None
                        raise self._failure(m, err.error) from None
                    finally:
                        for notice in _drain_notices(self.conn):
                            self.reporter.info(f"  {notice}")
                rehearsed.append(m)
            return rehearsed, None
        finally:
            self._rollback()
            self._reset_session()

    # -- outside a transaction ------------------------------------------------------------
    def _apply_outside_transaction(self, m: Migration) -> Outcome:
        lock_ms = _pick(m.settings.lock_timeout_ms, self.policy.lock_timeout_ms)
        statement_ms = _pick(m.settings.statement_timeout_ms, 0)  # CIC and VALIDATE need time
        started_at, t0 = datetime.now(UTC), time.perf_counter()
        invalid_before = set(self._invalid_indexes())
        self.history.record_running(self.conn, m, started_at)
        try:
            self.conn.execute(f"SET lock_timeout = {lock_ms}; SET statement_timeout = {statement_ms}")
            with self.watch.watching(_watch_interval(lock_ms), m.filename):
                self._run_body(m)
        except Interrupted:
            self._mark_failed(m, "interrupted by a stop signal", self._new_invalid(invalid_before))
            raise
        except Exception as err:
            failure = self._failure(m, err)
            left = self._new_invalid(invalid_before)
            self._mark_failed(m, failure.message, left)
            if left:
                failure.hint = (
                    f"it left invalid index(es) {', '.join(left)} behind (pg_index.indisvalid = false): drop them "
                    "(DROP INDEX CONCURRENTLY ...), fix the cause, then `vpc-migrate repair` and `up` again"
                )
            else:
                failure.hint = (
                    "this file ran outside a transaction, so statements before the failing one stay "
                    "applied: fix the database by hand, then `vpc-migrate repair` and `up` again"
                )
            raise failure from None
        finally:
            self._reset_session()
        self.history.mark(self.conn, m.version, "applied")
        return Outcome(m, (time.perf_counter() - t0) * 1000, 1)

    def _mark_failed(self, m: Migration, note: str, invalid: list[str]) -> None:
        if invalid:
            note += f"\ninvalid indexes left behind: {', '.join(invalid)}"
        try:
            if self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                self.conn.rollback()
            self.history.mark(self.conn, m.version, "failed", error=note)
        except psycopg.Error:
            pass  # connection gone: the row stays 'running', which `up` treats as failed too

    def _reset_session(self) -> None:
        try:
            if not self.conn.closed and self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
                self.conn.execute("; ".join(self._clean_session))
        except psycopg.Error:
            pass

    def _new_invalid(self, before: set[str]) -> list[str]:
        return sorted(set(self._invalid_indexes()) - before)

    def _invalid_indexes(self) -> list[str]:
        try:
            cur = self.conn.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_index i"
                " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE NOT i.indisvalid"
            )
            return [row[0] for row in cur]
        except psycopg.Error:
            return []

    # -- running a file ----------------------------------------------------------------------
    def _run_batch(self, m: Migration, overrides: list[str], started_at: datetime) -> None:
        """The whole transaction in one round trip; an error is tied to its statement and rolled back."""
        self._statement, self._position = None, None
        # A deferred constraint fails at COMMIT: the last statement is the nearest place to point at.
        pieces = [
            batch.Piece("BEGIN"),
            *(batch.Piece(text) for text in overrides),
            *(batch.Piece(statement.text, statement) for statement in m.statements),
            batch.Piece(self.history.applied_sql(self.conn, m, started_at)),
            batch.Piece("COMMIT", m.statements[-1]),
            *(batch.Piece(text) for text in self._clean_session),
        ]
        try:
            batch.run(self.conn, pieces)
        except batch.BatchError as err:
            self._statement, self._position = err.piece.tag, err.position
            self._rollback()
            raise err.error from None
        except BaseException:  # interrupted: psycopg has cancelled the query on the server
            self._rollback()
            raise
        finally:
            for notice in _drain_notices(self.conn):
                self.reporter.info(f"  {notice}")

    def _rollback(self) -> None:
        if not self.conn.closed and self.conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self.conn.execute("ROLLBACK")

    def _run_body(self, m: Migration) -> None:
        self._statement, self._position = None, None
        if m.kind == "python":
            with self.reporter.gate_stdio():  # what the migration prints may carry database content
                _load_python(m).migrate(self.conn)
            return
        for statement in m.statements:
            self._statement = statement
            try:
                # No parameters: psycopg sends the text as is, '%' included.
                self.conn.execute(statement.text)
            except psycopg.Error as err:
                position = err.diag.statement_position
                self._position = int(position) - 1 if position else None
                raise
            finally:
                for notice in _drain_notices(self.conn):
                    self.reporter.info(f"  {notice}")

    def _failure(self, m: Migration, err: BaseException) -> MigrationFailed:
        line = None
        if isinstance(err, psycopg.Error):
            diag = err.diag
            if m.kind == "sql" and self._statement is not None:
                line = self._statement.line
                if self._position is not None:
                    line = m.line_of(self._statement.offset + self._position)
            else:
                line = _python_line(m, err)
            message = diag.message_primary or str(err).strip()
            extra = [
                f"{label}: {value}"
                for label, value in (
                    ("detail", diag.message_detail),
                    ("hint", diag.message_hint),
                    ("context", diag.context),
                )
                if value
            ]
            text = f"{m.filename}:{line or 1}: {message} (SQLSTATE {err.sqlstate})" + "".join(f"\n  {e}" for e in extra)
            return MigrationFailed(text, path=str(m.path), line=line, hint=_hint_for(err))
        line = _python_line(m, err)
        return MigrationFailed(f"{m.filename}:{line or 1}: {type(err).__name__}: {err}", path=str(m.path), line=line)


def _pick(value: int | None, default: int) -> int:
    return default if value is None else value


def _watch_interval(lock_ms: int) -> float:
    return lock_ms / 2000 if lock_ms else 1.0


def _describe_sessions(sessions: list[Session]) -> str:
    return "; ".join(s.describe() for s in sessions) or "sessions that were gone before they could be named"


def _hint_for(err: psycopg.Error) -> str | None:
    if isinstance(err, psycopg.errors.QueryCanceled):
        return (
            "statement_timeout reached (or the query was cancelled); for a long statement set it for "
            "this file: '-- vpc-migrate: statement-timeout=30min' (or =0 for none)"
        )
    if isinstance(err, psycopg.errors.ActiveSqlTransaction):
        return "put '-- vpc-migrate: no-transaction' on the first line of the file"
    return None


def _drain_notices(conn: Any) -> list[str]:
    notices: list[str] = getattr(conn, "_vpc_notices", [])
    conn._vpc_notices = []
    return notices


def collect_notices(conn: Any) -> None:
    """Keep server NOTICEs so they are printed after each statement (e.g. 'already exists, skipping')."""
    conn._vpc_notices = []
    conn.add_notice_handler(lambda diag: conn._vpc_notices.append(f"{diag.severity}: {diag.message_primary}"))


def _load_python(m: Migration) -> Any:
    module_name = "vpc_migrate_migration_" + "".join(c if c.isalnum() else "_" for c in m.version.key)
    spec = importlib.util.spec_from_file_location(module_name, m.path)
    if spec is None or spec.loader is None:
        raise MigrationFailed(f"{m.filename}: cannot be loaded as Python", path=str(m.path), line=None)
    module = importlib.util.module_from_spec(spec)
    sys.modules.pop(module_name, None)  # a retry re-executes the file from scratch
    spec.loader.exec_module(module)
    return module


def _python_line(m: Migration, err: BaseException) -> int | None:
    lines = [frame.lineno for frame in traceback.extract_tb(err.__traceback__) if frame.filename == str(m.path)]
    return lines[-1] if lines else None
