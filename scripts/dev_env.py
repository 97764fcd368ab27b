"""Build the project's own environment from uv.lock: what `scripts/test` and `scripts/try-local` run first.

Runs under any python3 >= 3.11 with nothing pip-installed (standard library only) and never installs into
it. It installs, each step saying so:

- missing Debian packages (PostgreSQL server binaries, and for the tests psql, pam_exec, shellcheck, node):
  with apt-get as root, otherwise it prints the apt-get line and stops (exit 1);
- uv itself into ``.tools/uv``, at the version and hashes uv.lock records for it (``pip --require-hashes``);
- the project virtualenv ``.venv`` with ``uv sync --locked``: exactly the lock, hash-checked; a lock that
  disagrees with pyproject.toml is an error, never a silent re-resolve;
- for the tests, the npm tools in ``tests/js`` with ``npm ci`` (package-lock.json integrity hashes).

``--fresh`` deletes ``.venv`` first (CI). Exit codes: 0 ready, 1 a step failed (its output shown), 2 usage.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv"
UV_HOME = REPO / ".tools" / "uv"
JS_TOOLS = REPO / "tests" / "js"
MIN_PYTHON = (3, 11)


class SetupError(Exception):
    pass


def say(message: str) -> None:
    print(f"dev-env: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(argv, cwd=cwd, env=env, check=False)
    if result.returncode != 0:
        raise SetupError(f"{' '.join(argv[:3])}... failed with exit {result.returncode}")


def missing_debian_packages(purpose: str) -> list[str]:
    """Debian packages this purpose needs that the machine lacks, each probed by what it provides."""
    wanted: list[tuple[str, bool]] = [
        ("postgresql", bool(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or shutil.which("initdb") is not None),
    ]
    try:
        import ensurepip  # noqa: F401  (Debian splits it into python3-venv)
    except ImportError:
        wanted.append(("python3-venv", False))
    if purpose == "test":
        pam = glob.glob("/lib/*/security/pam_exec.so") + glob.glob("/usr/lib/*/security/pam_exec.so")
        wanted += [
            ("postgresql-client", shutil.which("psql") is not None),
            ("python3", Path("/usr/bin/python3").exists()),  # the PAM token verifier runs under it
            ("libpam-modules", bool(pam)),
            ("shellcheck", shutil.which("shellcheck") is not None),
            ("nodejs", shutil.which("node") is not None),  # GitHub's workflow parser and the OpenAPI checks
            ("npm", shutil.which("npm") is not None),
        ]
    return [name for name, present in wanted if not present]


def install_debian_packages(names: list[str]) -> None:
    if not names:
        return
    line = f"apt-get install -y --no-install-recommends {' '.join(names)}"
    if os.geteuid() != 0:
        raise SetupError(f"missing Debian packages {', '.join(names)}: run `sudo {line}`, then this again")
    say(f"installing Debian packages: {', '.join(names)} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-qq"], env=env)
    run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *names], env=env)


def locked_uv() -> tuple[str, list[str]]:
    """uv's version and every artifact hash, as uv.lock records them (uv is in the `infra` group)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    for package in lock["package"]:
        if package["name"] == "uv":
            hashes = [w["hash"] for w in package.get("wheels", [])]
            return package["version"], hashes
    raise SetupError("uv.lock does not lock uv (it belongs in the `infra` dependency group)")


def ensure_uv() -> Path:
    version, hashes = locked_uv()
    uv = UV_HOME / "bin" / "uv"
    if uv.exists():
        out = subprocess.run([str(uv), "--version"], capture_output=True, text=True, check=False).stdout.split()
        if out[1:2] == [version]:
            return uv
    say(f"installing uv {version} into {UV_HOME.relative_to(REPO)} (hash-checked against uv.lock)")
    shutil.rmtree(UV_HOME, ignore_errors=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(UV_HOME)
    requirements = UV_HOME / "requirements.txt"
    requirements.write_text(f"uv=={version} " + " ".join(f"--hash={h}" for h in hashes) + "\n")
    run(
        [
            str(UV_HOME / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--only-binary=:all:",
            "--require-hashes",
            "-r",
            str(requirements),
        ],
        # The machine's pip configuration may add indexes and constraints; the hashes decide what installs.
        env={**os.environ, "PIP_CONSTRAINT": "", "PIP_CONFIG_FILE": os.devnull},
    )
    return uv


def sync(uv: Path, purpose: str, *, fresh: bool) -> None:
    if fresh and VENV.exists():
        say(f"removing {VENV.relative_to(REPO)} (--fresh)")
        shutil.rmtree(VENV)
    # try-local needs only what vpc-migrate runs; it leaves dev tools already in .venv alone.
    groups = ["--no-default-groups", "--inexact"] if purpose == "try" else []
    say(f"syncing {VENV.relative_to(REPO)} with uv.lock ({'runtime only' if groups else 'all groups'})")
    env = {
        **os.environ,
        "UV_PYTHON": sys.executable,  # the python3 that runs this script, never a downloaded one
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_PROJECT_ENVIRONMENT": str(VENV),
    }
    env.pop("VIRTUAL_ENV", None)
    run([str(uv), "sync", "--locked", "--quiet", *groups], cwd=REPO, env=env)


def npm_tools() -> None:
    stamp = JS_TOOLS / "node_modules" / ".package-lock.json"
    lock = JS_TOOLS / "package-lock.json"
    if stamp.exists() and stamp.stat().st_mtime >= lock.stat().st_mtime:
        return
    say("installing the npm test tools in tests/js (npm ci: package-lock.json integrity hashes)")
    run(["npm", "ci", "--silent", "--no-audit", "--no-fund"], cwd=JS_TOOLS)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/dev_env.py", description=__doc__.splitlines()[0])
    parser.add_argument("purpose", choices=["test", "try"], help="test: everything; try: what try-local runs")
    parser.add_argument("--fresh", action="store_true", help="delete .venv first")
    args = parser.parse_args(argv)
    if sys.version_info < MIN_PYTHON:
        print(f"dev-env: python3 is {sys.version.split()[0]}; the project needs 3.11 or newer", file=sys.stderr)
        return 1
    try:
        install_debian_packages(missing_debian_packages(args.purpose))
        sync(ensure_uv(), args.purpose, fresh=args.fresh)
        if args.purpose == "test":
            npm_tools()
    except SetupError as err:
        print(f"dev-env: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
