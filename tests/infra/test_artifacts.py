"""What the stack ships, built from uv.lock: every file hash-pinned, and only what runs there.

`scripts/test` builds both artifacts before pytest starts (downloading from PyPI once, cached in
infra/.build), so these tests read them offline.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from infra import artifacts

REPO = Path(__file__).resolve().parent.parent.parent
LOCKED = {p["name"]: p.get("version") for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]}


def pins(requirements: str) -> dict[str, tuple[str, set[str]]]:
    """name -> (version, hashes) from a requirements file with continuation lines."""
    found: dict[str, tuple[str, set[str]]] = {}
    for entry in requirements.replace("\\\n", " ").splitlines():
        if match := re.match(r"([A-Za-z0-9_.-]+)==(\S+)", entry.strip()):
            found[match[1].lower()] = (match[2], set(re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)))
    return found


@pytest.fixture(scope="module")
def package() -> Path:
    return artifacts.runner_package()


def test_every_wheel_in_the_runner_package_is_pinned_by_hash(package: Path):
    pinned = pins((package / "requirements.txt").read_text())
    assert all(hashes for _, hashes in pinned.values()), "a requirement without a hash"
    for wheel in (package / "wheels").glob("*.whl"):
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert any(digest in hashes for _, hashes in pinned.values()), f"{wheel.name} is pinned by no hash"
    for name, (version, _) in pinned.items():
        if name != "vpc-runner-kit":
            assert LOCKED[name] == version, f"{name}: {version} shipped, {LOCKED[name]} locked"


def test_runner_package_holds_what_vpc_migrate_runs_and_nothing_else(package: Path):
    names = {re.split(r"-\d", w.name)[0].lower() for w in (package / "wheels").glob("*.whl")}
    assert {"vpc_runner_kit", "psycopg", "psycopg_binary", "pglast", "boto3", "botocore"} <= names
    assert not names & {"pyjwt", "cryptography", "pulumi", "pytest", "moto", "uv"}
    assert all(
        w.name.endswith(("-none-any.whl", "manylinux_2_17_x86_64.whl", "manylinux_2_28_x86_64.whl"))
        or "cp311-cp311-manylinux" in w.name
        for w in (package / "wheels").glob("*.whl")
    )
    (kit,) = (package / "wheels").glob("vpc_runner_kit-*.whl")
    members = zipfile.ZipFile(kit).namelist()
    assert "runner/migrate/cli.py" in members and "runner/migrate/command.py" in members
    code = [m for m in members if ".dist-info/" not in m]
    assert code and all(m == "runner/__init__.py" or m.startswith("runner/migrate/") for m in code), code
    assert not [m for m in code if "__pycache__" in m]


def test_lambda_layer_holds_the_lambda_group_for_python_3_12():
    layer = artifacts.lambda_layer() / "python"
    top = {p.name for p in layer.iterdir()}
    assert {"jwt", "cryptography", "boto3", "botocore"} <= top
    assert not top & {"psycopg", "pglast", "pulumi", "moto"}, "the layer carries only what the handlers import"
    compiled = [p.name for p in (layer / "cryptography" / "hazmat" / "bindings").glob("*.so")]
    assert compiled and all("abi3" in n or "cpython-312" in n for n in compiled)
    assert not list(layer.rglob("__pycache__"))


@pytest.mark.parametrize(("key", "marker"), [("lambdaLayerDir", "python"), ("runnerPackageDir", "requirements.txt")])
def test_a_prebuilt_directory_without_its_contents_names_the_key(tmp_path: Path, key: str, marker: str):
    build = artifacts.lambda_layer if key == "lambdaLayerDir" else artifacts.runner_package
    with pytest.raises(artifacts.ArtifactError, match=f"{key}: .* has no {marker}"):
        build(str(tmp_path))


def test_lambda_code_is_exactly_what_the_handlers_import_and_runs_with_the_layer_alone(tmp_path: Path):
    code, layer = artifacts.lambda_code(), artifacts.lambda_layer() / "python"
    shipped = sorted(str(p.relative_to(code)) for p in code.rglob("*") if p.is_file())
    assert shipped == sorted(str(p.relative_to(artifacts.REPO)) for p in artifacts.handler_modules())
    assert "runner/control_plane/handlers.py" in shipped
    assert not [
        p for p in shipped if "simulator" in p or "__pycache__" in p or p.startswith(("tests/", "runner/migrate"))
    ]
    # Nothing else on the path (-I: no site-packages, no environment; -B: the artifacts stay as built).
    probe = (
        f"import sys; sys.path[:0] = [{str(code)!r}, {str(layer)!r}]; "
        "import runner.control_plane.handlers as h; "
        "print(h.webhook_handler.__module__, h.scale_up_handler.__name__, h.reaper_handler.__name__)"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-B", "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["runner.control_plane.handlers", "scale_up_handler", "reaper_handler"]
