"""ControlPlane: the AWS side of webhook -> queue -> scale-up -> instance, and the reaper.

Lambda code is this repository's ``runner`` package, found from this file's path (not the working
directory). Secrets live in SSM SecureString parameters; the functions' environment only names them.
Roles name every resource they can; the only ``*`` resources are EC2 Describe calls, which AWS
does not scope.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from runner.control_plane.config import TAG_FLEET

from .aws_context import AwsContext
from .settings import GitHub

REPO = Path(__file__).resolve().parent.parent
RUNTIME = "python3.12"
QUEUE_VISIBILITY_S = 120  # above the scale-up function's timeout, as SQS event sources require
SCALE_UP_TIMEOUT_S = 60
MAX_RECEIVES = 100  # a job may wait this many retries (about 30-60 s each) for capacity before the DLQ


@dataclass
class ControlPlaneArgs:
    fleet: str
    aws: AwsContext
    github: GitHub
    launch_template_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    security_group_id: pulumi.Input[str]
    instance_role_arn: pulumi.Input[str]
    instance_types: tuple[str, ...]
    max_runners: int
    spot: bool
    jit_parameter_prefix: str
    boot_timeout_s: int
    max_lifetime_s: int
    hold_ceiling_s: int
    log_retention_days: int
    layer_dir: Path
    tags: dict[str, str]


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:control:ControlPlane", name, None, opts)
        self.args = args
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"/vpc-runners/{args.fleet}"
        gh = args.github

        self.webhook_secret = aws.ssm.Parameter(
            f"{name}-webhook-secret",
            name=f"{prefix}/webhook-secret",
            type="SecureString",
            value=gh.webhook_secret,
            tags=args.tags,
            opts=child,
        )
        if gh.token is not None:
            credential_name, credential_value = f"{prefix}/github-token", gh.token
        else:
            assert gh.app_private_key is not None
            credential_name, credential_value = f"{prefix}/github-app-key", gh.app_private_key
        self.credential = aws.ssm.Parameter(
            f"{name}-github-credential",
            name=credential_name,
            type="SecureString",
            value=credential_value,
            tags=args.tags,
            opts=child,
        )

        self.dead_letters = aws.sqs.Queue(
            f"{name}-jobs-dlq",
            name=f"vpc-runners-{args.fleet}-jobs-dlq.fifo",
            fifo_queue=True,
            message_retention_seconds=14 * 86400,
            sqs_managed_sse_enabled=True,
            tags=args.tags,
            opts=child,
        )
        self.queue = aws.sqs.Queue(
            f"{name}-jobs",
            name=f"vpc-runners-{args.fleet}-jobs.fifo",
            fifo_queue=True,
            visibility_timeout_seconds=QUEUE_VISIBILITY_S,
            message_retention_seconds=86400,
            sqs_managed_sse_enabled=True,
            redrive_policy=self.dead_letters.arn.apply(
                lambda arn: json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES})
            ),
            tags=args.tags,
            opts=child,
        )

        self.layer = aws.lambda_.LayerVersion(
            f"{name}-deps",
            layer_name=f"vpc-runners-{args.fleet}-deps",
            compatible_runtimes=[RUNTIME],
            compatible_architectures=["x86_64"],
            code=pulumi.FileArchive(str(args.layer_dir)),
            opts=child,
        )
        code = pulumi.AssetArchive({"runner": pulumi.FileArchive(str(REPO / "runner"))})

        env = pulumi.Output.all(args.launch_template_id, args.subnet_ids, self.queue.url).apply(
            lambda a: self._environment(launch_template_id=a[0], subnet_ids=a[1], queue_url=a[2])
        )

        self.webhook = self._function(
            name,
            "webhook",
            code,
            env,
            timeout=10,
            memory=256,
            statements=[
                {
                    "Effect": "Allow",
                    "Action": "ssm:GetParameter",
                    "Resource": args.aws.ssm_parameter_arn(f"{prefix}/webhook-secret"),
                },
                {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": self.queue.arn},
            ],
        )
        self.scale_up = self._function(
            name,
            "scale-up",
            code,
            env,
            timeout=SCALE_UP_TIMEOUT_S,
            memory=512,
            reserved=1,
            statements=self._scale_up_statements(),
        )
        self.reaper = self._function(
            name, "reaper", code, env, timeout=300, memory=256, statements=self._reaper_statements()
        )

        self.url = aws.lambda_.FunctionUrl(
            f"{name}-webhook", function_name=self.webhook.function.name, authorization_type="NONE", opts=child
        )
        # Public by design: GitHub must reach it. The handler verifies X-Hub-Signature-256 itself.
        aws.lambda_.Permission(
            f"{name}-webhook-url",
            action="lambda:InvokeFunctionUrl",
            function=self.webhook.function.name,
            principal="*",
            function_url_auth_type="NONE",
            opts=child,
        )
        aws.lambda_.Permission(
            f"{name}-webhook-invoke",
            action="lambda:InvokeFunction",
            function=self.webhook.function.name,
            principal="*",
            invoked_via_function_url=True,
            opts=child,
        )
        aws.lambda_.EventSourceMapping(
            f"{name}-jobs",
            event_source_arn=self.queue.arn,
            function_name=self.scale_up.function.name,
            batch_size=10,
            function_response_types=["ReportBatchItemFailures"],
            opts=child,
        )
        schedule = aws.cloudwatch.EventRule(
            f"{name}-reaper",
            schedule_expression="rate(5 minutes)",
            description="vpc-runners: reap orphaned runners",
            tags=args.tags,
            opts=child,
        )
        aws.cloudwatch.EventTarget(f"{name}-reaper", rule=schedule.name, arn=self.reaper.function.arn, opts=child)
        aws.lambda_.Permission(
            f"{name}-reaper",
            action="lambda:InvokeFunction",
            function=self.reaper.function.name,
            principal="events.amazonaws.com",
            source_arn=schedule.arn,
            opts=child,
        )
        self.register_outputs({"webhook_url": self.url.function_url, "queue_url": self.queue.url})

    def _environment(self, *, launch_template_id: str, subnet_ids: list[str], queue_url: str) -> dict[str, str]:
        a, gh = self.args, self.args.github
        prefix = f"/vpc-runners/{a.fleet}"
        variables = {
            "VPC_RUNNERS_FLEET": a.fleet,
            "GITHUB_OWNER": gh.owner,
            "GITHUB_API_URL": gh.api_url,
            "WEBHOOK_SECRET_PARAMETER": f"{prefix}/webhook-secret",
            "RUNNER_LABELS": json.dumps(list(gh.labels)),
            "POOL_LABEL": gh.pool_label,
            "RUNNER_GROUP_ID": str(gh.runner_group_id),
            "QUEUE_URL": queue_url,
            "LAUNCH_TEMPLATE_ID": launch_template_id,
            "SUBNET_IDS": json.dumps(subnet_ids),
            "INSTANCE_TYPES": json.dumps(list(a.instance_types)),
            "MAX_RUNNERS": str(a.max_runners),
            "SPOT": "true" if a.spot else "false",
            "JIT_PARAMETER_PREFIX": a.jit_parameter_prefix,
            "BOOT_TIMEOUT_S": str(a.boot_timeout_s),
            "MAX_LIFETIME_S": str(a.max_lifetime_s),
            "HOLD_CEILING_S": str(a.hold_ceiling_s),
        }
        if gh.token is not None:
            variables["GITHUB_TOKEN_PARAMETER"] = f"{prefix}/github-token"
        else:
            variables.update({"GITHUB_APP_ID": gh.app_id or "", "GITHUB_APP_KEY_PARAMETER": f"{prefix}/github-app-key"})
        return variables

    def _credential_statement(self) -> dict[str, object]:
        return {"Effect": "Allow", "Action": "ssm:GetParameter", "Resource": self.credential.arn}

    def _scale_up_statements(self) -> list[dict[str, object]]:
        a, ctx = self.args, self.args.aws
        fleet_tag = {"StringEquals": {f"aws:ResourceTag/{TAG_FLEET}": a.fleet}}
        return [
            {
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ChangeMessageVisibility",
                ],
                "Resource": self.queue.arn,
            },
            self._credential_statement(),
            {
                "Effect": "Allow",
                "Action": ["ssm:PutParameter", "ssm:DeleteParameter", "ssm:AddTagsToResource"],
                "Resource": ctx.ssm_parameter_arn(f"{a.jit_parameter_prefix}/*"),
            },
            {"Effect": "Allow", "Action": "ec2:CreateFleet", "Resource": ctx.arn("ec2", "fleet/*")},
            {
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": [
                    pulumi.Output.from_input(a.launch_template_id).apply(
                        lambda i: ctx.arn("ec2", f"launch-template/{i}")
                    ),
                    ctx.arn("ec2", "subnet/*"),
                    ctx.arn("ec2", "network-interface/*"),
                    ctx.arn("ec2", "volume/*"),
                    pulumi.Output.from_input(a.security_group_id).apply(
                        lambda i: ctx.arn("ec2", f"security-group/{i}")
                    ),
                    ctx.arn("ec2", "image/*", account=False),
                ],
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": {"StringEquals": {f"aws:RequestTag/{TAG_FLEET}": a.fleet}},
            },
            {
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": [ctx.arn("ec2", "instance/*"), ctx.arn("ec2", "volume/*"), ctx.arn("ec2", "fleet/*")],
                "Condition": {"StringEquals": {"ec2:CreateAction": ["CreateFleet", "RunInstances"]}},
            },
            {
                "Effect": "Allow",
                "Action": ["ec2:CreateTags", "ec2:TerminateInstances"],
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": fleet_tag,
            },
            {
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": a.instance_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            # Describe calls cannot be scoped to resources by AWS.
            {
                "Effect": "Allow",
                "Action": [
                    "ec2:DescribeInstances",
                    "ec2:DescribeLaunchTemplateVersions",
                    "ec2:DescribeImages",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeInstanceTypes",
                ],
                "Resource": "*",
            },
        ]

    def _reaper_statements(self) -> list[dict[str, object]]:
        a, ctx = self.args, self.args.aws
        return [
            self._credential_statement(),
            {
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_FLEET}": a.fleet}},
            },
            {
                "Effect": "Allow",
                "Action": "ssm:GetParametersByPath",
                "Resource": ctx.ssm_parameter_arn(a.jit_parameter_prefix),
            },
            {
                "Effect": "Allow",
                "Action": "ssm:DeleteParameter",
                "Resource": ctx.ssm_parameter_arn(f"{a.jit_parameter_prefix}/*"),
            },
            {"Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},  # not scopable
        ]

    def _function(
        self,
        name: str,
        purpose: str,
        code: pulumi.Archive,
        env: pulumi.Output[dict[str, str]],
        *,
        timeout: int,
        memory: int,
        statements: list[dict[str, object]],
        reserved: int = -1,
    ) -> _Function:
        return _Function(
            f"{name}-{purpose}",
            self.args,
            purpose,
            code,
            env,
            self.layer.arn,
            timeout=timeout,
            memory=memory,
            statements=statements,
            reserved=reserved,
            parent=self,
        )


class _Function:
    """One Lambda with its own log group (with retention) and its own least-privilege role."""

    def __init__(
        self,
        name: str,
        args: ControlPlaneArgs,
        purpose: str,
        code: pulumi.Archive,
        env: pulumi.Output[dict[str, str]],
        layer_arn: pulumi.Output[str],
        *,
        timeout: int,
        memory: int,
        statements: list[dict[str, object]],
        reserved: int,
        parent: pulumi.Resource,
    ) -> None:
        child = pulumi.ResourceOptions(parent=parent)
        function_name = f"vpc-runners-{args.fleet}-{purpose}"
        self.log_group = aws.cloudwatch.LogGroup(
            name,
            name=f"/aws/lambda/{function_name}",
            retention_in_days=args.log_retention_days,
            tags=args.tags,
            opts=child,
        )
        self.role = aws.iam.Role(
            name,
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
            tags=args.tags,
            opts=child,
        )
        logs = {
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": self.log_group.arn.apply(lambda arn: [arn, f"{arn}:log-stream:*"]),
        }
        document = pulumi.Output.from_input({"Version": "2012-10-17", "Statement": [logs, *statements]})
        policy = aws.iam.RolePolicy(name, role=self.role.id, policy=document.apply(json.dumps), opts=child)
        self.function = aws.lambda_.Function(
            name,
            name=function_name,
            runtime=RUNTIME,
            architectures=["x86_64"],
            role=self.role.arn,
            code=code,
            handler=f"runner.control_plane.handlers.{purpose.replace('-', '_')}_handler",
            layers=[layer_arn],
            timeout=timeout,
            memory_size=memory,
            reserved_concurrent_executions=reserved,
            environment=env.apply(lambda variables: aws.lambda_.FunctionEnvironmentArgs(variables=variables)),
            logging_config=aws.lambda_.FunctionLoggingConfigArgs(log_format="Text", log_group=self.log_group.name),
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[policy, self.log_group]),
        )
