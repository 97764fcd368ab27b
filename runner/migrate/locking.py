"""The migration lock, and finding who blocks whom.

The lock is a session advisory lock taken by polling ``pg_try_advisory_lock`` on its own autocommit
connection: a session waiting in a blocking ``pg_advisory_lock`` holds a snapshot, and a holder
running CREATE INDEX CONCURRENTLY waits for that snapshot — an undetected deadlock. An idle
autocommit connection holds no snapshot, so the holder's CIC never waits for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import LockNotObtained

REPORT_EVERY_S = 10.0


def lock_key(schema: str) -> int:
    """One lock per history schema: apps sharing a database with separate histories don't queue."""
    digest = hashlib.sha256(f"vpc-migrate:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@dataclass(frozen=True)
class Session:
    pid: int
    application_name: str
    usename: str | None
    client_addr: str | None
    state: str | None
    since: datetime | None
    query: str | None

    def describe(self) -> str:
        who = f"pid {self.pid} ({self.application_name or 'no application_name'}"
        if self.usename:
            who += f", user {self.usename}"
        if self.client_addr:
            who += f", from {self.client_addr}"
        who += ")"
        if self.state:
            who += f" {self.state}"
        if self.since:
            who += f" since {self.since:%Y-%m-%d %H:%M:%S %Z}"
        if self.query and self.state != "idle":
            who += f": {' '.join(self.query.split())[:120]}"
        return who


_SESSION_COLUMNS = (
    "a.pid, a.application_name, a.usename, host(a.client_addr), a.state,"
    " coalesce(a.xact_start, a.backend_start), a.query"
)


class AdvisoryLock:
    def __init__(self, conn: Any, key: int) -> None:
        self.conn = conn
        self.key = key
        self.held = False

    def acquire(self, wait_s: float, report: Callable[[str], None]) -> float:
        """Poll until the lock is ours or ``wait_s`` has passed; returns the seconds waited."""
        start = time.monotonic()
        delay, next_report = 0.05, 0.0
        while True:
            if self.conn.execute("SELECT pg_try_advisory_lock(%s)", [self.key]).fetchone()[0]:
                self.held = True
                return time.monotonic() - start
            waited = time.monotonic() - start
            holders = self.holders()
            if waited >= wait_s:
                who = "; ".join(h.describe() for h in holders) or "a session that has since left"
                raise LockNotObtained(
                    f"another migration held the lock for all of --lock-wait ({wait_s:g} s): {who}",
                    hint="it may still be running; a crashed runner's lock is released when its session ends",
                )
            if waited >= next_report:
                who = "; ".join(h.describe() for h in holders) or "(released just now)"
                report(f"waiting for the migration lock, held by {who}")
                next_report = waited + REPORT_EVERY_S
            time.sleep(min(delay, max(0.0, wait_s - waited)) * random.uniform(0.8, 1.0))
            delay = min(delay * 1.5, 1.0)

    def release(self) -> None:
        if self.held and not self.conn.closed:
            self.conn.execute("SELECT pg_advisory_unlock(%s)", [self.key])
        self.held = False

    def holders(self) -> list[Session]:
        # pg_locks shows a bigint advisory key as classid = high 32 bits, objid = low 32 bits, objsubid 1.
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        cur = self.conn.execute(
            f"SELECT {_SESSION_COLUMNS} FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
            " AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            [unsigned >> 32, unsigned & 0xFFFFFFFF],
        )
        return [Session(*row) for row in cur]


def blocking_sessions(conn: Any, pid: int) -> list[Session]:
    cur = conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM pg_stat_activity a WHERE a.pid = ANY(pg_blocking_pids(%s))", [pid]
    )
    return [Session(*row) for row in cur]


SLOW_REPORT_S = (10.0, 30.0, 60.0, 120.0, 300.0)  # then every 5 minutes


class BlockerWatch:
    """While a migration runs, remember who blocks it, so a lock timeout can name the culprits.

    Polls on the lock connection, which is idle while migrations run: by the time the migration's
    statement has failed with a lock timeout, the wait (and pg_blocking_pids) is already gone. One thread
    for the whole run, and it queries only once a migration has run for an interval, so the usual
    migration of a few milliseconds costs no query and no thread start.
    """

    def __init__(self, conn: Any, pid: int, on_slow: Callable[[str], None] | None = None) -> None:
        self.conn, self.pid, self.on_slow = conn, pid, on_slow
        self.last_seen: list[Session] = []
        self._interval_s = 1.0
        self._label, self._since, self._next_report = "", 0.0, SLOW_REPORT_S[0]
        self._active = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, interval_s: float, label: str = "") -> Iterator[BlockerWatch]:
        self.last_seen, self._interval_s = [], max(min(interval_s, SLOW_REPORT_S[0]), 0.05)
        self._label, self._since, self._next_report = label, time.monotonic(), SLOW_REPORT_S[0]
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="blocker-watch", daemon=True)
            self._thread.start()
        self._active.set()
        try:
            yield self
        finally:
            self._active.clear()

    def close(self) -> None:
        self._stop.set()
        self._active.set()  # wake the thread so it sees the stop
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._active.wait()
            if self._stop.wait(self._interval_s) or not self._active.is_set():
                continue
            try:
                found = blocking_sessions(self.conn, self.pid)
            except Exception:  # diagnostics only: never let the watch break a migration
                return
            if found:
                self.last_seen = found
            self._report_if_slow(found)

    def _report_if_slow(self, blockers: list[Session]) -> None:
        """A long migration says it is still running (and who blocks it), so a log is never silent."""
        elapsed = time.monotonic() - self._since
        if self.on_slow is None or not self._active.is_set() or elapsed < self._next_report:
            return
        waiting = f"; waiting for {'; '.join(b.describe() for b in blockers)}" if blockers else ""
        self.on_slow(f"  {self._label}: still running after {elapsed:.0f} s{waiting}")
        later = [s for s in SLOW_REPORT_S if s > elapsed]
        self._next_report = later[0] if later else elapsed + SLOW_REPORT_S[-1]
