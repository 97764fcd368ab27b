"""Each tool the benchmark compares, laid out the way that tool expects, with its commands.

A tool writes the workload into its own folder format once (``prepare``), then the harness times
its commands against fresh databases. ``missing`` says why a tool cannot run on this machine.
"""

from __future__ import annotations

import abc
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from workload import Migration

REPO = Path(__file__).resolve().parent.parent
TOOLS = REPO / "bench" / ".tools"  # where bench/setup installs dbmate (npm)


@dataclass
class Tool(abc.ABC):
    name: str
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)

    def missing(self) -> str | None:
        return None

    @abc.abstractmethod
    def prepare(self, migrations: list[Migration]) -> None:
        """Write the workload in this tool's own layout under ``workdir``."""

    @abc.abstractmethod
    def apply(self, url: str) -> list[str]:
        """The command that applies every pending migration."""

    def noop(self, url: str) -> list[str]:
        """The command for a run with nothing left to apply (for most tools, `apply` again)."""
        return self.apply(url)

    def status(self, url: str) -> list[str] | None:
        return None

    def migration_env(self, url: str) -> dict[str, str]:
        return {}


@functools.cache
def installed_vpc_migrate() -> Path:
    """vpc-migrate installed the way a runner installs it: the stack's wheelhouse (infra/artifacts.py)
    into a fresh venv with pip, offline and hash-checked, byte-compiled as pip does by default.

    Timing `.venv/bin/python -m runner.migrate` instead would add the editable install's import hook
    and, where PYTHONDONTWRITEBYTECODE is set, compiling every module on every start.
    """
    sys.path.insert(0, str(REPO))
    from infra.artifacts import runner_package

    package = runner_package()
    venv = Path(tempfile.mkdtemp(prefix="vpc-migrate-bench-venv-")) / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--isolated",
            "--no-index",
            "--find-links",
            str(package / "wheels"),
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            str(package / "requirements.txt"),
        ],
        check=True,
        # Not the repository on PYTHONPATH: pip would take its egg-info for an installed kit.
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPATH")},
    )
    return venv / "bin" / "vpc-migrate"


class VpcMigrate(Tool):
    def prepare(self, migrations: list[Migration]) -> None:
        folder = self.workdir / "migrations"
        folder.mkdir(parents=True, exist_ok=True)
        for m in migrations:
            (folder / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)

    def apply(self, url: str) -> list[str]:
        return [str(installed_vpc_migrate()), "up", "--dir", str(self.workdir / "migrations"), "--database-url", url]

    def status(self, url: str) -> list[str]:
        return [
            str(installed_vpc_migrate()),
            "status",
            "--dir",
            str(self.workdir / "migrations"),
            "--database-url",
            url,
        ]


class Floor(Tool):
    """One psql process: each migration's statements and a history insert in one transaction."""

    def prepare(self, migrations: list[Migration]) -> None:
        lines = [
            "CREATE TABLE IF NOT EXISTS floor_history (version bigint PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());"
        ]
        for m in migrations:
            lines += [
                "BEGIN;",
                m.sql.rstrip(),
                f"INSERT INTO floor_history (version, name, checksum) VALUES ({m.version}, '{m.name}',"
                f" '{m.checksum}');",
                "COMMIT;",
            ]
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "floor.sql").write_text("\n".join(lines) + "\n")

    def apply(self, url: str) -> list[str]:
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(self.workdir / "floor.sql")]

    def noop(self, url: str) -> list[str]:
        # The least a no-op run can do: connect and read what was applied.
        return ["psql", "-X", "-q", "-A", "-t", "-d", url, "-c", "SELECT max(version) FROM floor_history"]

    def status(self, url: str) -> list[str]:
        return ["psql", "-X", "-q", "-A", "-t", "-d", url, "-c", "SELECT version, name FROM floor_history ORDER BY 1"]


class Dbmate(Tool):
    def missing(self) -> str | None:
        return None if self.binary() else "dbmate not installed (bench/setup installs it from npm)"

    def binary(self) -> str | None:
        local = TOOLS / "node_modules" / ".bin" / "dbmate"
        return str(local) if local.exists() else shutil.which("dbmate")

    def prepare(self, migrations: list[Migration]) -> None:
        folder = self.workdir / "migrations"
        folder.mkdir(parents=True, exist_ok=True)
        for m in migrations:
            (folder / f"{m.version:04d}_{m.name}.sql").write_text(f"-- migrate:up\n{m.sql}\n-- migrate:down\n")

    def _command(self, url: str, verb: str) -> list[str]:
        return [
            self.binary() or "dbmate",
            "--url",
            f"{url}?sslmode=disable",
            "--migrations-dir",
            str(self.workdir / "migrations"),
            "--no-dump-schema",
            verb,
        ]

    def apply(self, url: str) -> list[str]:
        return self._command(url, "up")

    def status(self, url: str) -> list[str]:
        return self._command(url, "status")


class Yoyo(Tool):
    def missing(self) -> str | None:
        return None if shutil.which("yoyo") else "yoyo-migrations not installed (pip install yoyo-migrations)"

    def prepare(self, migrations: list[Migration]) -> None:
        folder = self.workdir / "migrations"
        folder.mkdir(parents=True, exist_ok=True)
        for m in migrations:
            (folder / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)

    def _url(self, url: str) -> str:
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    def apply(self, url: str) -> list[str]:
        return [
            "yoyo",
            "apply",
            "--batch",
            "--no-config-file",
            "--database",
            self._url(url),
            str(self.workdir / "migrations"),
        ]

    def status(self, url: str) -> list[str]:
        return ["yoyo", "list", "--no-config-file", "--database", self._url(url), str(self.workdir / "migrations")]


ALEMBIC_ENV = """
import os
from alembic import context
from sqlalchemy import create_engine

engine = create_engine(os.environ["BENCH_DATABASE_URL"])
with engine.connect() as connection:
    # One transaction per migration, like the other tools.
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
"""


class Alembic(Tool):
    """Alembic with raw SQL operations (op.execute), one revision per migration."""

    def missing(self) -> str | None:
        return None if shutil.which("alembic") else "alembic not installed (pip install alembic)"

    def prepare(self, migrations: list[Migration]) -> None:
        versions = self.workdir / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        (self.workdir / "alembic.ini").write_text("[alembic]\nscript_location = %(here)s\n")
        (self.workdir / "env.py").write_text(ALEMBIC_ENV)
        previous = None
        for m in migrations:
            body = "\n".join(f"    op.execute({s!r})" for s in m.statements)
            (versions / f"r{m.version:04d}_{m.name}.py").write_text(
                f"from alembic import op\n\nrevision = 'r{m.version:04d}'\ndown_revision = {previous!r}\n"
                f"branch_labels = None\ndepends_on = None\n\n\ndef upgrade():\n{body}\n"
            )
            previous = f"r{m.version:04d}"

    def migration_env(self, url: str) -> dict[str, str]:
        return {"BENCH_DATABASE_URL": url.replace("postgresql://", "postgresql+psycopg://", 1)}

    def apply(self, url: str) -> list[str]:
        return ["alembic", "-c", str(self.workdir / "alembic.ini"), "upgrade", "head"]

    def status(self, url: str) -> list[str]:
        return ["alembic", "-c", str(self.workdir / "alembic.ini"), "current"]


class Sqitch(Tool):
    def missing(self) -> str | None:
        return None if shutil.which("sqitch") else "sqitch not installed (apt-get install sqitch libdbd-pg-perl)"

    def prepare(self, migrations: list[Migration]) -> None:
        deploy = self.workdir / "deploy"
        deploy.mkdir(parents=True, exist_ok=True)
        (self.workdir / "sqitch.conf").write_text("[core]\n\tengine = pg\n\tplan_file = sqitch.plan\n\ttop_dir = .\n")
        plan = ["%syntax-version=1.0.0", "%project=bench", ""]
        for m in migrations:
            change = f"m{m.version:04d}_{m.name}"
            plan.append(f"{change} 2026-01-01T00:00:00Z Bench <bench@example.com> # benchmark")
            (deploy / f"{change}.sql").write_text(f"BEGIN;\n{m.sql}COMMIT;\n")
        (self.workdir / "sqitch.plan").write_text("\n".join(plan) + "\n")

    def migration_env(self, url: str) -> dict[str, str]:
        return {"SQITCH_FULLNAME": "Bench", "SQITCH_EMAIL": "bench@example.com"}

    def _target(self, url: str) -> str:
        return "db:pg:" + url.removeprefix("postgresql:")

    def apply(self, url: str) -> list[str]:
        return ["sqitch", "-C", str(self.workdir), "deploy", "--no-verify", "--target", self._target(url)]

    def status(self, url: str) -> list[str]:
        return ["sqitch", "-C", str(self.workdir), "status", "--target", self._target(url)]


def all_tools(base: Path) -> list[Tool]:
    classes: list[tuple[str, type[Tool]]] = [
        ("floor (one psql)", Floor),
        ("vpc-migrate", VpcMigrate),
        ("dbmate", Dbmate),
        ("yoyo", Yoyo),
        ("alembic", Alembic),
        ("sqitch", Sqitch),
    ]
    env = {"PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return [cls(name, base / name.split()[0], dict(env)) for name, cls in classes]
