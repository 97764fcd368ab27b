"""ControlPlane: the AWS side of webhook -> queue -> scale-up -> instance, and the reaper.

Lambda code is this repository's ``runner`` package, found from this file's path (not the working
directory). Secrets live in SSM SecureString parameters under customer-managed KMS keys whose key
policies name the one role that reads each (infra/keys.py); the functions' environment only names them.
Roles name every resource they can; the only ``*`` resource is ec2:DescribeInstances, which AWS does
not scope. Every grant here is used by a call the runtime makes: tests/infra/test_least_privilege.py
drives the real handlers and evaluates each call against these documents.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from runner.control_plane.config import (
    LAUNCH_TAG_KEYS,
    SETUP_TAG_KEYS,
    TAG_FLEET,
    TAG_PARAMETER_INSTANCE,
)

from .aws_context import AwsContext
from .keys import Reader, SecretKeys, SecretKeysArgs
from .settings import GitHub

RUNTIME = "python3.12"
QUEUE_VISIBILITY_S = 120  # above the scale-up function's timeout, as SQS event sources require
SCALE_UP_TIMEOUT_S = 60
REAPER_CONCURRENCY = 5  # scheduled passes, scripts/drain and termination events, at most this many at once
MAX_RECEIVES = 100  # a job may wait this many retries (about 30-60 s each) for capacity before the DLQ
FUNCTIONS = ("webhook", "scale-up", "reaper")
WEBHOOK_CONCURRENCY = 10  # the public receiver answers in milliseconds; more would only serve a flood


@dataclass
class ControlPlaneArgs:
    fleet: str
    aws: AwsContext
    github: GitHub
    launch_template_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    security_group_id: pulumi.Input[str]
    instance_role_arn: pulumi.Input[str]
    ami_id: str  # an ami-... id, or resolve:ssm:/aws/service/... resolved at each launch
    ebs_kms_key_arn: str | None  # the runner volumes' customer-managed key, when the account uses one
    volume_tag_keys: tuple[str, ...]  # the tag keys the launch template puts on volumes
    instance_types: tuple[str, ...]
    max_runners: int
    spot: bool
    jit_parameter_prefix: str
    boot_timeout_s: int
    max_lifetime_s: int
    hold_ceiling_s: int
    max_delivery_age_s: int
    log_retention_days: int
    layer_dir: Path
    code_dir: Path  # infra.artifacts.lambda_code(): exactly the files the handlers import
    runner_name_prefix: str
    tags: dict[str, str]


class ControlPlane(pulumi.ComponentResource):
    def __init__(self, name: str, args: ControlPlaneArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:control:ControlPlane", name, None, opts)
        self.args = args
        child = pulumi.ResourceOptions(parent=self)
        prefix = f"/vpc-runners/{args.fleet}"
        gh = args.github

        if gh.token is not None:
            credential_name, credential_value = f"{prefix}/github-token", gh.token
        else:
            assert gh.app_private_key is not None
            credential_name, credential_value = f"{prefix}/github-app-key", gh.app_private_key
        self.credential_name = credential_name
        ctx = args.aws
        # Roles first: the keys' policies name them, and their own policies name the keys.
        self.roles = {purpose: _lambda_role(f"{name}-{purpose}", args, child) for purpose in FUNCTIONS}
        self.keys = SecretKeys(
            "secrets",
            SecretKeysArgs(
                fleet=args.fleet,
                aws=ctx,
                control_readers=[
                    Reader(self.roles["webhook"].arn, [ctx.ssm_parameter_arn(f"{prefix}/webhook-secret")]),
                    Reader(self.roles["scale-up"].arn, [ctx.ssm_parameter_arn(credential_name)]),
                    Reader(self.roles["reaper"].arn, [ctx.ssm_parameter_arn(credential_name)]),
                ],
                jit_writer_role_arn=self.roles["scale-up"].arn,
                jit_reader_role_arn=args.instance_role_arn,
                jit_parameter_prefix=args.jit_parameter_prefix,
                tags=args.tags,
            ),
            opts=child,
        )
        self.webhook_secret = aws.ssm.Parameter(
            f"{name}-webhook-secret",
            name=f"{prefix}/webhook-secret",
            type="SecureString",
            key_id=self.keys.control.arn,
            value=gh.webhook_secret,
            tags=args.tags,
            opts=child,
        )
        self.credential = aws.ssm.Parameter(
            f"{name}-github-credential",
            name=credential_name,
            type="SecureString",
            key_id=self.keys.control.arn,
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
        code = pulumi.FileArchive(str(args.code_dir))

        env = pulumi.Output.all(
            args.launch_template_id, args.subnet_ids, self.queue.url, self.dead_letters.url, self.keys.jit.arn
        ).apply(
            lambda a: self._environment(
                launch_template_id=a[0], subnet_ids=a[1], queue_url=a[2], dead_letter_url=a[3], jit_key_arn=a[4]
            )
        )

        self.webhook = self._function(
            name,
            "webhook",
            code,
            env,
            timeout=10,
            memory=256,
            # Bounds what a flood of (even unsigned) requests can cost and how far it can starve the account.
            reserved=WEBHOOK_CONCURRENCY,
            statements=[
                {
                    "Sid": "ReadWebhookSecret",
                    "Effect": "Allow",
                    "Action": "ssm:GetParameter",
                    "Resource": self.webhook_secret.arn,
                },
                {"Sid": "EnqueueJobs", "Effect": "Allow", "Action": "sqs:SendMessage", "Resource": self.queue.arn},
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
        # The termination rule matches every EC2 instance ending in the region (EventBridge cannot filter on
        # tags): a burst elsewhere in the account queues here (Lambda retries events it throttles) instead of
        # taking the account's concurrency.
        self.reaper = self._function(
            name,
            "reaper",
            code,
            env,
            timeout=300,
            memory=256,
            reserved=REAPER_CONCURRENCY,
            statements=self._reaper_statements(),
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
        self._reaper_on(f"{name}-reaper", schedule, child)
        # The job trace's last milestone: EC2 says an instance is gone; the reaper keeps it if it was ours.
        terminations = aws.cloudwatch.EventRule(
            f"{name}-instance-gone",
            event_pattern=json.dumps(
                {
                    "source": ["aws.ec2"],
                    "detail-type": ["EC2 Instance State-change Notification"],
                    "detail": {"state": ["terminated"]},
                }
            ),
            description="vpc-runners: trace each runner instance's end",
            tags=args.tags,
            opts=child,
        )
        self._reaper_on(f"{name}-instance-gone", terminations, child)
        self.register_outputs({"webhook_url": self.url.function_url, "queue_url": self.queue.url})

    def _reaper_on(self, name: str, rule: aws.cloudwatch.EventRule, child: pulumi.ResourceOptions) -> None:
        """``rule``'s events invoke the reaper, and only that rule's (the permission names its ARN)."""
        aws.cloudwatch.EventTarget(name, rule=rule.name, arn=self.reaper.function.arn, opts=child)
        aws.lambda_.Permission(
            name,
            action="lambda:InvokeFunction",
            function=self.reaper.function.name,
            principal="events.amazonaws.com",
            source_arn=rule.arn,
            opts=child,
        )

    def _environment(
        self, *, launch_template_id: str, subnet_ids: list[str], queue_url: str, dead_letter_url: str, jit_key_arn: str
    ) -> dict[str, str]:
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
            "DEAD_LETTER_QUEUE_URL": dead_letter_url,
            "JIT_KMS_KEY_ID": jit_key_arn,
            "RUNNER_NAME_PREFIX": a.runner_name_prefix,
            "ALLOWED_REPOSITORIES": json.dumps(list(gh.repositories)),
            "RUNNER_SCOPE": gh.runner_scope,
            "ALLOWED_EVENTS": json.dumps(list(gh.events)),
            "ALLOWED_BRANCHES": json.dumps(list(gh.branches)),
            "MAX_DELIVERY_AGE_S": str(a.max_delivery_age_s),
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
        fleet_tag = {f"aws:ResourceTag/{TAG_FLEET}": a.fleet}
        subnets = pulumi.Output.from_input(a.subnet_ids).apply(lambda ids: [ctx.arn("ec2", f"subnet/{i}") for i in ids])
        template = pulumi.Output.from_input(a.launch_template_id).apply(
            lambda i: ctx.arn("ec2", f"launch-template/{i}")
        )
        image: dict[str, object] = (
            {"Resource": ctx.arn("ec2", f"image/{a.ami_id}", account=False)}
            if a.ami_id.startswith("ami-")
            else {  # resolved at launch: an Amazon-owned public image
                "Resource": ctx.arn("ec2", "image/*", account=False),
                "Condition": {"StringEquals": {"ec2:Owner": "amazon"}},
            }
        )
        statements: list[dict[str, object]] = [
            {
                "Sid": "ConsumeJobQueue",
                "Effect": "Allow",
                "Action": [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:GetQueueAttributes",
                    "sqs:ChangeMessageVisibility",
                ],
                "Resource": self.queue.arn,
            },
            {
                "Sid": "DeadLetterRefusedJobs",
                "Effect": "Allow",
                "Action": "sqs:SendMessage",
                "Resource": self.dead_letters.arn,
            },
            {**self._credential_statement(), "Sid": "ReadGitHubCredential"},
            {
                # GetParameter without decryption: whether a config is stored, when resuming a setup.
                "Sid": "WriteRunnerConfigs",
                "Effect": "Allow",
                "Action": ["ssm:PutParameter", "ssm:AddTagsToResource", "ssm:DeleteParameter", "ssm:GetParameter"],
                "Resource": ctx.ssm_parameter_arn(f"{a.jit_parameter_prefix}/*"),
            },
            {
                "Sid": "TagRunnerConfigsOnlyWithTheirInstance",
                "Effect": "Deny",
                "Action": "ssm:AddTagsToResource",
                "Resource": ctx.ssm_parameter_arn(f"{a.jit_parameter_prefix}/*"),
                "Condition": {"ForAnyValue:StringNotEquals": {"aws:TagKeys": [TAG_PARAMETER_INSTANCE]}},
            },
            {
                "Sid": "CreateInstantFleet",
                "Effect": "Allow",
                "Action": "ec2:CreateFleet",
                "Resource": ctx.arn("ec2", "fleet/*"),
            },
            {
                # CreateFleet names the template and the subnets; it launches through RunInstances.
                "Sid": "LaunchFromTheStacksTemplateInItsSubnets",
                "Effect": "Allow",
                "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
                "Resource": pulumi.Output.all(template, subnets).apply(lambda r: [r[0], *r[1]]),
            },
            {
                # What only the template names is authorized for RunInstances alone.
                "Sid": "LaunchWithTheRunnerGroup",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": pulumi.Output.from_input(a.security_group_id).apply(
                    lambda g: ctx.arn("ec2", f"security-group/{g}")
                ),
            },
            {"Sid": "LaunchTheImage", "Effect": "Allow", "Action": "ec2:RunInstances", **image},
            {
                "Sid": "LaunchInterfacesInTheStacksSubnets",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": ctx.arn("ec2", "network-interface/*"),
                "Condition": {"ArnEquals": {"ec2:Subnet": subnets}},
            },
            {
                "Sid": "LaunchFleetTaggedVolumes",
                "Effect": "Allow",
                "Action": "ec2:RunInstances",
                "Resource": ctx.arn("ec2", "volume/*"),
                "Condition": {"StringEquals": {f"aws:RequestTag/{TAG_FLEET}": a.fleet}},
            },
            {
                "Sid": "LaunchFleetTaggedInstancesFromTheTemplate",
                "Effect": "Allow",
                "Action": ["ec2:CreateFleet", "ec2:RunInstances"],
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": {
                    "StringEquals": {f"aws:RequestTag/{TAG_FLEET}": a.fleet},
                    "ArnEquals": {"ec2:LaunchTemplate": template},
                },
            },
            {
                "Sid": "TagAtLaunchWithTheLaunchKeysOnly",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": [ctx.arn("ec2", "instance/*"), ctx.arn("ec2", "volume/*")],
                "Condition": {
                    "StringEquals": {"ec2:CreateAction": ["CreateFleet", "RunInstances"]},
                    "ForAllValues:StringEquals": {"aws:TagKeys": sorted({*LAUNCH_TAG_KEYS, *a.volume_tag_keys})},
                },
            },
            {
                "Sid": "TagOwnInstancesWithTheirRunner",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": {
                    "StringEquals": fleet_tag,
                    "ForAllValues:StringEquals": {"aws:TagKeys": list(SETUP_TAG_KEYS)},
                },
            },
            {
                "Sid": "TerminateOwnInstances",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": {"StringEquals": fleet_tag},
            },
            {
                "Sid": "PassTheRunnerRoleToEc2",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": a.instance_role_arn,
                "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
            },
            # DescribeInstances cannot be scoped to resources by AWS; every query filters on the fleet tag.
            {"Sid": "CountInstances", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
        ]
        if a.ami_id.startswith("resolve:ssm:"):
            # Launching from a template whose image is resolve:ssm:NAME reads NAME as the caller.
            name = a.ami_id.removeprefix("resolve:ssm:")
            statements.append(
                {
                    "Sid": "ResolveTheImageParameter",
                    "Effect": "Allow",
                    "Action": "ssm:GetParameters",
                    "Resource": ctx.arn("ssm", "parameter/" + name.lstrip("/"), account=False),
                }
            )
        if a.spot:
            statements.append(
                {
                    # EC2 creates the Spot service-linked role on the first spot launch, as this caller.
                    "Sid": "CreateTheSpotServiceLinkedRole",
                    "Effect": "Allow",
                    "Action": "iam:CreateServiceLinkedRole",
                    "Resource": f"arn:{ctx.partition}:iam::{ctx.account_id}:role/aws-service-role/"
                    "spot.amazonaws.com/AWSServiceRoleForEC2Spot",
                    "Condition": {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}},
                }
            )
        if a.ebs_kms_key_arn:
            # Encrypted volumes under a customer-managed key: EC2 uses the key as the launching caller.
            statements += [
                {
                    "Sid": "UseTheVolumeKeyThroughEc2",
                    "Effect": "Allow",
                    "Action": ["kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt", "kms:DescribeKey"],
                    "Resource": a.ebs_kms_key_arn,
                    "Condition": {"StringEquals": {"kms:ViaService": f"ec2.{ctx.region}.amazonaws.com"}},
                },
                {
                    "Sid": "GrantTheVolumeKeyToEc2",
                    "Effect": "Allow",
                    "Action": "kms:CreateGrant",
                    "Resource": a.ebs_kms_key_arn,
                    "Condition": {
                        "StringEquals": {"kms:ViaService": f"ec2.{ctx.region}.amazonaws.com"},
                        "Bool": {"kms:GrantIsForAWSResource": "true"},
                    },
                },
            ]
        return statements

    def _reaper_statements(self) -> list[dict[str, object]]:
        a, ctx = self.args, self.args.aws
        return [
            {**self._credential_statement(), "Sid": "ReadGitHubCredential"},
            {
                "Sid": "TerminateOwnInstances",
                "Effect": "Allow",
                "Action": "ec2:TerminateInstances",
                "Resource": ctx.arn("ec2", "instance/*"),
                "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_FLEET}": a.fleet}},
            },
            {
                "Sid": "ListRunnerConfigs",
                "Effect": "Allow",
                "Action": "ssm:GetParametersByPath",
                "Resource": ctx.ssm_parameter_arn(a.jit_parameter_prefix),
            },
            {
                "Sid": "DeleteLeftoverRunnerConfigs",
                "Effect": "Allow",
                "Action": "ssm:DeleteParameter",
                "Resource": ctx.ssm_parameter_arn(f"{a.jit_parameter_prefix}/*"),
            },
            # DescribeInstances cannot be scoped to resources by AWS; every query filters on the fleet tag.
            {"Sid": "ListInstances", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": "*"},
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
            self.roles[purpose],
            code,
            env,
            self.layer.arn,
            timeout=timeout,
            memory=memory,
            statements=statements,
            reserved=reserved,
            parent=self,
        )


def _lambda_role(name: str, args: ControlPlaneArgs, child: pulumi.ResourceOptions) -> aws.iam.Role:
    return aws.iam.Role(
        name,
        assume_role_policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
                ],
            }
        ),
        tags=args.tags,
        opts=child,
    )


class _Function:
    """One Lambda with its own log group (with retention) and its own least-privilege role."""

    def __init__(
        self,
        name: str,
        args: ControlPlaneArgs,
        purpose: str,
        role: aws.iam.Role,
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
        self.role = role
        logs = {
            "Sid": "WriteOwnLogs",
            "Effect": "Allow",
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Resource": self.log_group.arn.apply(lambda arn: f"{arn}:log-stream:*"),
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
