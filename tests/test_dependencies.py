"""Every import is declared in the lock, for the place that runs it.

The fresh virtualenv CI builds from uv.lock already fails on a module nobody declared; this test says
which file and which group, and also catches an import that the machine happens to have but the part
that ships it does not (PyJWT in the Lambda code, psycopg in the Lambda code, pulumi on a runner).
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = tomllib.loads((REPO / "uv.lock").read_text())

# Where each folder's code runs, and so which declared dependencies it may import.
PLACES = {
    "runner/migrate": ("project",),  # the runner instance: the wheelhouse
    "runner/__init__.py": ("project",),
    "runner/control_plane": ("lambda",),  # the Lambdas: the layer only
    "ops": ("project",),  # operators' commands (scripts/), from the project's environment
    "simulator": ("dev",),  # the fake GitHub and the offline harness: tests and benchmarks only
    "infra": ("project", "infra"),  # `pulumi up`: the program imports the kit's bootstrap and config
    "tests": ("dev",),
    "bench": ("dev",),
    "scripts": ("dev",),
    "examples": ("project",),  # Python migrations run inside vpc-migrate
}
IGNORED = {".venv", ".tools", "node_modules", ".build", "build"}
OURS = [p for p in REPO.rglob("*.py") if not IGNORED & set(p.relative_to(REPO).parts)]
# The kit's packages and the modules its scripts, benchmarks and policy pack import by file name.
FIRST_PARTY = {"runner", "ops", "infra", "tests", "bench", "scripts", "simulator"} | {p.stem for p in OURS}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


Requirement = tuple[str, frozenset[str]]  # a distribution and the extras asked of it


def requirement(spec: str) -> Requirement:
    match = re.match(r"\s*([A-Za-z0-9_.-]+)\s*(?:\[([^\]]*)\])?", spec)
    assert match, spec
    extras = frozenset(normalize(e) for e in (match[2] or "").split(",") if e.strip())
    return normalize(match[1]), extras


def declared(group: str) -> set[Requirement]:
    """What a group declares (the project's own dependencies for "project"), included groups too."""
    if group == "project":
        return {requirement(s) for s in PYPROJECT["project"]["dependencies"]}
    found: set[Requirement] = set()
    for item in PYPROJECT["dependency-groups"][group]:
        found |= declared(item["include-group"]) if isinstance(item, dict) else {requirement(item)}
    return found | (declared("project") if group == "dev" else set())


def locked_closure(roots: set[Requirement]) -> set[str]:
    """The roots and everything uv.lock says they pull in, following only the extras asked for."""
    packages = {normalize(p["name"]): p for p in LOCK["package"]}

    def edges(entries: list[dict[str, object]]) -> list[Requirement]:
        return [(normalize(str(d["name"])), frozenset(map(normalize, d.get("extra", [])))) for d in entries]  # type: ignore[call-overload]

    seen: set[Requirement] = set()
    todo = list(roots)
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen or name not in packages:
            continue
        seen.add((name, extras))
        package = packages[name]
        todo += edges(package.get("dependencies", []))
        for extra in extras:
            todo += edges(package.get("optional-dependencies", {}).get(extra, []))
    return {name for name, _ in seen}


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def undeclared(files: list[Path], groups: tuple[str, ...]) -> list[str]:
    allowed = locked_closure(set().union(*(declared(g) for g in groups)))
    providers = importlib.metadata.packages_distributions()
    problems = []
    for path in files:
        for module in sorted(imports(path) - FIRST_PARTY - set(sys.stdlib_module_names)):
            dists = {normalize(d) for d in providers.get(module, [])}
            if not dists & allowed:
                where = f"provided by {sorted(dists)}" if dists else "not installed from the lock at all"
                name = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
                problems.append(f"{name}: imports {module} ({where}), not in {'/'.join(groups)}")
    return problems


def python_files(place: str) -> list[Path]:
    """The place's files, less those a more specific place claims."""
    path = REPO / place
    if path.is_file():
        return [path]
    nested = [REPO / other for other in PLACES if other != place and other.startswith(place + "/")]
    return [
        p
        for p in sorted(path.rglob("*.py"))
        if not IGNORED & set(p.relative_to(REPO).parts) and not any(p.is_relative_to(n) for n in nested)
    ]


@pytest.mark.parametrize("place", PLACES)
def test_every_import_is_declared_for_where_it_runs(place: str):
    assert undeclared(python_files(place), PLACES[place]) == []


def test_the_check_fails_on_an_undeclared_import(tmp_path: Path):
    """The defect this exists for: PyJWT imported by the control plane but declared nowhere."""
    lambda_code = tmp_path / "github.py"
    lambda_code.write_text("import jwt\nimport psycopg\nfrom not_a_real_module import x\n")
    problems = undeclared([lambda_code], ("project",))
    assert any("imports jwt" in p for p in problems)
    assert any("imports not_a_real_module (not installed from the lock at all)" in p for p in problems)
    assert not any("imports psycopg" in p for p in problems)
    # psycopg is declared for the runner, but the Lambda layer does not carry it.
    assert any("imports psycopg" in p for p in undeclared([lambda_code], ("lambda",)))


def test_every_python_file_is_in_some_place():
    covered = {p for place in PLACES for p in python_files(place)}
    assert set(OURS) - covered == set()
