"""The benchmark harness in its smoke mode: it runs, and its numbers mean what the report says.

Timings are not asserted (that belongs to the benchmark itself); what is asserted is that every
tool either ran or says why it is missing, and that vpc-migrate really applied the workload.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fix_cli import REPO, clean_env


def test_smoke_run_reports_every_tool_and_the_floor(tmp_path: Path):
    out = tmp_path / "smoke.json"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--smoke",
            "--only",
            "throughput",
            "--only",
            "startup",
            "--only",
            "control-plane",
            "--only",
            "boot",
            "--out",
            str(out),
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(out.read_text())
    rows = report["throughput"]["5"]
    assert set(rows) == {"floor (one psql)", "vpc-migrate", "dbmate", "yoyo", "alembic", "sqitch"}
    for name, row in rows.items():
        assert "missing" in row or row["apply"]["median"] > 0, name
    assert rows["floor (one psql)"]["apply"]["ratio_to_floor"] == 1.0
    assert rows["vpc-migrate"]["apply"]["ratio_to_floor"] > 0
    assert report["startup"]["heavy_imports"]["--help"] == []  # --help loads no database or AWS library
    assert report["control_plane"]["launched"] == 5
    assert "#### Apply 5 migrations" in result.stdout
    boot = report["boot"]  # both boots ran to their runner online; what each took is the bench's to say
    assert set(boot["cold"]) == set(boot["baked"]) == {"InstallTime", "BootTime"}
    assert "Runner boot in simulation" in result.stdout
