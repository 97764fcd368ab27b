"""Scenario 5: a runner instance's boot, cold and from a baked image, in simulation.

The real user data runs under the simulator's stubs (simulator/instance.py), with the real kit
wheelhouse the stack uploads: a cold boot really creates the venv and pip-installs it offline; a
baked boot starts from the disk a bake left. The downloads EC2 would make (dnf, the runner tarball,
the CA bundle, S3) are stubbed and cost nothing here, so the cold figure is a floor; the README's
latency model adds their measured or published costs. Times come from the boot's own trace lines.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from infra import artifacts
from runner.control_plane import trace
from runner.control_plane.bootstrap import render
from simulator.instance import Boot, values


def _intervals(boot: Boot) -> dict[str, float]:
    lines = trace.parse(boot.trace_lines())
    return {name: line[name] for line in lines for name in trace.INTERVALS if name in line}


def boot(*, runs: int, real_package: bool = True) -> dict[str, Any]:
    """``real_package`` False (the smoke run): the stubs' pip stands in, so only the harness is exercised."""
    with tempfile.TemporaryDirectory(prefix="bench-boot-") as scratch:
        base = Path(scratch)
        package_dir = artifacts.runner_package()
        package = Path(shutil.make_archive(str(base / "package"), "zip", package_dir)) if real_package else None
        placeholders = {"PACKAGE_ID": artifacts.package_id(package_dir)}
        image = Boot(base / "image")
        baked = image.run(
            mode="bake", package=package, script_text=render(values(RUNNER_SHA256=image.sha256) | placeholders)
        )
        if baked.returncode != 0:
            raise RuntimeError(f"bake failed: {baked.stderr[-500:]}")
        rows: dict[str, list[dict[str, float]]] = {"cold": [], "baked": []}
        for n in range(runs):
            for kind in ("cold", "baked"):
                instance = Boot(base / f"{kind}-{n}")
                if kind == "baked":
                    image.copy_image_to(instance)
                script = render(values(RUNNER_SHA256=instance.sha256) | placeholders)
                result = instance.run(package=package, script_text=script)
                if result.returncode != 0:
                    raise RuntimeError(f"{kind} boot failed: {result.stderr[-500:]}")
                rows[kind].append(_intervals(instance))
    report: dict[str, Any] = {}
    for kind, samples in rows.items():
        report[kind] = {
            name: statistics.median(s[name] for s in samples) for name in ("InstallTime", "BootTime") if samples
        }
    report["baked_to_cold"] = {
        name: report["baked"][name] / report["cold"][name]
        for name in ("InstallTime", "BootTime")
        if report["cold"][name]
    }
    return report
