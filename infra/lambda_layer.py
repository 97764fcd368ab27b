"""The control-plane Lambdas' third-party dependencies, as a layer directory built at `pulumi up`.

The Lambda Python runtime has boto3, botocore and urllib3; the handlers also need PyJWT with
``cryptography`` (RS256 for the GitHub App). pip downloads Linux wheels for the Lambda platform into
a cache keyed by the requirements, so repeated `pulumi up` runs build nothing. Deployers without
PyPI access point config ``lambdaLayerDir`` at a directory built elsewhere (holding ``python/``).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REQUIREMENTS = ("PyJWT[crypto]>=2.8,<3",)
PYTHON_VERSION = "3.12"  # matches the functions' runtime
PLATFORM = "manylinux2014_x86_64"
CACHE = Path(__file__).resolve().parent / ".build"


class LayerBuildError(Exception):
    pass


def layer_directory(prebuilt: str | None = None) -> Path:
    if prebuilt:
        path = Path(prebuilt).expanduser().resolve()
        if not (path / "python").is_dir():
            raise LayerBuildError(f"lambdaLayerDir: {path} has no python/ folder (build it with pip install --target)")
        return path
    key = hashlib.sha256(repr((REQUIREMENTS, PYTHON_VERSION, PLATFORM)).encode()).hexdigest()[:12]
    target = CACHE / f"lambda-layer-{key}"
    if (target / ".complete").exists():
        return target
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--target",
            str(target / "python"),
            "--platform",
            PLATFORM,
            "--implementation",
            "cp",
            "--python-version",
            PYTHON_VERSION,
            "--only-binary=:all:",
            *REQUIREMENTS,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise LayerBuildError(f"building the Lambda dependency layer failed:\n{result.stderr[-2000:]}")
    (target / ".complete").touch()
    return target
