"""The per-job trace and the metrics: lines each component prints, valid EMF (held to AWS's
specification), and one job's timeline assembled from them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from runner.control_plane import handlers, metrics, trace
from runner.control_plane.reaper import instance_gone
from runner.control_plane.scale_up import process_batch
from runner.control_plane.webhook import receive
from simulator.fake_github import FakeGitHub
from tests.control_plane import emf_spec
from tests.control_plane.test_scale_up import CapacityForSpot, job
from tests.fix_control_plane import WEBHOOK_SECRET, Aws, Plane, control_plane_env, delivery, event, make_plane

POOL_EVENT = "workflow_job_queued.json"


def printed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]


def deliver(plane: Plane, action: str, **job_fields: Any) -> int:
    payload = event(POOL_EVENT, action=action)
    payload["workflow_job"].update(job_fields)
    headers, body = delivery(payload, f"d-{action}")
    return receive(
        headers, body, secret=WEBHOOK_SECRET, pools=plane.config.pools, enqueue=lambda m: None, now=lambda: 1000.0
    ).status


def test_a_line_with_an_interval_is_valid_emf_and_one_without_is_a_plain_log_line(capsys):
    with_metric = trace.record("prod", "started", 130.5, job_id=7, known={"created": 100.0})
    plain = trace.record("prod", "created", 100.0, job_id=7)
    assert emf_spec.problems(with_metric) == []
    assert with_metric["QueueToStart"] == 30.5 and with_metric["_aws"]["Timestamp"] == 130500
    assert with_metric["_aws"]["CloudWatchMetrics"][0]["Metrics"] == [{"Name": "QueueToStart", "Unit": "Seconds"}]
    assert "_aws" not in plain and plain["trace"] == "created" and plain["at"] == "1970-01-01T00:01:40.000Z"
    assert printed(capsys) == [with_metric, plain]


def test_counts_by_reason_use_a_reason_dimension_and_stay_valid_emf(capsys):
    metrics.emit("prod", "LaunchFailures", reason="capacity", detail="no capacity in any subnet")
    (line,) = printed(capsys)
    assert emf_spec.problems(line) == []
    assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Fleet"], ["Fleet", "Reason"]]
    assert line["Reason"] == "capacity" and line["LaunchFailures"] == 1


@pytest.mark.parametrize(
    ("milestone", "instance_id", "problem"),
    [("queued", None, "unknown milestone"), ("launched", "i-$(reboot)", "not an instance id")],
)
def test_a_bad_milestone_or_instance_id_is_refused(milestone, instance_id, problem):
    with pytest.raises(ValueError, match=problem):
        trace.record("prod", milestone, 1.0, instance_id=instance_id)


def test_the_spec_checker_catches_what_cloudwatch_would_drop():
    assert emf_spec.problems({"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}})
    bad = metrics.emf("prod", {"X": 1.0}, unit="Seconds")
    bad["X"] = "1.0"
    assert emf_spec.problems(bad) == ["metric 'X' must have a number (or array of numbers) at the root"]
    assert emf_spec.problems(metrics.emf("prod", {"X": 1.0}, unit="Minutes")) == [
        "metric 'X': unit 'Minutes' is not a CloudWatch unit"
    ]


def test_the_receiver_traces_queued_started_and_finished_jobs_of_its_pool(plane: Plane, capsys):
    created = "2026-11-21T10:00:00Z"
    assert deliver(plane, "queued", created_at=created) == 202
    assert deliver(plane, "in_progress", created_at=created, started_at="2026-11-21T10:00:42Z") == 200
    assert (
        deliver(
            plane,
            "completed",
            started_at="2026-11-21T10:00:42Z",
            completed_at="2026-11-21T10:05:42Z",
            conclusion="success",
        )
        == 200
    )
    lines = printed(capsys)
    assert [line["trace"] for line in lines] == ["created", "received", "enqueued", "started", "finished"]
    by = {line["trace"]: line for line in lines}
    assert by["started"]["QueueToStart"] == 42.0 and by["finished"]["JobDuration"] == 300.0
    assert by["finished"]["conclusion"] == "success"
    assert {line["job_id"] for line in lines} == {event(POOL_EVENT)["workflow_job"]["id"]}
    for line in lines:
        assert "_aws" not in line or emf_spec.problems(line) == []


def test_a_conclusion_outside_githubs_set_is_not_written(plane: Plane, capsys):
    fields = {"started_at": "2026-11-21T10:00:42Z", "completed_at": "2026-11-21T10:05:42Z"}
    assert deliver(plane, "completed", conclusion="::stop-commands::x", **fields) == 200
    (line,) = printed(capsys)
    assert "conclusion" not in line and "stop-commands" not in json.dumps(line)


def test_scale_up_traces_pick_launch_and_setup_with_the_queue_wait(plane: Plane, aws: Aws, fake_github, capsys):
    fake_github.add_job(51)
    sent_ms = int(datetime.now(UTC).timestamp() * 1000) - 4000
    record = {
        "messageId": "m51",
        "body": job(51).to_json(),
        "receiptHandle": "r51",
        "attributes": {"SentTimestamp": str(sent_ms)},
    }
    assert process_batch([record], plane.scale_up(), lambda r, d: None, lambda b, r: None) == {"batchItemFailures": []}
    lines = [line for line in printed(capsys) if "trace" in line]
    assert [line["trace"] for line in lines] == ["picked", "launched", "registered"]
    (instance,) = aws.live_instances()
    assert lines[1]["instance_id"] == lines[2]["instance_id"] == instance["InstanceId"]
    assert lines[0]["QueueWait"] >= 4.0
    assert "LaunchTime" in lines[1] and "RunnerSetup" in lines[2]
    for line in lines:
        assert emf_spec.problems(line) == []


def test_a_failed_launch_is_counted_by_its_reason(aws: Aws, fake_github: FakeGitHub, app_key, capsys):
    plane = make_plane(aws, fake_github, app_key[0])
    plane.fleet.ec2 = CapacityForSpot(aws.ec2, on_demand_too=True)
    fake_github.add_job(52)
    record = {"messageId": "m52", "body": job(52).to_json(), "receiptHandle": "r52"}
    process_batch([record], plane.scale_up(), lambda r, d: None, lambda b, r: None)
    (failure,) = [line for line in printed(capsys) if "LaunchFailures" in line]
    assert failure["Reason"] == "capacity" and emf_spec.problems(failure) == []


def test_the_instance_gone_line_names_the_job_and_its_lifetime(plane: Plane, aws: Aws, fake_github, capsys):
    fake_github.add_job(53)
    launched = plane.scale_up().handle(job(53))
    assert launched.instance_id
    aws.ec2.terminate_instances(InstanceIds=[launched.instance_id])
    capsys.readouterr()
    assert instance_gone(plane.config, plane.fleet, launched.instance_id, datetime.now(UTC).timestamp() + 60)
    (line,) = printed(capsys)
    assert line["trace"] == "instance_gone" and line["job_id"] == 53 and line["InstanceLifetime"] >= 60
    other = make_plane(aws, fake_github, "unused", VPC_RUNNERS_FLEET="another-stack")
    assert not instance_gone(other.config, other.fleet, launched.instance_id, 0.0), "another fleet's instance"


def test_the_reaper_function_takes_ec2_state_changes(aws: Aws, fake_github, app_key, monkeypatch, capsys):
    """The EventBridge event as EC2 sends it ("EC2 Instance State-change Notification", AWS docs)."""
    for key, value in control_plane_env(aws, fake_github.url).items():
        monkeypatch.setenv(key, value)
    handlers._config.cache_clear()
    plane = make_plane(aws, fake_github, app_key[0])
    fake_github.add_job(54)
    instance_id = plane.scale_up().handle(job(54)).instance_id
    capsys.readouterr()
    state_change = {
        "version": "0",
        "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "account": "123456789012",
        "time": "2026-11-22T10:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:ec2:us-east-1:123456789012:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, "state": "terminated"},
    }
    assert handlers.reaper_handler(state_change, None) == {"traced": True}
    (line,) = printed(capsys)
    assert line["trace"] == "instance_gone" and line["at"] == "2026-11-22T10:00:00.000Z"
    running = {**state_change, "detail": {"instance-id": instance_id, "state": "running"}}
    assert handlers.reaper_handler(running, None) == {"traced": False}
    handlers._config.cache_clear()


def test_a_timeline_is_assembled_from_any_mix_of_log_lines():
    lines = [
        "START RequestId: 1 Version: $LATEST",
        json.dumps({"trace": "created", "at": "2026-11-22T10:00:00.000Z", "job_id": 9}),
        json.dumps({"trace": "launched", "at": "2026-11-22T10:00:03.000Z", "job_id": 9, "instance_id": "i-0abc12345"}),
        json.dumps({"trace": "boot_started", "at": "2026-11-22T10:00:20.000Z", "instance_id": "i-0abc12345"}),
        json.dumps({"trace": "boot_started", "at": "2026-11-22T10:00:21.000Z", "instance_id": "i-0other999"}),
        json.dumps({"trace": "started", "at": "2026-11-22T10:00:40.000Z", "job_id": 9}),
        json.dumps({"trace": "created", "at": "2026-11-22T10:00:00.000Z", "job_id": 10}),
        "{not json",
    ]
    timeline = trace.timeline(trace.parse(lines), 9)
    assert [m.milestone for m in timeline.marks] == ["created", "launched", "boot_started", "started"]
    assert timeline.instance_ids == ("i-0abc12345",)
    assert timeline.intervals() == {"QueueToStart": 40.0}
    assert "received" in timeline.missing and "instance_gone" in timeline.missing
    text = timeline.render()
    assert "job 9 on i-0abc12345" in text and "40.000 s  started" in text and "missing: received" in text
