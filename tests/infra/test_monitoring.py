"""Alarms, their topic and the dashboard, as the program declares them; each on a metric the code emits."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from runner.control_plane import trace
from runner.control_plane.metrics import LAUNCH_FAILURE_REASONS, NAMESPACE
from tests.fix_pulumi import ACCOUNT, REGION, Program, base_config

REPO = Path(__file__).resolve().parents[2]
ALARMS = {
    "dead-letters",
    "queue-age",
    "launch-refused",
    "launch-failures",
    "boot-timeouts",
    "refused-jobs",
    *(f"{f}-{kind}" for f in ("webhook", "scale-up", "reaper") for kind in ("errors", "throttles")),
} - {"scale-up-throttles"}  # its queue's pollers outnumber its reserved concurrency: throttled by design


def emitted_counts() -> set[str]:
    """Every count metric the control plane emits: the names passed to metrics.emit in its source."""
    found = set()
    for path in (REPO / "runner" / "control_plane").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "emit"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
            ):
                found.add(node.args[1].value)
    return found


def alarms(program: Program) -> dict[str, dict]:
    return {
        a.inputs["name"].removeprefix("vpc-runners-test-"): a.inputs
        for a in program.of("aws:cloudwatch/metricAlarm:MetricAlarm")
    }


def test_every_alarm_exists_and_notifies_the_exported_topic(run_program):
    program = run_program(base_config(alarmEmail="platform@example.com"))
    found = alarms(program)
    assert set(found) == ALARMS
    topic = program.one("aws:sns/topic:Topic")
    assert program.exports["alarmTopicArn"] == f"arn:aws:sns:{REGION}:{ACCOUNT}:topic/{topic.name}"
    for alarm in found.values():
        assert alarm["alarmActions"] == alarm["okActions"] == [program.exports["alarmTopicArn"]]
        assert alarm["comparisonOperator"] == "GreaterThanThreshold"
        # No data: nothing happened; but SQS stops reporting an unread queue, which must not clear the DLQ alarm.
        assert alarm["treatMissingData"] == ("ignore" if alarm is found["dead-letters"] else "notBreaching")
    assert found["dead-letters"]["dimensions"] == {"QueueName": "vpc-runners-test-jobs-dlq.fifo"}
    assert (
        found["queue-age"]["metricName"] == "ApproximateAgeOfOldestMessage" and found["queue-age"]["threshold"] == 600
    )
    assert found["launch-refused"]["dimensions"] == {"Fleet": "test", "Reason": "refused"}
    assert found["webhook-throttles"]["dimensions"] == {"FunctionName": "vpc-runners-test-webhook"}
    (subscription,) = program.of("aws:sns/topicSubscription:TopicSubscription")
    assert subscription.inputs["protocol"] == "email" and subscription.inputs["endpoint"] == "platform@example.com"


def test_alarms_watch_metrics_the_code_emits_in_the_dimensions_it_uses(run_program):
    program = run_program(base_config())
    ours = {name: a for name, a in alarms(program).items() if a["namespace"] == NAMESPACE}
    counts = emitted_counts()
    assert {a["metricName"] for a in ours.values()} <= counts
    assert {"LaunchFailures", "BootTimeouts", "JobRefused"} <= counts
    for alarm in ours.values():
        assert set(alarm["dimensions"]) in ({"Fleet"}, {"Fleet", "Reason"}) and alarm["dimensions"]["Fleet"] == "test"
        if "Reason" in alarm["dimensions"]:
            assert alarm["dimensions"]["Reason"] in LAUNCH_FAILURE_REASONS
    assert program.of("aws:sns/topicSubscription:TopicSubscription") == [], "no email configured, none subscribed"


def test_only_this_stacks_alarms_may_publish_to_the_topic(run_program):
    program = run_program(base_config())
    policy = json.loads(program.one("aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"} and statement["Action"] == "sns:Publish"
    assert (
        statement["Condition"]["ArnLike"]["aws:SourceArn"]
        == f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:vpc-runners-test-*"
    )
    assert statement["Condition"]["StringEquals"]["aws:SourceAccount"] == ACCOUNT


def test_the_dashboard_plots_every_trace_interval_at_p50_and_p95(run_program):
    program = run_program(base_config())
    dashboard = program.one("aws:cloudwatch/dashboard:Dashboard")
    assert program.exports["dashboardName"] == dashboard.inputs["dashboardName"] == "vpc-runners-test"
    body = json.loads(dashboard.inputs["dashboardBody"])
    plotted = [
        (m[1], m[-1].get("stat") if isinstance(m[-1], dict) else None)
        for w in body["widgets"]
        if w["type"] == "metric"
        for m in w["properties"]["metrics"]
        if m[0] == NAMESPACE
    ]
    for interval in trace.INTERVALS:
        assert (interval, "p50") in plotted and (interval, "p95") in plotted, interval
    assert {name for name, _ in plotted} >= emitted_counts()
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(ALARMS)


def test_ec2_terminations_reach_the_reaper(run_program):
    program = run_program(base_config())
    rule = program.one("aws:cloudwatch/eventRule:EventRule", "instance-gone")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern == {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
        "detail": {"state": ["terminated"]},
    }
    target = program.one("aws:cloudwatch/eventTarget:EventTarget", "instance-gone")
    reaper = program.one("aws:lambda/function:Function", "reaper")
    assert target.inputs["arn"].endswith(f"/{reaper.name}")
    permission = program.one("aws:lambda/permission:Permission", "instance-gone").inputs
    assert permission["principal"] == "events.amazonaws.com" and permission["sourceArn"].endswith("instance-gone")


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [("alarmEmail", "not-an-address", "alarmEmail"), ("queueAgeAlarmSeconds", "5", "queueAgeAlarmSeconds")],
)
def test_bad_monitoring_settings_are_named(run_program, key, value, problem):
    with pytest.raises(Exception, match=problem):
        run_program(base_config(**{key: value}))
