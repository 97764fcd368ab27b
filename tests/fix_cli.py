"""Pytest plugin: run ``vpc-migrate`` as a real subprocess, and a migrations folder to feed it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Variables from the machine running the tests that would change vpc-migrate's behaviour.
_LEAKY_PREFIXES = ("PG", "GITHUB_", "AWS_", "VPC_MIGRATE_", "RUNNER_")


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_LEAKY_PREFIXES) and k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(REPO)
    env.update(extra or {})
    return env


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def output(self) -> str:
        return self.out + self.err


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "runner.migrate", *args]


def run_cli(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 120) -> Result:
    proc = subprocess.run(
        cli_command(*args), env=clean_env(env), cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def start_cli(*args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
    """Start vpc-migrate in the background; collect it with ``finish``."""
    return subprocess.Popen(
        cli_command(*args), env=clean_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(proc: subprocess.Popen[str], timeout: float = 120) -> Result:
    out, err = proc.communicate(timeout=timeout)
    return Result(proc.returncode, out, err)


class Migrations:
    """A migrations folder in a temp dir."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def write(self, name: str, content: str | bytes) -> Path:
        target = self.path / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
        return target


@pytest.fixture
def migrations(tmp_path: Path) -> Migrations:
    return Migrations(tmp_path / "migrations")
