"""The reaper, on each kind of orphan, from the EC2, GitHub and SSM sides."""

from __future__ import annotations

import time

import pytest

from runner.control_plane.fake_github import FakeGitHub
from runner.control_plane.reaper import Reaper
from tests.control_plane.test_scale_up import job
from tests.fix_control_plane import Aws, Plane

HOUR = 3600


def reaper(plane: Plane, *, after_s: float) -> Reaper:
    return Reaper(plane.config, plane.fleet, plane.github, plane.jit, clock=lambda: time.time() + after_s)


def launch(plane: Plane, fake: FakeGitHub, job_id: int) -> tuple[str, str]:
    fake.add_job(job_id)
    result = plane.scale_up().handle(job(job_id))
    assert result.instance_id and result.runner_name
    return result.instance_id, result.runner_name


def live_ids(aws: Aws) -> set[str]:
    return {i["InstanceId"] for i in aws.live_instances()}


def test_instance_whose_runner_never_came_online_is_terminated_after_the_boot_timeout(
    plane: Plane, aws: Aws, fake_github: FakeGitHub
):
    instance, runner = launch(plane, fake_github, 1)
    early = reaper(plane, after_s=60).run()
    assert early.kept == {instance: "keep: starting or working"} and live_ids(aws) == {instance}
    report = reaper(plane, after_s=plane.config.boot_timeout_s + 60).run()
    assert "never came online" in report.terminated[instance]
    assert live_ids(aws) == set()
    assert report.runners_deleted == [runner] and fake_github.runner_named(runner) is None
    assert report.parameters_deleted == [f"/vpc-runners/test-fleet/jit/{instance}"]


def test_instance_past_its_maximum_lifetime_is_terminated(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    instance, runner = launch(plane, fake_github, 2)
    fake_github.runner_named(runner).status = "online"
    report = reaper(plane, after_s=plane.config.max_lifetime_s + 1).run()
    assert "maximum lifetime" in report.terminated[instance]


def test_busy_runner_is_never_touched(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    instance, runner = launch(plane, fake_github, 3)
    fake_github.runner_named(runner).status = "online"
    fake_github.runner_named(runner).busy = True
    report = reaper(plane, after_s=plane.config.max_lifetime_s + HOUR).run()
    assert report.kept == {instance: "keep: runner busy"} and report.terminated == {}
    assert live_ids(aws) == {instance} and fake_github.runner_named(runner) is not None


def test_idle_runner_whose_job_went_elsewhere_is_terminated(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    instance, runner = launch(plane, fake_github, 4)
    fake_github.runner_named(runner).status = "online"
    assert reaper(plane, after_s=600).run().terminated == {}
    report = reaper(plane, after_s=plane.config.idle_timeout_s + 60).run()
    assert "idle" in report.terminated[instance]


def test_runner_registration_without_an_instance_is_deleted_unless_busy(
    plane: Plane, aws: Aws, fake_github: FakeGitHub
):
    instance_a, runner_a = launch(plane, fake_github, 5)
    instance_b, runner_b = launch(plane, fake_github, 6)
    aws.ec2.terminate_instances(InstanceIds=[instance_a, instance_b])  # e.g. a spot reclaim or a manual stop
    fake_github.runner_named(runner_b).busy = True  # GitHub has not caught up yet
    foreign = fake_github._jit(b'{"name": "someone-elses-runner", "runner_group_id": 1, "labels": ["x"]}')
    assert foreign[0] == 201
    report = reaper(plane, after_s=60).run()
    assert report.runners_deleted == [runner_a]
    assert fake_github.runner_named(runner_b) is not None  # busy: left alone
    assert fake_github.runner_named("someone-elses-runner") is not None  # not this fleet's


def test_leftover_jit_parameter_is_deleted(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    aws.ssm.put_parameter(Name="/vpc-runners/test-fleet/jit/i-0deadbeef0000000", Type="SecureString", Value="x")
    instance, _ = launch(plane, fake_github, 7)
    report = reaper(plane, after_s=60).run()
    assert report.parameters_deleted == ["/vpc-runners/test-fleet/jit/i-0deadbeef0000000"]
    assert aws.ssm.get_parameter(Name=f"/vpc-runners/test-fleet/jit/{instance}")  # its own is kept


def test_github_unavailable_means_nothing_is_terminated(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    instance, _ = launch(plane, fake_github, 8)
    fake_github.inject("GET", r"/actions/runners$", 502, times=10)
    report = reaper(plane, after_s=plane.config.max_lifetime_s + 1).run()
    assert report.error and "nothing reaped" in report.error
    assert report.terminated == {} and live_ids(aws) == {instance}


@pytest.mark.parametrize(
    ("hold_for", "after", "kept"),
    [
        (2 * HOUR, 1 * HOUR, True),  # held and within the hold
        (2 * HOUR, 3 * HOUR, False),  # hold over
        (100 * HOUR, 5 * HOUR, False),  # a hold past the ceiling is cut at the ceiling (4 h)
    ],
)
def test_debugging_hold_is_respected_up_to_the_ceiling(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, hold_for: int, after: int, kept: bool
):
    instance, _ = launch(plane, fake_github, 9)
    aws.ec2.create_tags(
        Resources=[instance], Tags=[{"Key": "vpc-runners:hold-until", "Value": str(int(time.time()) + hold_for)}]
    )
    report = reaper(plane, after_s=after).run()
    assert (instance in report.kept) is kept and (instance in report.terminated) is not kept


def test_reaper_only_sees_its_own_fleet(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    other = aws.ec2.run_instances(
        ImageId="ami-0123456789abcdef0",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": "vpc-runners:fleet", "Value": "another-stack"}]}
        ],
    )
    other_id = other["Instances"][0]["InstanceId"]
    reaper(plane, after_s=plane.config.max_lifetime_s + HOUR).run()
    state = aws.ec2.describe_instances(InstanceIds=[other_id])["Reservations"][0]["Instances"][0]["State"]["Name"]
    assert state == "running"
