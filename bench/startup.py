"""Scenario 3: start-up cost. `vpc-migrate --help` and a no-op `up` against a bare `python -c pass`,
and whether heavy modules (boto3) load on paths that do not need them."""

from __future__ import annotations

import statistics
import subprocess
import time
from typing import Any

from tools import VpcMigrate, installed_vpc_migrate
from workload import generate


def _time(command: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, env=env, capture_output=True, check=True)
        samples.append(time.perf_counter() - started)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples), "runs": runs}


def _imports(command_args: list[str], env: dict[str, str]) -> list[str]:
    out = subprocess.run(
        [
            str(installed_vpc_migrate().with_name("python")),
            "-X",
            "importtime",
            str(installed_vpc_migrate()),
            *command_args,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    ).stderr
    names = {line.split("|")[-1].strip().split(".")[0] for line in out.splitlines() if line.startswith("import time:")}
    return sorted(n for n in names if n in {"boto3", "botocore", "pglast", "psycopg", "cryptography"})


def startup(bench: Any, *, runs: int) -> dict[str, Any]:
    import os

    tool = VpcMigrate("vpc-migrate", bench.work / "startup")
    tool.prepare(generate(1))
    url = bench.fresh_database()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | tool.env
    subprocess.run(tool.apply(url), env=env, capture_output=True, check=True)
    floor = _time([str(installed_vpc_migrate().with_name("python")), "-c", "pass"], runs, env)
    rows = {
        "python -c pass": floor,
        "vpc-migrate --help": _time([str(installed_vpc_migrate()), "--help"], runs, env),
        "vpc-migrate up (no-op)": _time(tool.apply(url), runs, env),
    }
    for row in rows.values():
        row["ratio_to_floor"] = row["median"] / floor["median"]
    return {
        "timings": rows,
        "heavy_imports": {
            "--help": _imports(["--help"], env),
            "up (no-op, password auth)": _imports(tool.apply(url)[1:], env),
        },
    }
