"""The real client against the fake where the fake now behaves like GitHub: what GitHub documents, the client does.

Link pagination (in the id form GitHub's Link headers use), repository-level runners at the repository,
primary and secondary rate limits as GitHub documents them; the runner group check reads every page.
"""

from __future__ import annotations

import json

import pytest

from ops import runner_group_check
from runner.control_plane.errors import ConfigError, RateLimited
from runner.control_plane.github import AppAuth, GitHubClient
from simulator.fake_github import FakeGitHub
from tests.fix_control_plane import Aws, make_plane


def register(fake: FakeGitHub, name: str, repository: str | None = None) -> int:
    status, _, body = fake._jit(
        json.dumps({"name": name, "runner_group_id": 1, "labels": ["self-hosted", "vpc"]}).encode(), repository
    )
    assert status == 201
    runner_id: int = body["runner"]["id"]
    return runner_id


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(fake_github: FakeGitHub, app_key: tuple[str, str], sleeps: list[float]) -> GitHubClient:
    return GitHubClient(fake_github.url, "acme", AppAuth(fake_github.app_id, app_key[0]), sleep=sleeps.append)


def test_runner_lists_follow_githubs_link_header(fake_github: FakeGitHub, client: GitHubClient):
    for n in range(250):
        register(fake_github, f"vpc-i-{n:04d}")
    for n in range(120):
        register(fake_github, f"vpc-i-r{n:04d}", repository="acme/shop")
    assert [r.name for r in client.list_runners(777)] == [f"vpc-i-{n:04d}" for n in range(250)]
    listed = [p for m, p in fake_github.calls if m == "GET" and p.endswith("/actions/runners")]
    assert listed == ["/orgs/acme/actions/runners"] + [f"/organizations/{fake_github.owner_id}/actions/runners"] * 2
    repo = client.list_runners(777, repository="acme/shop")
    assert [r.name for r in repo] == [f"vpc-i-r{n:04d}" for n in range(120)]
    assert {r.repository for r in repo} == {"acme/shop"}


def test_repository_runners_are_deleted_at_their_repository(fake_github: FakeGitHub, client: GitHubClient):
    jit = client.generate_jitconfig(
        name="vpc-i-0repo",
        runner_group_id=1,
        labels=("self-hosted", "vpc"),
        installation_id=777,
        repository="acme/shop",
    )
    assert [r.name for r in client.list_runners(777)] == []
    assert client.delete_runner(jit.runner_id, 777) is False  # GitHub: not an organization runner
    assert client.delete_runner(jit.runner_id, 777, repository="acme/shop") is True
    assert fake_github.runners == {}


@pytest.mark.parametrize("status", [403, 429])
def test_a_primary_limit_is_waited_out_until_its_reset(
    fake_github: FakeGitHub, client: GitHubClient, sleeps: list[float], status: int
):
    fake_github.add_job(1)
    fake_github.inject_primary_rate_limit("GET", r"/actions/jobs/1$", reset_in_s=5, status=status)
    assert client.get_job("acme", "shop", 1, 777) is not None
    assert len(sleeps) == 1 and 4 <= sleeps[0] <= 7


@pytest.mark.parametrize("status", [403, 429])
def test_a_secondary_limit_waits_retry_after_or_at_least_a_minute(
    fake_github: FakeGitHub, client: GitHubClient, sleeps: list[float], status: int
):
    fake_github.add_job(2)
    fake_github.inject_secondary_rate_limit("GET", r"/actions/jobs/2$", status=status, retry_after=5)
    assert client.get_job("acme", "shop", 2, 777) is not None and sleeps == [5.0]
    fake_github.inject_secondary_rate_limit("GET", r"/actions/jobs/2$", status=status, retry_after=None)
    with pytest.raises(RateLimited) as raised:  # a minute is past max_wait_s: back to the queue
        client.get_job("acme", "shop", 2, 777)
    assert raised.value.delay_s is not None and raised.value.delay_s >= 60
    assert sleeps == [5.0]


def test_the_runner_group_check_reads_every_page_of_repositories(
    fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    fake_github.personal_token = "github_pat_11PAGES"
    allowed = [f"acme/r{n:03d}" for n in range(149)]
    fake_github.runner_groups[3] = {
        "name": "migrations",
        "visibility": "selected",
        "restricted_to_workflows": True,
        "repositories": [*allowed, "acme/website"],  # the 150th is not allowed
    }
    monkeypatch.setenv("GITHUB_TOKEN", "github_pat_11PAGES")
    code = runner_group_check.main(
        ["--org", "acme", "--group", "3", "--api-url", fake_github.url, "--allowed", *allowed]
    )
    assert "outside the stack's allow-list: acme/website" in capsys.readouterr().out
    assert code == runner_group_check.Exit.OPEN


def test_repository_runners_with_a_wildcard_allow_list_are_refused_as_configuration(
    aws: Aws, fake_github: FakeGitHub, app_key: tuple[str, str]
):
    """GitHub lists repository runners per repository: with '*' the reaper could not know where to look."""
    with pytest.raises(ConfigError, match="RUNNER_SCOPE=repo needs ALLOWED_REPOSITORIES to name each repository"):
        make_plane(aws, fake_github, app_key[0], RUNNER_SCOPE="repo", ALLOWED_REPOSITORIES='["*"]')
