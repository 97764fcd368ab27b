"""scripts/runner-group-check: GitHub's own lock, read from the (fake) GitHub API on loopback."""

from __future__ import annotations

import os
import subprocess

import pytest

from simulator.fake_github import FakeGitHub
from tests.fix_cli import REPO, clean_env

TOKEN = "github_pat_11GROUPCHECK000000000_abcdefghijklmnopqrstuvwxyz"
CLOSED = {
    "name": "migrations",
    "visibility": "selected",
    "allows_public_repositories": False,
    "restricted_to_workflows": True,
    "selected_workflows": ["acme/shop/.github/workflows/migrate.yml@refs/heads/main"],
    "repositories": ["acme/shop"],
}


def check(fake: FakeGitHub, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = clean_env({"PATH": os.environ["PATH"], **({"GITHUB_TOKEN": token} if token else {})})
    return subprocess.run(
        [str(REPO / "scripts" / "runner-group-check"), "--org", "acme", "--api-url", fake.url, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_closed_group_passes(fake_github: FakeGitHub):
    fake_github.personal_token = TOKEN
    fake_github.runner_groups[3] = CLOSED
    result = check(fake_github, "--group", "3", "--allowed", "acme/shop")
    assert result.returncode == 0 and "is closed" in result.stdout


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        ({"visibility": "all"}, "open to every repository"),
        ({"allows_public_repositories": True}, "allows public repositories"),
        ({"restricted_to_workflows": False}, "not restricted to selected workflows"),
        ({"repositories": ["acme/shop", "acme/website"]}, "outside the stack's allow-list: acme/website"),
    ],
)
def test_each_open_setting_is_a_warning_and_exit_1(fake_github: FakeGitHub, change: dict, warning: str):
    fake_github.personal_token = TOKEN
    fake_github.runner_groups[3] = {**CLOSED, **change}
    result = check(fake_github, "--group", "3", "--allowed", "acme/shop")
    assert result.returncode == 1 and warning in result.stdout


def test_no_such_group_no_token_and_a_refused_token(fake_github: FakeGitHub):
    fake_github.personal_token = TOKEN
    assert check(fake_github, "--group", "9").returncode == 2
    missing = check(fake_github, "--group", "3", token=None)
    assert missing.returncode == 2 and "GITHUB_TOKEN" in missing.stdout
    assert check(fake_github, "--group", "3", token="wrong").returncode == 3
