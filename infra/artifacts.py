"""What the stack ships, built from uv.lock at `pulumi up`: the runner package and the Lambda layer.

- **Runner package** (uploaded to S3, installed by every runner at boot): ``wheels/`` holds the wheel of
  this kit and of every locked runtime dependency for the instance's platform (Amazon Linux 2023,
  CPython 3.11, x86_64), and ``requirements.txt`` pins each with its hashes. The instance installs it
  with ``pip --no-index --require-hashes``: nothing comes from PyPI at boot.
- **Lambda layer** (``python/``): the ``lambda`` dependency group, installed for the functions'
  runtime (CPython 3.12, x86_64) with ``pip --require-hashes``.

Both come from ``uv export --frozen`` of the one lock, so what tests ran against is what ships. Builds are
cached under ``infra/.build`` by the lock's hash (and the kit's sources), so repeated `pulumi up` runs
download nothing. Deployers without PyPI point config ``runnerPackageDir`` / ``lambdaLayerDir`` at copies
built elsewhere with ``python -m infra.artifacts``.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "uv.lock"
CACHE = Path(__file__).resolve().parent / ".build"
# Amazon Linux 2023 (the runner image and the Lambda python3.12 runtime) has glibc 2.34.
LINUX_X86_64 = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
RUNNER_PYTHON = "3.11"  # python3.11 from the AL2023 repositories
LAMBDA_PYTHON = "3.12"  # the functions' runtime
DIST_NAME = "vpc-runner-kit"


class ArtifactError(Exception):
    pass


def _run(argv: list[str], what: str, cwd: Path = REPO) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, check=False)
    if result.returncode != 0:
        raise ArtifactError(f"{what} failed:\n{(result.stderr or result.stdout)[-2000:]}")
    return result.stdout


def _uv() -> str:
    """The locked uv (the `infra` group installs it beside this Python), else one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise ArtifactError("uv not found: install the `infra` dependency group (uv sync --group infra)")
    return found


def locked_requirements(*groups: str) -> str:
    """requirements.txt with hashes: the project's dependencies, or only the named groups'."""
    selection = [arg for g in groups for arg in ("--only-group", g)]
    return _run(
        [
            _uv(),
            "export",
            "--frozen",
            "--format",
            "requirements-txt",
            "--no-emit-project",
            "--no-default-groups",
            "--no-header",
            "--no-annotate",
            *selection,
        ],
        "uv export",
    )


def _platform_args(python_version: str) -> list[str]:
    platforms = [arg for tag in LINUX_X86_64 for arg in ("--platform", tag)]
    return [*platforms, "--implementation", "cp", "--python-version", python_version, "--only-binary=:all:"]


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _kit_sources() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    files += [p for p in sorted((REPO / "runner").rglob("*")) if p.is_file() and "__pycache__" not in p.parts]
    return files


def _prebuilt(path: str, marker: str, key: str) -> Path:
    found = Path(path).expanduser().resolve()
    if not (found / marker).exists():
        raise ArtifactError(f"{key}: {found} has no {marker} (build it with `python -m infra.artifacts`)")
    return found


def _fresh(target: Path) -> Path:
    scratch = target.with_name(target.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    return scratch


def lambda_layer(prebuilt: str | None = None) -> Path:
    """A directory holding ``python/``: the `lambda` group for the functions' runtime."""
    if prebuilt:
        return _prebuilt(prebuilt, "python", "lambdaLayerDir")
    target = CACHE / f"lambda-layer-{_digest(LOCK.read_bytes(), LAMBDA_PYTHON.encode())}"
    if (target / "python").is_dir():
        return target
    scratch = _fresh(target)
    (scratch / "requirements.txt").write_text(locked_requirements("lambda"))
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--isolated",  # the machine's pip configuration adds no index; the hashes decide
            "--no-deps",
            "--require-hashes",
            "--no-compile",
            "--target",
            str(scratch / "python"),
            *_platform_args(LAMBDA_PYTHON),
            "-r",
            str(scratch / "requirements.txt"),
        ],
        "building the Lambda layer",
    )
    (scratch / "requirements.txt").unlink()  # not something the functions run
    scratch.rename(target)
    return target


def runner_package(prebuilt: str | None = None) -> Path:
    """A directory holding ``wheels/`` and a hash-pinned ``requirements.txt`` for the runner instance."""
    if prebuilt:
        return _prebuilt(prebuilt, "requirements.txt", "runnerPackageDir")
    lock = LOCK.read_bytes()
    wheels = CACHE / f"runner-wheels-{_digest(lock, RUNNER_PYTHON.encode())}"
    target = CACHE / f"runner-package-{_digest(lock, *(p.read_bytes() for p in _kit_sources()))}"
    if (target / "requirements.txt").exists():
        return target
    if not (wheels / "requirements.txt").exists():
        scratch = _fresh(wheels)
        (scratch / "requirements.txt").write_text(locked_requirements())
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--isolated",
                "--no-deps",
                "--require-hashes",
                "--dest",
                str(scratch),
                *_platform_args(RUNNER_PYTHON),
                "-r",
                str(scratch / "requirements.txt"),
            ],
            "downloading the runner's locked wheels",
        )
        scratch.rename(wheels)
    scratch = _fresh(target)
    shutil.copytree(wheels, scratch / "wheels", ignore=shutil.ignore_patterns("requirements.txt"))
    # sdist first, then the wheel from it: a stale build/ directory in the checkout cannot leak into the wheel.
    _run([_uv(), "build", "--quiet", "--out-dir", str(scratch / "dist"), str(REPO)], "building the kit")
    (built,) = (scratch / "dist").glob("vpc_runner_kit-*.whl")
    kit = built.rename(scratch / "wheels" / built.name)
    shutil.rmtree(scratch / "dist")
    version = kit.name.split("-")[1]
    kit_hash = hashlib.sha256(kit.read_bytes()).hexdigest()
    (scratch / "requirements.txt").write_text(
        (wheels / "requirements.txt").read_text() + f"{DIST_NAME}=={version} --hash=sha256:{kit_hash}\n"
    )
    shutil.rmtree(target, ignore_errors=True)
    scratch.rename(target)
    return target


def package_id(package_dir: Path) -> str:
    """What names one build of the runner package: the SHA-256 of its requirements.txt, which pins every
    wheel (the kit's own included) by hash. A baked image records it; a boot compares it."""
    return hashlib.sha256((package_dir / "requirements.txt").read_bytes()).hexdigest()


HANDLERS = REPO / "runner" / "control_plane" / "handlers.py"


def handler_modules() -> list[Path]:
    """The kit's files the Lambda handlers import, transitively (and their packages' __init__.py)."""
    found: set[Path] = set()
    todo = [HANDLERS]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        package = path.parent
        for init in (package / "__init__.py", package.parent / "__init__.py"):
            if init.is_relative_to(REPO / "runner") and init.exists() and init not in found:
                todo.append(init)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.parent
                module = node.module or ""
                if node.level == 0:
                    if not module.startswith("runner"):
                        continue
                    base, module = REPO, module
                names = [module] if module else []
                names += [f"{module}.{a.name}" if module else a.name for a in node.names]
                for name in names:
                    target = base.joinpath(*name.split("."))
                    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                        if candidate.exists():
                            todo.append(candidate)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("runner"):
                        target = REPO.joinpath(*alias.name.split("."))
                        for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                            if candidate.exists():
                                todo.append(candidate)
    return sorted(found)


def lambda_code() -> Path:
    """The functions' code: exactly the files the handlers import, no tests, no fakes, no caches."""
    files = handler_modules()
    target = CACHE / f"lambda-code-{_digest(*(f.read_bytes() + str(f).encode() for f in files))}"
    if target.is_dir():
        return target
    scratch = _fresh(target)
    for file in files:
        destination = scratch / file.relative_to(REPO)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
    scratch.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """Build (or find in the cache) both artifacts and print their directories."""
    parser = argparse.ArgumentParser(prog="python -m infra.artifacts", description=main.__doc__)
    parser.parse_args(argv)
    try:
        print(f"runner package: {runner_package()}")
        print(f"lambda layer:   {lambda_layer()}")
        print(f"lambda code:    {lambda_code()}")
    except ArtifactError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
