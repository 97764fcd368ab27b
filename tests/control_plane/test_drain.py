"""scripts/drain: stop launches, then reap until nothing of the stack's runners is left (instances, JIT
configs, GitHub registrations). AWS is moto; the reaper is the real Lambda handler; GitHub the fake API."""

from __future__ import annotations

import json
from typing import Any

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


class Clock:
    """Time for drain: it moves only when drain sleeps (``during``: what happens while it does)."""

    def __init__(self, during: Any = None) -> None:
        self.now, self.waits, self.during = 0.0, [], during

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        if self.during:
            self.during()

    def __call__(self) -> float:
        return self.now


def nothing_left(aws: Aws, plane: Plane, fake_github: FakeGitHub) -> None:
    assert aws.live_instances(STACK) == []
    assert plane.jit.names() == []
    assert fake_github.runners == {}


def test_drain_waits_for_the_busy_runner_then_leaves_nothing(lambdas, aws: Aws, plane: Plane, fake_github):
    ids = three_runners(plane, fake_github)

    def job_ends() -> None:  # while drain waits, the busy runner's job ends
        runner = fake_github.runner_named(plane.config.runner_name(ids[0]))
        if runner is not None:
            runner.busy = False

    clock = Clock(job_ends)
    result = drain.drain(
        lambdas, STACK, now=False, wait_s=600, invoke=reaper, sleep=clock.sleep, clock=clock, log=lambda line: None
    )
    assert sorted(result["terminated"]) == sorted(ids) and result["kept"] == {}
    # The first pass kept the busy runner; the second reaped it; the third, once scale-up's timeout had
    # passed since launches stopped, found nothing: drained.
    assert clock.waits == [30.0, 30.0] and clock.now == drain.SCALE_UP_TIMEOUT_S
    assert (
        lambdas.get_function_concurrency(FunctionName="vpc-runners-test-fleet-scale-up")["ReservedConcurrentExecutions"]
        == 0
    )
    nothing_left(aws, plane, fake_github)


def test_drain_now_takes_busy_runners_too(lambdas, aws: Aws, plane: Plane, fake_github):
    ids = three_runners(plane, fake_github)
    busy = fake_github.runner_named(plane.config.runner_name(ids[0]))
    assert busy is not None and busy.busy
    clock = Clock()
    result = drain.drain(
        lambdas, STACK, now=True, wait_s=0, invoke=reaper, sleep=clock.sleep, clock=clock, log=lambda line: None
    )
    assert sorted(result["terminated"]) == sorted(ids)
    assert aws.live_instances(STACK) == [] and plane.jit.names() == []
    # GitHub refuses to delete a runner it shows running a job (422): drain names it, and is not done.
    assert result["runners_left"] == [busy.name] and list(fake_github.runners.values()) == [busy]
    busy.busy = False  # GitHub has failed the job of the instance that is gone
    again = drain.drain(
        lambdas, STACK, now=True, wait_s=0, invoke=reaper, sleep=clock.sleep, clock=clock, log=lambda line: None
    )
    assert again["runners_deleted"] == [busy.name] and again["runners_left"] == []
    nothing_left(aws, plane, fake_github)


def test_a_launch_under_way_when_launches_stopped_is_reaped_before_drained(
    lambdas, aws: Aws, plane: Plane, fake_github
):
    """Reserved concurrency 0 does not stop a scale-up invocation already running: its instance can land
    after the first pass. Drain is done only after a pass that finds nothing, once that can no longer be."""
    fake_github.add_job(71)
    landed: list[str] = []

    def late_launch() -> None:
        if not landed:
            landed.append(plane.scale_up().handle(job(71)).instance_id)

    clock = Clock(late_launch)
    result = drain.drain(
        lambdas, STACK, now=False, wait_s=0, invoke=reaper, sleep=clock.sleep, clock=clock, log=lambda line: None
    )
    assert result["terminated"] == landed and result["kept"] == {}
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
