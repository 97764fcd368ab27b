"""Monitoring: the alarms a platform team is paged by, their SNS topic, and a dashboard of the job trace.

Alarms (each named ``vpc-runners-<stack>-<what>``; notified on alarm and on recovery):
  dead-letters       a job in the dead-letter queue (a refused launch, or 100 failed tries): it got no runner
  queue-age          the oldest waiting job older than ``queueAgeAlarmSeconds``: jobs pile up
  <function>-errors  a Lambda error (an exception the handler did not turn into an answer)
  <function>-throttles  sustained throttling (15 min): GitHub deliveries or jobs wait
  launch-refused     EC2 refused a launch for good (permission or configuration)
  launch-failures    launches failing for 15 min for any reason (capacity, quota, throttling, setup)
  boot-timeouts      an instance whose runner never came online in time
  refused-jobs       a job the admission policy refused (a repository, event or branch not allowed)
The dashboard plots the trace's intervals (runner/control_plane/trace.py) at p50 and p95, the counts by
reason, the queues and the functions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from runner.control_plane.metrics import LAUNCH_FAILURE_REASONS, NAMESPACE

from .aws_context import AwsContext

PERIOD_S = 300
TRACE_WIDGETS = (
    ("From queued to running", ("QueueToStart", "QueueWait", "LaunchTime", "RunnerSetup", "DeliveryDelay")),
    ("Instance boot", ("BootTime", "InstallTime", "ConfigWait", "RunnerStart")),
    ("Jobs and instances", ("JobDuration", "InstanceLifetime")),
)


@dataclass
class MonitoringArgs:
    fleet: str
    aws: AwsContext
    queue_name: pulumi.Input[str]
    dead_letter_queue_name: pulumi.Input[str]
    function_names: dict[str, pulumi.Input[str]]  # purpose (webhook, scale-up, reaper) -> function name
    queue_age_alarm_s: int
    alarm_email: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


class Monitoring(pulumi.ComponentResource):
    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:monitoring:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx, prefix = args.aws, f"vpc-runners-{args.fleet}"
        self.args, self.resource_name = args, name
        # Alarm notifications carry alarm names and states, no secret: SSE would need a key whose policy
        # admits CloudWatch, which the aws/sns key's does not.
        self.topic = aws.sns.Topic(f"{name}-alarms", name=f"{prefix}-alarms", tags=args.tags, opts=child)
        aws.sns.TopicPolicy(
            f"{name}-alarms",
            arn=self.topic.arn,
            policy=self.topic.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "OnlyThisStacksAlarmsPublish",
                                "Effect": "Allow",
                                "Principal": {"Service": "cloudwatch.amazonaws.com"},
                                "Action": "sns:Publish",
                                "Resource": arn,
                                "Condition": {
                                    "StringEquals": {"aws:SourceAccount": ctx.account_id},
                                    "ArnLike": {"aws:SourceArn": ctx.arn("cloudwatch", f"alarm:{prefix}-*")},
                                },
                            }
                        ],
                    }
                )
            ),
            opts=child,
        )
        if args.alarm_email:
            aws.sns.TopicSubscription(
                f"{name}-alarm-email", topic=self.topic.arn, protocol="email", endpoint=args.alarm_email, opts=child
            )

        self.alarms: dict[str, aws.cloudwatch.MetricAlarm] = {}
        self._alarm(
            "dead-letters",
            "A job is in the dead-letter queue: it got no runner (the message attribute `reason` says why)",
            namespace="AWS/SQS",
            metric="ApproximateNumberOfMessagesVisible",
            dimensions={"QueueName": args.dead_letter_queue_name},
            statistic="Maximum",
            # SQS stops reporting a queue nobody reads after six hours: no data must not clear the alarm
            # while the jobs are still there.
            missing="ignore",
        )
        self._alarm(
            "queue-age",
            f"A job has waited over {args.queue_age_alarm_s} s for a runner (capacity, maxRunners or scale-up failing)",
            namespace="AWS/SQS",
            metric="ApproximateAgeOfOldestMessage",
            dimensions={"QueueName": args.queue_name},
            statistic="Maximum",
            threshold=args.queue_age_alarm_s,
        )
        for purpose, function_name in args.function_names.items():
            for metric, periods, says in (
                ("Errors", 1, "raised errors (its log group has the traceback)"),
                ("Throttles", 3, "was throttled for 15 minutes"),
            ):
                if purpose == "scale-up" and metric == "Throttles":
                    continue  # its queue's pollers outnumber its reserved concurrency of 1: throttled by design
                self._alarm(
                    f"{purpose}-{metric.lower()}",
                    f"The {purpose} function {says}",
                    namespace="AWS/Lambda",
                    metric=metric,
                    dimensions={"FunctionName": function_name},
                    periods=periods,
                )
        fleet = {"Fleet": args.fleet}
        self._alarm(
            "launch-refused",
            "EC2 refused a launch for good: a permission or configuration error (the job is in the dead-letter queue)",
            metric="LaunchFailures",
            dimensions={**fleet, "Reason": "refused"},
        )
        self._alarm(
            "launch-failures",
            "Launches have failed for 15 minutes (capacity, quota, throttling or runner setup: see Reason)",
            metric="LaunchFailures",
            dimensions=fleet,
            periods=3,
        )
        self._alarm(
            "boot-timeouts",
            "An instance's runner never came online within the boot timeout (the reaper terminated it)",
            metric="BootTimeouts",
            dimensions=fleet,
        )
        self._alarm(
            "refused-jobs",
            "The admission policy refused a job (a repository, event or branch not allowed): expected or an attempt",
            metric="JobRefused",
            dimensions=fleet,
        )
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=prefix,
            dashboard_body=pulumi.Output.all(
                args.queue_name, args.dead_letter_queue_name, *args.function_names.values(), *self._alarm_arns()
            ).apply(lambda values: json.dumps(self._dashboard(values))),
            opts=child,
        )
        self.register_outputs({"topic_arn": self.topic.arn, "dashboard": self.dashboard.dashboard_name})

    def _alarm(
        self,
        what: str,
        description: str,
        *,
        metric: str,
        dimensions: Mapping[str, pulumi.Input[str]],
        namespace: str = NAMESPACE,
        statistic: str = "Sum",
        threshold: float = 0,
        periods: int = 1,
        missing: str = "notBreaching",  # no data point: nothing happened
    ) -> None:
        self.alarms[what] = aws.cloudwatch.MetricAlarm(
            f"{self.resource_name}-{what}",
            name=f"vpc-runners-{self.args.fleet}-{what}",
            alarm_description=description,
            namespace=namespace,
            metric_name=metric,
            dimensions=dimensions,
            statistic=statistic,
            period=PERIOD_S,
            evaluation_periods=periods,
            datapoints_to_alarm=periods,
            threshold=threshold,
            comparison_operator="GreaterThanThreshold",
            treat_missing_data=missing,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],
            tags=self.args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _alarm_arns(self) -> list[pulumi.Output[str]]:
        return [alarm.arn for alarm in self.alarms.values()]

    def _dashboard(self, values: list[str]) -> dict[str, object]:
        a, region = self.args, self.args.aws.region
        queue, dead_letters, *rest = values
        functions = dict(zip(a.function_names, rest[: len(a.function_names)], strict=True))
        alarm_arns = rest[len(a.function_names) :]
        widgets: list[dict[str, object]] = []

        def metric_widget(title: str, metrics: Sequence[Sequence[object]], *, stat: str = "Sum") -> None:
            x, y = (len(widgets) % 2) * 12, (len(widgets) // 2) * 6
            widgets.append(
                {
                    "type": "metric",
                    "x": x,
                    "y": y,
                    "width": 12,
                    "height": 6,
                    "properties": {
                        "title": title,
                        "region": region,
                        "stat": stat,
                        "period": PERIOD_S,
                        "view": "timeSeries",
                        "metrics": metrics,
                    },
                }
            )

        for title, names in TRACE_WIDGETS:
            metric_widget(
                f"{title} (seconds, p50 and p95)",
                [
                    [NAMESPACE, name, "Fleet", a.fleet, {"stat": stat, "label": f"{name} {stat}"}]
                    for name in names
                    for stat in ("p50", "p95")
                ],
            )
        metric_widget(
            "Launch failures by reason, boot timeouts, refused jobs",
            [[NAMESPACE, "LaunchFailures", "Fleet", a.fleet, "Reason", r] for r in LAUNCH_FAILURE_REASONS]
            + [[NAMESPACE, "BootTimeouts", "Fleet", a.fleet], [NAMESPACE, "JobRefused", "Fleet", a.fleet]],
        )
        metric_widget(
            "Job queue and dead letters",
            [
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", queue, {"stat": "Maximum"}],
                ["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", queue, {"stat": "Maximum"}],
                ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", dead_letters, {"stat": "Maximum"}],
            ],
        )
        metric_widget(
            "Functions: errors and throttles",
            [
                ["AWS/Lambda", metric, "FunctionName", function]
                for function in functions.values()
                for metric in ("Errors", "Throttles")
            ],
        )
        widgets.append(
            {
                "type": "alarm",
                "x": 0,
                "y": (len(widgets) // 2 + 1) * 6,
                "width": 24,
                "height": 4,
                "properties": {"title": "Alarms", "alarms": alarm_arns},
            }
        )
        return {"widgets": widgets}
