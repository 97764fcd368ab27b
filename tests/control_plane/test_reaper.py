"""The reaper, on each kind of orphan, from the EC2, GitHub and SSM sides."""

from __future__ import annotations

import json
import time
from dataclasses import replace

import pytest

from runner.control_plane.fleet import Fleet
from runner.control_plane.reaper import Reaper
from simulator.fake_github import FakeGitHub
from tests.control_plane.test_scale_up import job
from tests.fix_control_plane import Aws, Plane, make_plane

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
    plane: Plane, aws: Aws, fake_github: FakeGitHub, capsys: pytest.CaptureFixture[str]
):
    instance, runner = launch(plane, fake_github, 1)
    early = reaper(plane, after_s=60).run()
    assert early.kept == {instance: "keep: starting or working"} and live_ids(aws) == {instance}
    capsys.readouterr()
    report = reaper(plane, after_s=plane.config.boot_timeout_s + 60).run()
    assert "never came online" in report.terminated[instance]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "BootTimeouts" in line]
    assert [(e["BootTimeouts"], e["instance_id"]) for e in emitted] == [(1, instance)]
    assert live_ids(aws) == set()
    assert report.runners_deleted == [runner] and fake_github.runner_named(runner) is None
    assert report.parameters_deleted == [f"/vpc-runners/test-fleet/jit/{instance}"]


def test_instance_past_its_maximum_lifetime_is_terminated(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    instance, runner = launch(plane, fake_github, 2)
    fake_github.runner_named(runner).status = "online"
    report = reaper(plane, after_s=plane.config.max_lifetime_s + 1).run()
    assert "maximum lifetime" in report.terminated[instance]


def test_busy_runner_is_kept_until_its_maximum_lifetime_then_terminated(
    plane: Plane, aws: Aws, fake_github: FakeGitHub
):
    instance, runner = launch(plane, fake_github, 3)
    fake_github.runner_named(runner).status = "online"
    fake_github.runner_named(runner).busy = True
    report = reaper(plane, after_s=plane.config.max_lifetime_s - 60).run()
    assert report.kept == {instance: "keep: runner busy"} and report.terminated == {}
    assert live_ids(aws) == {instance} and fake_github.runner_named(runner) is not None
    # The maximum lifetime is a hard cap: a job cannot keep its instance (and its database access) longer.
    capped = reaper(plane, after_s=plane.config.max_lifetime_s + 60).run()
    assert "maximum lifetime" in capped.terminated[instance] and live_ids(aws) == set()


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


def iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


@pytest.mark.parametrize(
    ("conclusion", "ended_ago_s", "kept"),
    [
        ("failure", 10 * 60, True),  # failed 10 min ago: held (the instance asked; the ceiling is 1 h)
        ("failure", 2 * HOUR, False),  # failed 2 h ago: past the ceiling
        ("success", 10 * 60, False),  # a job that succeeded is never held, whatever it wrote
        ("cancelled", 10 * 60, False),
    ],
)
def test_a_hold_is_honoured_only_after_a_failed_job_and_up_to_the_ceiling(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, conclusion: str, ended_ago_s: int, kept: bool
):
    instance, runner = launch(plane, fake_github, 9)
    now = time.time() + plane.config.boot_timeout_s + 600  # its ephemeral runner is gone: the job ended
    fake_github.set_job_status(9, "completed", conclusion, iso(now - ended_ago_s))
    fake_github.runner_named(runner).status = "offline"
    report = reaper(plane, after_s=plane.config.boot_timeout_s + 600).run()
    assert (instance in report.kept) is kept and (instance in report.terminated) is not kept
    if kept:
        assert "failed; held for debugging" in report.kept[instance]


def test_a_held_instance_cannot_outlive_its_maximum_lifetime(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    instance, _ = launch(plane, fake_github, 10)
    after = plane.config.max_lifetime_s + 60
    fake_github.set_job_status(10, "completed", "failure", iso(time.time() + after - 60))
    assert "maximum lifetime" in reaper(plane, after_s=after).run().terminated[instance]


def test_a_parameter_written_while_the_reaper_runs_is_not_taken_for_a_leftover(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
):
    """The race: parameters listed first, instances second, so a launch in between keeps its config."""
    fake_github.add_job(11)
    own_fleet = Fleet(plane.fleet.ec2, plane.config)
    the_reaper = Reaper(plane.config, own_fleet, plane.github, plane.jit, clock=lambda: time.time() + 60)
    real_live = own_fleet.live
    launched: list[str] = []

    def live_after_a_launch() -> list:
        result = plane.scale_up().handle(job(11))  # scale-up runs between the two listings
        launched.append(result.instance_id or "")
        return real_live()

    monkeypatch.setattr(own_fleet, "live", live_after_a_launch)
    report = the_reaper.run()
    assert launched and report.parameters_deleted == []
    assert aws.ssm.get_parameter(Name=f"/vpc-runners/test-fleet/jit/{launched[0]}", WithDecryption=True)


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


def test_two_stacks_in_one_organization_never_reap_each_others_runners(
    aws: Aws, fake_github: FakeGitHub, app_key: tuple[str, str]
):
    """Stack "test" and stack "test-eu": names vpc-test-... and vpc-test-eu-...; each reaps only its own."""
    ours = make_plane(aws, fake_github, app_key[0], RUNNER_NAME_PREFIX="vpc-test")
    theirs = make_plane(
        aws, fake_github, app_key[0], RUNNER_NAME_PREFIX="vpc-test-eu", VPC_RUNNERS_FLEET="test-eu", POOL_LABEL="vpc"
    )
    launch(ours, fake_github, 21)
    fake_github.add_job(22)
    their = theirs.scale_up().handle(replace(job(22), pool="test-eu"))
    assert their.runner_name and their.runner_name.startswith("vpc-test-eu-i-")
    aws.ec2.terminate_instances(InstanceIds=[their.instance_id])  # their instance is gone: theirs to clean up
    report = reaper(ours, after_s=60).run()
    assert report.runners_deleted == [] and fake_github.runner_named(their.runner_name) is not None
    assert ours.config.instance_of_runner(their.runner_name) is None


def test_an_instance_whose_runner_ran_its_job_is_reaped_but_is_no_boot_timeout(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, capsys: pytest.CaptureFixture[str]
):
    """An ephemeral runner's registration ends with its job; an instance still up after that (shutting
    down, or kept up by something) is reaped, and counted as nothing: BootTimeouts would page for it."""
    instance, runner = launch(plane, fake_github, 1)
    del fake_github.runners[fake_github.runner_named(runner).id]  # GitHub removes the ephemeral runner after its job
    capsys.readouterr()
    report = reaper(plane, after_s=plane.config.boot_timeout_s + 60).run()
    assert "registration is gone (its job is over)" in report.terminated[instance]
    assert "BootTimeouts" not in capsys.readouterr().out
