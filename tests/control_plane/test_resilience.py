"""No job lost to a timeout: a handler killed at any step, waits bounded by the invocation, repository scope.

A Lambda that times out is killed wherever it is; SQS then redelivers the message. ``Killed`` stands for
that (a BaseException, so no ``except Exception`` in the code under test can swallow it).
"""

from __future__ import annotations

from typing import Any

import pytest

from runner.control_plane.errors import RateLimited, RetryLater
from runner.control_plane.github import GitHubClient
from runner.control_plane.reaper import Reaper
from runner.control_plane.scale_up import Launch
from simulator.fake_github import FakeGitHub
from tests.control_plane.test_scale_up import job
from tests.fix_control_plane import Aws, Plane, make_plane


class Killed(BaseException):
    """The Lambda runtime ending an invocation at its timeout."""


def kill_after(monkeypatch: pytest.MonkeyPatch, target: Any, name: str) -> None:
    real = getattr(target, name)

    def then_die(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        monkeypatch.setattr(target, name, real)  # only this invocation dies
        raise Killed(name)

    monkeypatch.setattr(target, name, then_die)


def live_for(aws: Aws, job_id: int) -> list[dict[str, Any]]:
    return [i for i in aws.live_instances() if {"Key": "vpc-runners:job-id", "Value": str(job_id)} in i["Tags"]]


STEPS = {
    "after CreateFleet": lambda p: (p.fleet, "launch"),
    "after generate-jitconfig": lambda p: (p.github, "generate_jitconfig"),
    "after storing the config": lambda p: (p.jit, "put"),
    "after tagging the instance": lambda p: (p.fleet, "tag"),
}


@pytest.mark.parametrize("step", STEPS)
def test_a_handler_killed_at_any_step_loses_no_job_and_leaks_nothing(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch, step: str
):
    fake_github.add_job(61)
    kill_after(monkeypatch, *STEPS[step](plane))
    with pytest.raises(Killed):
        plane.scale_up().handle(job(61))
    retry: Launch = plane.scale_up().handle(job(61))  # SQS redelivers the message to a new invocation
    assert retry.outcome in ("launched", "duplicate")
    (instance,) = live_for(aws, 61)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    name = tags["vpc-runners:runner-name"]
    assert name == plane.config.runner_name(instance["InstanceId"])
    assert aws.ssm.get_parameter(Name=plane.config.jit_parameter(instance["InstanceId"]))
    # Nothing of the dead invocation is left: no other instance, config or registration.
    registered = [r.name for r in fake_github.runners.values()]
    assert registered == [name]
    parameters = aws.ssm.get_parameters_by_path(Path=plane.config.jit_parameter_prefix)["Parameters"]
    assert [p["Name"] for p in parameters] == [plane.config.jit_parameter(instance["InstanceId"])]


def test_a_runner_that_already_took_its_config_is_kept_when_the_tagging_was_lost(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
):
    """Killed after storing the config; the instance boots, takes and deletes it; only then the retry comes."""
    fake_github.add_job(62)
    kill_after(monkeypatch, plane.jit, "put")
    with pytest.raises(Killed):
        plane.scale_up().handle(job(62))
    (instance,) = live_for(aws, 62)
    aws.ssm.delete_parameter(Name=plane.config.jit_parameter(instance["InstanceId"]))  # the instance took it
    runner = fake_github.runner_named(plane.config.runner_name(instance["InstanceId"]))
    assert runner is not None
    runner.status, runner.busy = "online", True
    assert plane.scale_up().handle(job(62)).outcome == "duplicate"
    assert [i["InstanceId"] for i in live_for(aws, 62)] == [instance["InstanceId"]], "a running job is never killed"


def client(fake: FakeGitHub, app_key: str, remaining: float, sleeps: list[float]) -> GitHubClient:
    from runner.control_plane.github import AppAuth

    return GitHubClient(
        fake.url, "acme", AppAuth(fake.app_id, app_key), remaining_s=lambda: remaining, sleep=sleeps.append
    )


@pytest.mark.parametrize(
    ("headers", "remaining", "slept", "requeued"),
    [
        ({"retry-after": "3"}, 100.0, [3.0], False),  # short, and time enough: waited out
        ({"retry-after": "3"}, 6.0, [], True),  # short, but the invocation is about to end: requeued
        ({"retry-after": "15"}, 30.0, [15.0], False),
        ({}, 100.0, [], True),  # secondary limit without retry-after: at least a minute, so requeued
    ],
)
def test_no_rate_limit_wait_outlives_the_invocation(
    fake_github: FakeGitHub,
    app_key: tuple[str, str],
    headers: dict[str, str],
    remaining: float,
    slept: list[float],
    requeued: bool,
):
    fake_github.add_job(63)
    fake_github.inject(
        "GET", r"/actions/jobs/63$", 429, headers=headers, body={"message": "You have exceeded a secondary rate limit"}
    )
    sleeps: list[float] = []
    github = client(fake_github, app_key[0], remaining, sleeps)
    if requeued:
        with pytest.raises(RateLimited) as raised:
            github.get_job("acme", "shop", 63, 777)
        assert isinstance(raised.value, RetryLater) and raised.value.delay_s and raised.value.delay_s >= 3
    else:
        assert github.get_job("acme", "shop", 63, 777)
    assert sleeps == slept


def test_a_secondary_limit_403_without_retry_after_is_a_rate_limit_not_a_permission_error(
    fake_github: FakeGitHub, app_key: tuple[str, str]
):
    fake_github.add_job(64)
    fake_github.inject("GET", r"/actions/jobs/64$", 403, body={"message": "You have exceeded a secondary rate limit."})
    with pytest.raises(RateLimited) as raised:
        client(fake_github, app_key[0], 100.0, []).get_job("acme", "shop", 64, 777)
    assert raised.value.delay_s == 61


def test_repository_level_runners_live_and_die_at_the_repository(
    aws: Aws, fake_github: FakeGitHub, app_key: tuple[str, str], monkeypatch: pytest.MonkeyPatch
):
    """RUNNER_SCOPE=repo: created, listed, deleted and reaped at /repos/{owner}/{repo}/actions/runners."""
    plane = make_plane(aws, fake_github, app_key[0], RUNNER_SCOPE="repo")
    paths: list[str] = []
    real_request = plane.github.request

    def record(method: str, path: str, **kwargs: Any) -> Any:
        paths.append(f"{method} {path.split('?')[0]}")
        return real_request(method, path, **kwargs)

    monkeypatch.setattr(plane.github, "request", record)
    fake_github.add_job(65)
    fake_github.inject("POST", r"generate-jitconfig$", 500)  # first setup fails: the undo deletes at the repo
    with pytest.raises(RetryLater):
        plane.scale_up().handle(job(65))
    assert plane.scale_up().handle(job(65)).outcome == "launched"
    (instance,) = live_for(aws, 65)
    aws.ec2.terminate_instances(InstanceIds=[instance["InstanceId"]])
    report = Reaper(plane.config, plane.fleet, plane.github, plane.jit).run()
    assert report.runners_deleted == [plane.config.runner_name(instance["InstanceId"])]
    runner_calls = [p for p in paths if "/actions/runners" in p]
    assert runner_calls and all(p.split()[1].startswith("/repos/acme/") for p in runner_calls), runner_calls
    assert plane.config.runner_name(instance["InstanceId"]) not in [r.name for r in fake_github.runners.values()]


def test_the_job_of_a_refused_or_waiting_delivery_launches_nothing(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    """A job still waiting for an environment's approval (GitHub reports it `waiting`) is not launched for."""
    fake_github.add_job(66, status="waiting")
    assert plane.scale_up().handle(job(66)).outcome == "not-queued" and live_for(aws, 66) == []
