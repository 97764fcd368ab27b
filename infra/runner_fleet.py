"""RunnerFleet: what every runner instance is: its role, its software, its logs, its launch template.

The instance role allows exactly: ``rds-db:connect`` as each configured IAM database user, or reading
(and decrypting, through Secrets Manager) exactly the secret a password database names; reading the
database connection parameters, reading and deleting its own JIT parameter (tagged with its instance
id; decrypting it is granted by the jit key's policy, infra/keys.py), writing to its log group, reading
the vpc-runner-kit package, and Session Manager's own channel (``ssm:UpdateInstanceInformation`` and
the four ``ssmmessages`` channel actions, which AWS does not scope). No managed policy is attached:
AmazonSSMManagedInstanceCore would grant ``ssm:GetParameter`` on every parameter in the account, the
GitHub App key included. The instance ends itself by shutting down (the launch template terminates it
on shutdown), so the role grants no EC2 action at all.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws

from runner.control_plane.bootstrap import render
from runner.control_plane.config import TAG_FLEET

from .artifacts import package_id
from .aws_context import AwsContext
from .settings import Database

JIT_WAIT_S = 600


@dataclass
class RunnerFleetArgs:
    fleet: str
    aws: AwsContext
    security_group_id: pulumi.Input[str]
    databases: tuple[Database, ...]
    database_parameters: list[str]
    jit_parameter_prefix: str
    instance_types: tuple[str, ...]
    ami_id: str
    volume_size_gb: int
    runner_version: str
    runner_sha256: str
    log_retention_days: int
    hold_ceiling_s: int
    ebs_kms_key_arn: str | None
    package_dir: Path  # infra.artifacts.runner_package(): wheels/ and a hash-pinned requirements.txt
    tags: dict[str, str]


class RunnerFleet(pulumi.ComponentResource):
    def __init__(self, name: str, args: RunnerFleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:fleet:RunnerFleet", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ctx = args.aws

        self.log_group = aws.cloudwatch.LogGroup(
            f"{name}-runners",
            name=f"/vpc-runners/{args.fleet}/runners",
            retention_in_days=args.log_retention_days,
            tags=args.tags,
            opts=child,
        )

        # The kit and its locked dependencies as a wheelhouse, installed offline at boot.
        self.bucket = aws.s3.Bucket(
            f"{name}-package", bucket_prefix="vpc-runners-pkg-", force_destroy=True, tags=args.tags, opts=child
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-package",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-package",
            bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        package_key = "vpc-runner-kit.zip"
        aws.s3.BucketObjectv2(
            f"{name}-package",
            bucket=self.bucket.id,
            key=package_key,
            source=pulumi.FileArchive(str(args.package_dir)),
            opts=child,
        )

        self.role = aws.iam.Role(
            f"{name}-instance",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
                    ],
                }
            ),
            description="vpc-runners: ephemeral GitHub Actions runner",
            tags=args.tags,
            opts=child,
        )
        policy = pulumi.Output.all(self.log_group.arn, self.bucket.arn).apply(
            lambda a: json.dumps(instance_policy(args, log_group_arn=a[0], package_arn=f"{a[1]}/{package_key}"))
        )
        aws.iam.RolePolicy(f"{name}-instance", role=self.role.id, policy=policy, opts=child)
        self.profile = aws.iam.InstanceProfile(f"{name}-instance", role=self.role.name, tags=args.tags, opts=child)

        user_data = pulumi.Output.all(self.log_group.name, self.bucket.bucket).apply(
            lambda a: base64.b64encode(
                render(
                    {
                        "FLEET": args.fleet,
                        "REGION": ctx.region,
                        "JIT_PARAMETER_PREFIX": args.jit_parameter_prefix,
                        "RUNNER_VERSION": args.runner_version,
                        "RUNNER_ARCH": "x64",
                        "RUNNER_SHA256": args.runner_sha256,
                        # With one database, jobs need no --ssm-parameter at all; with several they name one.
                        "DATABASE_PARAMETER": args.database_parameters[0] if len(args.database_parameters) == 1 else "",
                        "VPC_MIGRATE_PACKAGE": f"s3://{a[1]}/{package_key}",
                        "PACKAGE_ID": package_id(args.package_dir),
                        "LOG_GROUP": a[0],
                        "JIT_WAIT_S": str(JIT_WAIT_S),
                        "HOLD_CEILING_S": str(args.hold_ceiling_s),
                    }
                ).encode()
            ).decode()
        )
        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-runner",
            name_prefix=f"vpc-runners-{args.fleet}-",
            description="vpc-runners: one ephemeral runner per job",
            image_id=args.ami_id,
            instance_type=args.instance_types[0],  # CreateFleet overrides list every configured type
            iam_instance_profile={"arn": self.profile.arn},
            instance_initiated_shutdown_behavior="terminate",
            metadata_options={
                "http_endpoint": "enabled",
                "http_tokens": "required",
                "http_put_response_hop_limit": 1,
                "instance_metadata_tags": "disabled",
            },
            network_interfaces=[
                {
                    "device_index": 0,
                    "associate_public_ip_address": "false",
                    "delete_on_termination": "true",
                    "security_groups": [args.security_group_id],
                }
            ],
            block_device_mappings=[
                {
                    "device_name": "/dev/xvda",
                    "ebs": {
                        "volume_size": args.volume_size_gb,
                        "volume_type": "gp3",
                        "encrypted": "true",
                        "delete_on_termination": "true",
                        **({"kms_key_id": args.ebs_kms_key_arn} if args.ebs_kms_key_arn else {}),
                    },
                }
            ],
            monitoring={"enabled": False},
            user_data=user_data,
            tag_specifications=[{"resource_type": "volume", "tags": {**args.tags, TAG_FLEET: args.fleet}}],
            update_default_version=True,
            tags=args.tags,
            opts=child,
        )
        self.register_outputs(
            {"role_arn": self.role.arn, "launch_template_id": self.launch_template.id, "log_group": self.log_group.name}
        )


def database_login_statements(args: RunnerFleetArgs) -> list[dict[str, object]]:
    """IAM databases: rds-db:connect as their user. Password databases: read exactly their secret, and
    decrypt it through Secrets Manager only, when its key is customer managed (aws/secretsmanager's own
    key policy already allows that for the account)."""
    ctx = args.aws
    iam = [d for d in args.databases if d.iam]
    secrets = [d for d in args.databases if d.secret_arn]
    keys = sorted({d.secret_kms_key_arn for d in secrets if d.secret_kms_key_arn})
    found: list[dict[str, object]] = []
    if iam:
        found.append(
            {
                "Sid": "ConnectAsTheMigrationUser",
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": [ctx.arn("rds-db", f"dbuser:{d.resource_id}/{d.user}") for d in iam],
            }
        )
    if secrets:
        found.append(
            {
                "Sid": "ReadDatabaseSecrets",
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": [d.secret_arn for d in secrets],
            }
        )
    if keys:
        found.append(
            {
                "Sid": "DecryptDatabaseSecretsThroughSecretsManager",
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": keys,
                "Condition": {
                    "StringEquals": {
                        "kms:ViaService": f"secretsmanager.{ctx.region}.amazonaws.com",
                        # Secrets Manager's encryption context names the secret: these secrets, no other.
                        "kms:EncryptionContext:SecretARN": [d.secret_arn for d in secrets if d.secret_kms_key_arn],
                    }
                },
            }
        )
    return found


def instance_policy(args: RunnerFleetArgs, *, log_group_arn: str, package_arn: str) -> dict[str, object]:
    ctx = args.aws
    return {
        "Version": "2012-10-17",
        "Statement": [
            *database_login_statements(args),
            {
                "Sid": "ReadDatabaseCoordinates",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": [ctx.ssm_parameter_arn(p) for p in args.database_parameters],
            },
            {
                # ec2:SourceInstanceARN (a documented global key) ends with this instance's id; the
                # parameter carries its instance's id as a tag, written by scale-up only.
                "Sid": "ReadAndDeleteOwnRunnerConfig",
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:DeleteParameter"],
                "Resource": ctx.ssm_parameter_arn(f"{args.jit_parameter_prefix}/*"),
                "Condition": {"StringLike": {"ec2:SourceInstanceARN": "*/${aws:ResourceTag/InstanceId}"}},
            },
            {
                "Sid": "WriteOwnLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group_arn}:log-stream:*",
            },
            {
                "Sid": "FindOwnLogStreams",  # the CloudWatch agent looks up its stream's sequence
                "Effect": "Allow",
                "Action": "logs:DescribeLogStreams",
                "Resource": log_group_arn,
            },
            {"Sid": "ReadKitPackage", "Effect": "Allow", "Action": "s3:GetObject", "Resource": package_arn},
            {
                "Sid": "SessionManagerRegistersThisInstance",
                "Effect": "Allow",
                "Action": "ssm:UpdateInstanceInformation",
                "Resource": ctx.arn("ec2", "instance/*"),
            },
            {
                # AWS does not scope these four to a resource (Service Authorization Reference).
                "Sid": "SessionManagerChannels",
                "Effect": "Allow",
                "Action": [
                    "ssmmessages:CreateControlChannel",
                    "ssmmessages:CreateDataChannel",
                    "ssmmessages:OpenControlChannel",
                    "ssmmessages:OpenDataChannel",
                ],
                "Resource": "*",
            },
        ],
    }
