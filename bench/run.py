"""Benchmarks: vpc-migrate against the tools users would pick instead, and against the floor.

    python bench/run.py                  # everything (several minutes); writes bench/results/latest.json
    python bench/run.py --smoke          # seconds: tiny sizes, one run, for CI
    python bench/run.py --only throughput --sizes 100 --large '' --runs 5

Starts its own PostgreSQL (scripts/throwaway_postgres.py). Times are wall clock of whole commands,
each on a fresh database, reported as median (min..max) over --runs and as a ratio to the floor:
one psql process running the same statements with the same per-migration transaction and history
insert. Tools that are not installed are reported as missing (bench/setup installs them).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(BENCH), str(REPO / "scripts"), str(REPO)]

import psycopg  # noqa: E402
from throwaway_postgres import ThrowawayPostgres  # noqa: E402
from tools import Tool, all_tools, installed_vpc_migrate  # noqa: E402
from workload import generate  # noqa: E402

_databases = itertools.count()
LARGE_TOOLS = {"vpc-migrate", "dbmate"}


class Bench:
    def __init__(self, server: ThrowawayPostgres, work: Path) -> None:
        self.server = server
        self.work = work

    def fresh_database(self) -> str:
        name = f"bench_{next(_databases)}"
        with psycopg.connect(self.server.url(tcp=False), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.server.url(name)

    def timed(self, tool: Tool, command: list[str], url: str) -> float:
        # Without PYTHONPATH: the installed vpc-migrate must not pick up the repository's sources.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | tool.env | tool.migration_env(url)
        started = time.perf_counter()
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=False, cwd=tool.workdir)
        elapsed = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"{tool.name}: {' '.join(command[:3])}... failed:\n{result.stderr[-1500:]}")
        return elapsed


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": len(samples)}


def throughput(bench: Bench, sizes: list[int], runs: int, only: set[str] | None = None) -> dict[str, Any]:
    """Scenario 1: apply N migrations; then a no-op run and `status` with everything applied."""
    results: dict[str, Any] = {}
    for size in sizes:
        migrations = generate(size)
        tools = [
            t
            for t in all_tools(bench.work / f"throughput-{size}")
            if not only or t.name in only or t.name.startswith("floor")
        ]
        rows: dict[str, Any] = {}
        for tool in tools:
            if reason := tool.missing():
                rows[tool.name] = {"missing": reason}
                continue
            tool.prepare(migrations)
            apply, noop, status = [], [], []
            for _ in range(runs):
                url = bench.fresh_database()
                apply.append(bench.timed(tool, tool.apply(url), url))
                noop.append(bench.timed(tool, tool.noop(url), url))
                if (command := tool.status(url)) is not None:
                    status.append(bench.timed(tool, command, url))
            rows[tool.name] = {
                "apply": summary(apply),
                "noop": summary(noop),
                "status": summary(status) if status else None,
            }
            print(f"  N={size} {tool.name}: apply {rows[tool.name]['apply']['median']:.2f} s", file=sys.stderr)
        floor = rows["floor (one psql)"]
        for row in rows.values():
            for key in ("apply", "noop", "status"):
                if row.get(key) and floor.get(key):
                    row[key]["ratio_to_floor"] = row[key]["median"] / floor[key]["median"]
        results[str(size)] = rows
    return results


def compile_bytecode() -> None:
    """Byte-compile the Python tools and their packages, as `pip install` does on a runner.

    Without it, a machine with PYTHONDONTWRITEBYTECODE set (or a read-only install) compiles every
    module on every start, and the Python tools would be timed compiling themselves.
    """
    import compileall
    import sysconfig

    for folder in (REPO / "runner", Path(sysconfig.get_paths()["purelib"])):
        compileall.compile_dir(folder, quiet=2, workers=0)


def machine() -> dict[str, Any]:
    def version(command: list[str]) -> str:
        try:
            out = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"

    from tools import TOOLS

    dbmate = TOOLS / "node_modules" / ".bin" / "dbmate"
    return {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgres": version([str(ThrowawayPostgres(Path("/nonexistent")).bindir / "postgres"), "--version"]),
        "psql": version(["psql", "--version"]),
        "vpc-migrate": version([str(installed_vpc_migrate()), "--version"]),
        "dbmate": version([str(dbmate) if dbmate.exists() else "dbmate", "--version"]),
        "yoyo": version([sys.executable, "-c", "import importlib.metadata as m; print(m.version('yoyo-migrations'))"]),
        "alembic": version(["alembic", "--version"]),
        "sqitch": version(["sqitch", "--version"]),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and one run (for CI)")
    parser.add_argument(
        "--only", choices=["throughput", "lock-safety", "startup", "control-plane", "boot"], action="append"
    )
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument(
        "--large",
        default="5000",
        help="larger sizes, run for vpc-migrate, dbmate and the floor only (the others take minutes each)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tools", help="comma-separated tool names for throughput (the floor always runs)")
    parser.add_argument("--out", type=Path, default=BENCH / "results" / "latest.json")
    args = parser.parse_args()
    sizes = [5] if args.smoke else [int(s) for s in args.sizes.split(",")]
    large = [] if args.smoke or not args.large else [int(s) for s in args.large.split(",")]
    runs = 1 if args.smoke else args.runs
    wanted = set(args.only or ["throughput", "lock-safety", "startup", "control-plane", "boot"])

    from boot import boot
    from control_plane import control_plane
    from lock_safety import lock_safety
    from startup import startup

    compile_bytecode()
    base = Path(tempfile.mkdtemp(prefix="vpc-migrate-bench-"))
    base.chmod(0o755)
    server = ThrowawayPostgres(base / "pg", settings={"max_connections": "300"}).start()
    report: dict[str, Any] = {"machine": machine(), "smoke": args.smoke}
    try:
        bench = Bench(server, base / "work")
        if "throughput" in wanted:
            only = set(args.tools.split(",")) if args.tools else None
            report["throughput"] = throughput(bench, sizes, runs, only)
            for size in large:
                report["throughput"].update(throughput(bench, [size], runs, (only or LARGE_TOOLS) & LARGE_TOOLS))
        if "lock-safety" in wanted:
            report["lock_safety"] = lock_safety(bench, runs=runs, smoke=args.smoke)
        if "startup" in wanted:
            report["startup"] = startup(bench, runs=3 if args.smoke else 10)
        if "control-plane" in wanted:
            report["control_plane"] = control_plane(jobs=5 if args.smoke else 50, runs=runs)
        if "boot" in wanted:
            report["boot"] = boot(runs=runs, real_package=not args.smoke)
    finally:
        server.stop()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    from report import markdown

    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
