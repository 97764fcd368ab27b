"""The composite action (action.yml) and the example workflows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fix_cli import REPO, Migrations, clean_env
from tests.fix_pg import Database

ACTION = yaml.safe_load((REPO / "action.yml").read_text())
WORKFLOWS = sorted((REPO / "examples" / "workflows").glob("*.yml"))
needs_actionlint = pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint not installed")


def actionlint(*paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["actionlint", "-no-color", "-config-file", str(REPO / ".github" / "actionlint.yaml"), *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )


@needs_actionlint
def test_example_workflows_pass_actionlint():
    assert len(WORKFLOWS) == 3
    result = actionlint(*WORKFLOWS)
    assert result.returncode == 0, result.stdout


@needs_actionlint
def test_actionlint_really_checks(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\njobs:\n  x:\n    runs-on: [self-hosted, vcp]\n    steps:\n"
        '      - run: echo "${{ github.event.pull_request.title }}"\n'
    )
    result = actionlint(bad)
    assert result.returncode == 1
    assert 'label "vcp" is unknown' in result.stdout and "potentially untrusted" in result.stdout


def test_every_input_reaches_the_script_through_the_environment_only():
    step = ACTION["runs"]["steps"][1]
    assert "${{" not in step["run"], "inputs expanded inside the script could inject shell"
    names = {f"INPUT_{name.upper().replace('-', '_')}" for name in ACTION["inputs"]} - {
        "INPUT_WORKING_DIRECTORY",
        "INPUT_HOLD_ON_FAILURE",
    }
    assert names <= set(step["env"]) and step["env"]["VPC_MIGRATE_HOLD_ON_FAILURE"] == "${{ inputs.hold-on-failure }}"
    assert set(ACTION["outputs"]) == {"applied-count", "version", "pending-count"}


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("index", [0, 1])
def test_action_scripts_pass_shellcheck(index: int, tmp_path: Path):
    script = tmp_path / "step.sh"
    script.write_text(ACTION["runs"]["steps"][index]["run"])
    result = subprocess.run(["shellcheck", "-s", "bash", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def run_step(tmp_path: Path, database: Database, **inputs: str) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run the action's migrate step as the runner would: bash, inputs in the environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    wrapper = bin_dir / "vpc-migrate"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m runner.migrate "$@"\n')
    wrapper.chmod(0o755)
    output = tmp_path / "github-output"
    output.write_text("")
    step = ACTION["runs"]["steps"][1]
    env = {key: "" for key in step["env"]}
    defaults = {f"INPUT_{n.upper().replace('-', '_')}": str(v.get("default", "")) for n, v in ACTION["inputs"].items()}
    env.update({k: v for k, v in defaults.items() if k in env})
    env.update({f"INPUT_{k.upper()}": v for k, v in inputs.items()})
    env = clean_env(
        {
            **env,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "DATABASE_URL": database.url,
            "GITHUB_ACTIONS": "true",
            "GITHUB_OUTPUT": str(output),
        }
    )
    result = subprocess.run(
        ["bash", "-e", "-c", step["run"]],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, output.read_text()


def test_action_runs_up_and_sets_outputs(tmp_path: Path, database: Database, migrations: Migrations):
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")
    result, outputs = run_step(tmp_path, database, directory=str(migrations.path), target="1")
    assert result.returncode == 0, result.stderr
    assert outputs.splitlines() == ["applied-count=1", "version=0001"]
    dry, outputs = run_step(tmp_path, database, directory=str(migrations.path), dry_run="true")
    assert dry.returncode == 0 and "pending-count=1" in outputs and "b" not in database.tables()


def test_action_exec_runs_the_framework_under_the_lock(tmp_path: Path, database: Database):
    script = tmp_path / "framework.py"
    script.write_text(
        "import os, psycopg\nwith psycopg.connect(os.environ['DATABASE_URL']) as c:\n"
        "    c.execute('CREATE TABLE from_framework (x int)')\n"
    )
    result, _ = run_step(tmp_path, database, command="exec", exec=f"{sys.executable} {script}")
    assert result.returncode == 0, result.stderr
    assert "from_framework" in database.tables()


def test_action_refuses_an_unknown_command(tmp_path: Path, database: Database):
    result, _ = run_step(tmp_path, database, command="down")
    assert result.returncode == 2 and "::error::command must be up or exec" in result.stdout
