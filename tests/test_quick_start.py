"""The README's quick start, run as a new user runs it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def base_python_dir() -> str:
    """The folder of the python3 that built .venv: try-local then finds the environment up to date."""
    config = dict(
        line.split(" = ", 1) for line in (REPO / ".venv" / "pyvenv.cfg").read_text().splitlines() if " = " in line
    )
    return config["home"]


def test_try_local_applies_the_examples_then_has_nothing_to_do():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL", "VIRTUAL_ENV", "GITHUB_"))}
    env["PATH"] = f"{base_python_dir()}:/usr/local/bin:/usr/bin:/bin"
    result = subprocess.run(
        [str(REPO / "scripts" / "try-local")], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    assert "throwaway PostgreSQL at postgresql://" in out
    assert "6 applied, now at version 0006" in out
    assert "nothing to apply: the database is up to date at version 0006" in out
    assert "no drift: 6 applied, 0 pending" in out
    assert "ada@example.com" in out
