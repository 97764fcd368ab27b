"""scripts/drain: stop launches, then reap until nothing of the stack's runners is left (instances, JIT
configs, GitHub registrations). AWS is moto; the reaper is the real Lambda handler; GitHub the fake API."""

from __future__ import annotations

import json
from typing import Any

import pytest

from ops import drain
from runner.control_plane import handlers
from simulator.fake_github import FakeGitHub
from tests.control_plane.test_scale_up import job
from tests.fix_control_plane import Aws, Plane

STACK = "test-fleet"


def reaper(payload: dict[str, Any]) -> dict[str, Any]:
    """The reaper function as Lambda would run it (its answer through JSON, as Invoke returns it)."""
    return json.loads(json.dumps(handlers.reaper_handler(payload, None)))


def three_runners(plane: Plane, fake_github: FakeGitHub) -> list[str]:
    ids = []
    for job_id in (61, 62, 63):
        fake_github.add_job(job_id)
        ids.append(plane.scale_up().handle(job(job_id)).instance_id)
    busy = fake_github.runner_named(plane.config.runner_name(ids[0]))
    assert busy is not None
    busy.status, busy.busy = "online", True
    return ids


def nothing_left(aws: Aws, plane: Plane, fake_github: FakeGitHub) -> None:
    assert aws.live_instances(STACK) == []
    assert plane.jit.names() == []
    assert fake_github.runners == {}


def test_drain_waits_for_the_busy_runner_then_leaves_nothing(lambdas, aws: Aws, plane: Plane, fake_github):
    ids = three_runners(plane, fake_github)
    waits: list[float] = []

    def job_ends(seconds: float) -> None:  # while drain waits, the busy runner's job ends
        waits.append(seconds)
        runner = fake_github.runner_named(plane.config.runner_name(ids[0]))
        assert runner is not None
        runner.busy = False

    result = drain.drain(lambdas, STACK, now=False, wait_s=600, invoke=reaper, sleep=job_ends, log=lambda line: None)
    assert sorted(result["terminated"]) == sorted(ids) and result["kept"] == {}
    assert waits == [30.0], "one wait: the first pass kept the busy runner"
    assert (
        lambdas.get_function_concurrency(FunctionName="vpc-runners-test-fleet-scale-up")["ReservedConcurrentExecutions"]
        == 0
    )
    nothing_left(aws, plane, fake_github)


def test_drain_now_takes_busy_runners_too(lambdas, aws: Aws, plane: Plane, fake_github):
    ids = three_runners(plane, fake_github)
    busy = fake_github.runner_named(plane.config.runner_name(ids[0]))
    result = drain.drain(lambdas, STACK, now=True, wait_s=0, invoke=reaper, sleep=pytest.fail, log=lambda line: None)
    assert sorted(result["terminated"]) == sorted(ids)
    assert aws.live_instances(STACK) == [] and plane.jit.names() == []
    # GitHub keeps a busy runner's registration until its job is cancelled; the next pass deletes it.
    assert busy is not None and list(fake_github.runners.values()) == [busy]
    busy.busy = False
    assert reaper({"drain": "now"})["runners_deleted"] == [busy.name]
    nothing_left(aws, plane, fake_github)


def test_a_runner_still_busy_when_the_wait_ends_is_named_exit_1(lambdas, aws, plane, fake_github, monkeypatch, capsys):
    ids = three_runners(plane, fake_github)
    monkeypatch.setattr(drain, "invoke_reaper", lambda client, stack, payload: reaper(payload))
    assert drain.main(["--stack", STACK, "--wait", "0", "--region", "us-east-1"]) == drain.Exit.STILL_BUSY
    captured = capsys.readouterr()
    assert f"still busy: {ids[0]}" in captured.err
    assert [i["InstanceId"] for i in aws.live_instances(STACK)] == [ids[0]]


def test_the_reaper_failing_is_exit_3_and_nothing_is_terminated(lambdas, aws, plane, fake_github, monkeypatch, capsys):
    three_runners(plane, fake_github)
    fake_github.inject("GET", r"/actions/runners$", 500, times=10)
    monkeypatch.setattr(drain, "invoke_reaper", lambda client, stack, payload: reaper(payload))
    assert drain.main(["--stack", STACK, "--region", "us-east-1"]) == drain.Exit.AWS_ERROR
    assert "GitHub unavailable, nothing reaped" in capsys.readouterr().err
    assert len(aws.live_instances(STACK)) == 3


def test_negative_wait_is_exit_2(capsys):
    assert drain.main(["--stack", STACK, "--wait", "-1"]) == drain.Exit.BAD_INPUT
