"""The composite action (action.yml) and the example workflows."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from runner import __version__
from tests.fix_cli import REPO, Migrations, clean_env
from tests.fix_pg import Database, PasswordUser, Secrets

ACTION = yaml.safe_load((REPO / "action.yml").read_text())
WORKFLOWS = sorted((REPO / "examples" / "workflows").glob("*.yml"))
JS_TOOLS = REPO / "tests" / "js"
# Labels a workflow may name: GitHub-hosted images, and stacks named prod and prod-plan (`vpc-<stack>`).
KNOWN_LABELS = {"self-hosted", "linux", "x64", "vpc-prod", "vpc-prod-plan", "ubuntu-latest", "ubuntu-24.04"}
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+(\.\d+)*$")


def github_parser(*paths: Path) -> dict[str, list[str]]:
    """Errors per file from GitHub's own workflow and action parser (npm @actions/workflow-parser)."""
    result = subprocess.run(
        ["node", "--import", "./json-modules.mjs", "validate-workflows.mjs", *map(str, paths)],
        cwd=JS_TOOLS,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    report: dict[str, list[str]] = json.loads(result.stdout)
    return report


def uses_lines(path: Path) -> list[str]:
    return [m[1].strip() for m in re.finditer(r"^\s*(?:- )?uses: (.+)$", path.read_text(), re.MULTILINE)]


def run_scripts(document: object) -> list[str]:
    """Every `run:` script in a workflow or action, found wherever it is nested."""
    if isinstance(document, dict):
        found = [document["run"]] if isinstance(document.get("run"), str) else []
        return found + [s for v in document.values() for s in run_scripts(v)]
    if isinstance(document, list):
        return [s for v in document for s in run_scripts(v)]
    return []


def test_workflows_and_the_action_pass_githubs_own_parser():
    assert len(WORKFLOWS) == 3
    report = github_parser(*WORKFLOWS, REPO / "action.yml")
    assert report == {str(p): [] for p in [*WORKFLOWS, REPO / "action.yml"]}


def test_githubs_parser_really_checks(tmp_path: Path):
    bad = tmp_path / "bad.yml"
    bad.write_text("on: pull_request\njobs:\n  x:\n    runs-on: [self-hosted, vpc]\n    stepz:\n      - run: 'true'\n")
    action = tmp_path / "action.yml"
    action.write_text("name: x\nruns:\n  using: composite\n")
    report = github_parser(bad, action)
    assert "Unexpected value 'stepz'" in " ".join(report[str(bad)])
    assert "Required property is missing: description" in " ".join(report[str(action)])


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflows_name_only_known_labels(path: Path):
    for job in yaml.safe_load(path.read_text())["jobs"].values():
        labels = job["runs-on"] if isinstance(job["runs-on"], list) else [job["runs-on"]]
        assert set(labels) <= KNOWN_LABELS, f"{path.name}: unknown runner label in {labels}"


@pytest.mark.parametrize("path", [*WORKFLOWS, REPO / "action.yml"], ids=lambda p: p.name)
def test_no_expression_is_expanded_inside_a_script(path: Path):
    """`${{ }}` inside `run:` is pasted into the shell before it runs: untrusted text would be code."""
    scripts = run_scripts(yaml.safe_load(path.read_text()))
    assert scripts and not [s for s in scripts if "${{" in s]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_third_party_actions_are_pinned_by_commit(path: Path):
    for uses in uses_lines(path):
        if uses.startswith("your-org/vpc-runner-kit@"):  # the reader's own copy of this action
            continue
        assert PINNED.match(uses), f"{path.name}: `{uses}` is not pinned to a commit SHA with its tag as a comment"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_scripts_pass_shellcheck(path: Path, tmp_path: Path):
    for index, script in enumerate(run_scripts(yaml.safe_load(path.read_text()))):
        file = tmp_path / f"step{index}.sh"
        file.write_text(script)
        result = subprocess.run(["shellcheck", "-s", "bash", str(file)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout


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


def run_step(
    tmp_path: Path, database: Database, env_extra: dict[str, str] | None = None, **inputs: str
) -> tuple[subprocess.CompletedProcess[str], str]:
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
            **(env_extra or {}),
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


def test_action_with_only_secret_migrates_a_password_database(
    tmp_path: Path, password_user: PasswordUser, migrations: Migrations, secrets: Secrets
):
    password = "action-Pa$$word-0123456789"
    password_user.set_password(password)
    arn = secrets.create("orders", password_user.secret_json(password))
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    env = secrets.env(DATABASE_URL="", PGSSLROOTCERT=str(password_user.database.server.ca_file))
    result, outputs = run_step(tmp_path, password_user.database, env, directory=str(migrations.path), secret=arn)
    assert result.returncode == 0, result.stderr
    assert outputs.splitlines() == ["applied-count=1", "version=0001"]
    assert password_user.database.history() == [(1, "a", "applied")]
    assert [line for line in result.stderr.splitlines() if password in line and "::add-mask::" not in line] == []


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


def run_install(tmp_path: Path, installed_version: str | None) -> subprocess.CompletedProcess[str]:
    """The action's install step under bash, as the runner runs it; offline, so no install can succeed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if installed_version:
        (bin_dir / "vpc-migrate").write_text(f"#!/bin/sh\necho 'vpc-migrate {installed_version}'\n")
        (bin_dir / "vpc-migrate").chmod(0o755)
    (tmp_path / "temp").mkdir()
    env = clean_env(
        {
            "PATH": f"{bin_dir}:{Path(sys.executable).parent}:/usr/bin:/bin",
            "GITHUB_ACTION_PATH": str(REPO),
            "RUNNER_TEMP": str(tmp_path / "temp"),
            "GITHUB_PATH": str(tmp_path / "github-path"),
            "PIP_NO_INDEX": "1",
            "PIP_FIND_LINKS": "",
            "PIP_CONFIG_FILE": os.devnull,
            "https_proxy": "http://127.0.0.1:9",
        }
    )
    return subprocess.run(
        ["bash", "-e", "-c", ACTION["runs"]["steps"][0]["run"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_install_step_skips_when_the_runner_already_has_this_version(tmp_path: Path):
    result = run_install(tmp_path, __version__)
    assert result.returncode == 0, result.stderr
    assert f"vpc-migrate {__version__} is already on this runner" in result.stdout
    assert not (tmp_path / "temp" / "vpc-migrate").exists() and not (tmp_path / "github-path").exists()


def test_install_step_otherwise_installs_uv_pinned_by_the_locks_hashes(tmp_path: Path):
    result = run_install(tmp_path, "0.0.1")
    assert result.returncode != 0, "offline: the hash-checked install cannot fetch anything"
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    uv = next(p for p in lock["package"] if p["name"] == "uv")
    line = (tmp_path / "temp" / "vpc-migrate" / "uv.txt").read_text().split()
    assert line[0] == f"uv=={uv['version']}"
    assert line[1:] == [f"--hash={w['hash']}" for w in uv["wheels"]] and len(line) > 5
