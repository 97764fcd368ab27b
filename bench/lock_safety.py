"""Scenario 2: a migration that needs ACCESS EXCLUSIVE on a hot table while a long transaction blocks it.

Application sessions keep querying the table and timing every query. A blocker holds a conflicting
lock for a few seconds; the migration starts meanwhile. A tool that waits for the lock without a
timeout makes every later application query queue behind it for as long as the blocker lasts;
vpc-migrate gives up after its lock timeout, lets the queue drain, and retries.
"""

from __future__ import annotations

import random
import statistics
import subprocess
import threading
import time
from typing import Any

import psycopg
from tools import Floor, Tool, VpcMigrate, all_tools
from workload import Migration

MIGRATION = [Migration(1, "widen_hot", ("ALTER TABLE hot ADD COLUMN added integer",))]
APP_SESSIONS = 4


class PlainPsql(Floor):
    """The statement as a person would type it in psql: no lock_timeout."""


class VpcMigrateFastLock(VpcMigrate):
    """vpc-migrate with a tighter lock timeout, for hot tables."""

    def apply(self, url: str) -> list[str]:
        return [*super().apply(url), "--lock-timeout", "200ms", "--lock-retries", "30"]


def _load(url: str, stop: threading.Event, samples: list[tuple[float, float]], deadline: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        rng = random.Random()
        while not stop.is_set() and time.monotonic() < deadline:
            key = rng.randint(1, 10_000)
            started = time.monotonic()
            if rng.random() < 0.5:
                conn.execute("SELECT v FROM hot WHERE id = %s", [key]).fetchone()
            else:
                conn.execute("UPDATE hot SET v = v + 1 WHERE id = %s", [key])
            samples.append((started, time.monotonic() - started))


def _wait_for_lock_wait(url: str, deadline: float) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%ALTER TABLE hot%'"
                " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            ).fetchone()
            if waiting and waiting[0]:
                return
            time.sleep(0.01)
    raise RuntimeError("the migration never queued for its lock")


def one_run(bench: Any, tool: Tool, hold_s: float) -> dict[str, float]:
    url = bench.fresh_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE hot (id integer PRIMARY KEY, v integer NOT NULL DEFAULT 0)")
        conn.execute("INSERT INTO hot (id) SELECT generate_series(1, 10000)")
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    deadline = time.monotonic() + hold_s + 120
    threads = [threading.Thread(target=_load, args=(url, stop, samples, deadline)) for _ in range(APP_SESSIONS)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    blocker = psycopg.connect(url)
    blocker.execute("SELECT count(*) FROM hot")  # ACCESS SHARE held by an open transaction
    env = {k: v for k, v in __import__("os").environ.items() if k != "PYTHONPATH"} | tool.env | tool.migration_env(url)
    started = time.monotonic()
    migration = subprocess.Popen(
        tool.apply(url), env=env, cwd=tool.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    # Fair to every tool whatever its start-up time: the blocker lasts hold_s from the moment the
    # tool's ALTER is queued behind it.
    _wait_for_lock_wait(url, deadline=time.monotonic() + 60)
    time.sleep(hold_s)
    blocker.commit()
    blocker.close()
    _, err = migration.communicate(timeout=120)
    finished = time.monotonic()
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    if migration.returncode != 0:
        raise RuntimeError(f"{tool.name} migration failed: {err[-800:]}")
    during = sorted(latency for start, latency in samples if started <= start <= finished)
    return {
        "max_ms": during[-1] * 1000,
        "p99_ms": during[int(len(during) * 0.99) - 1] * 1000,
        "queries": len(during),
        "migration_s": finished - started,
    }


def lock_safety(bench: Any, *, runs: int, smoke: bool) -> dict[str, Any]:
    hold_s = 1.5 if smoke else 4.0
    runs = 1 if smoke else min(runs, 3)
    base = bench.work / "lock-safety"
    tools = [t for t in all_tools(base) if not t.name.startswith("floor")]
    tools.insert(0, PlainPsql("psql (typed by hand)", base / "psql"))
    tools.insert(2, VpcMigrateFastLock("vpc-migrate --lock-timeout 200ms", base / "vpc-fast", dict(tools[1].env)))
    results: dict[str, Any] = {"blocker_holds_s": hold_s, "app_sessions": APP_SESSIONS}
    for tool in tools:
        if reason := tool.missing():
            results[tool.name] = {"missing": reason}
            continue
        tool.prepare(MIGRATION)
        rows = [one_run(bench, tool, hold_s) for _ in range(runs)]
        results[tool.name] = {
            key: {
                "median": statistics.median(r[key] for r in rows),
                "min": min(r[key] for r in rows),
                "max": max(r[key] for r in rows),
            }
            for key in ("max_ms", "p99_ms", "queries", "migration_s")
        }
        print(
            f"  lock safety {tool.name}: app max {results[tool.name]['max_ms']['median']:.0f} ms",
            file=__import__("sys").stderr,
        )
    return results
