"""SecretKeys: the customer-managed KMS keys that make each secret readable by the one role that needs it.

SSM SecureStrings under the default ``aws/ssm`` key decrypt for any principal in the account allowed
``ssm:GetParameter`` on them. Under these keys, the key policy itself names who may decrypt, and only
through SSM, for one parameter (SSM passes the encryption context ``PARAMETER_ARN``):

- ``control`` key: the webhook secret (webhook function), the GitHub App key or token (scale-up and
  reaper functions). Nothing else may decrypt, not even the account's administrators without first
  changing this policy (which they can: the account keeps administration of the key, never its use).
- ``jit`` key: the runners' just-in-time configs. Scale-up encrypts (``GenerateDataKey``: they are
  Advanced-tier parameters); only the runner instance role decrypts, and its own identity policy lets an
  instance read only the parameter tagged with its own instance id.

Encrypting is granted to the account through SSM (the deployer puts the control secrets at `pulumi up`);
encrypting reveals nothing. The deployer must also read the control secrets back (the provider refreshes
a parameter's value), so the control key delegates decryption through SSM to IAM in this account as
well: a principal whose own IAM policy grants ``kms:Decrypt`` on the key (an administrator) can, and none
of this stack's roles has such a grant. The jit key has no such delegation: its parameters are written by
scale-up, never by the deployer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .aws_context import AwsContext

# The account keeps administering the key (rotation, policy, deletion), never using it.
KEY_ADMINISTRATION = [
    "kms:Create*",
    "kms:Describe*",
    "kms:Enable*",
    "kms:List*",
    "kms:Put*",
    "kms:Update*",
    "kms:Revoke*",
    "kms:Disable*",
    "kms:Get*",
    "kms:Delete*",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
]


@dataclass
class Reader:
    """A role allowed to decrypt the parameters named (ARN patterns) through SSM."""

    role_arn: pulumi.Input[str]
    parameter_arns: list[str]


@dataclass
class SecretKeysArgs:
    fleet: str
    aws: AwsContext
    # control key: who may decrypt which control-plane secret
    control_readers: list[Reader]
    # jit key: scale-up writes, the instance role reads
    jit_writer_role_arn: pulumi.Input[str]
    jit_reader_role_arn: pulumi.Input[str]
    jit_parameter_prefix: str
    tags: dict[str, str]


class SecretKeys(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecretKeysArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:secrets:SecretKeys", name, None, opts)
        ctx = args.aws
        via_ssm = f"ssm.{ctx.region}.amazonaws.com"
        jit_parameters = ctx.ssm_parameter_arn(f"{args.jit_parameter_prefix}/*")

        control_statements = pulumi.Output.all(*[r.role_arn for r in args.control_readers]).apply(
            lambda arns: [
                _use(f"Decrypt{i}", arn, ["kms:Decrypt"], via_ssm, reader.parameter_arns)
                for i, (arn, reader) in enumerate(zip(arns, args.control_readers, strict=True))
            ]
        )
        self.control = self._key(
            f"{name}-control",
            args,
            "vpc-runners: control-plane secrets (webhook secret, GitHub credential)",
            control_statements,
            deployer_reads=True,
        )
        jit_statements = pulumi.Output.all(args.jit_writer_role_arn, args.jit_reader_role_arn).apply(
            lambda a: [
                _use("ScaleUpWritesRunnerConfigs", a[0], ["kms:GenerateDataKey"], via_ssm, [jit_parameters]),
                _use("RunnersReadRunnerConfigs", a[1], ["kms:Decrypt"], via_ssm, [jit_parameters]),
            ]
        )
        self.jit = self._key(
            f"{name}-jit", args, "vpc-runners: just-in-time runner configs", jit_statements, deployer_reads=False
        )
        self.register_outputs({"control_key_arn": self.control.arn, "jit_key_arn": self.jit.arn})

    def _key(
        self,
        name: str,
        args: SecretKeysArgs,
        description: str,
        uses: pulumi.Output[list[dict[str, object]]],
        *,
        deployer_reads: bool,
    ) -> aws.kms.Key:
        ctx = args.aws
        root = f"arn:{ctx.partition}:iam::{ctx.account_id}:root"
        through_ssm = {"kms:ViaService": f"ssm.{ctx.region}.amazonaws.com", "kms:CallerAccount": ctx.account_id}
        account_uses = ["kms:Encrypt", "kms:Decrypt"] if deployer_reads else ["kms:Encrypt"]
        policy = uses.apply(
            lambda statements: json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "AccountAdministersNeverUses",
                            "Effect": "Allow",
                            "Principal": {"AWS": root},
                            "Action": KEY_ADMINISTRATION,
                            "Resource": "*",
                        },
                        {
                            "Sid": "DeployerThroughSsmIfItsIamAllows",
                            "Effect": "Allow",
                            "Principal": {"AWS": root},
                            "Action": account_uses,
                            "Resource": "*",
                            "Condition": {"StringEquals": through_ssm},
                        },
                        *statements,
                    ],
                }
            )
        )
        key = aws.kms.Key(
            name,
            description=description,
            enable_key_rotation=True,
            deletion_window_in_days=7,
            policy=policy,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.kms.Alias(
            name,
            name=f"alias/vpc-runners-{args.fleet}-{name.rsplit('-', 1)[-1]}",
            target_key_id=key.key_id,
            opts=pulumi.ResourceOptions(parent=self),
        )
        return key


def _use(sid: str, role_arn: str, actions: list[str], via: str, parameter_arns: list[str]) -> dict[str, object]:
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"AWS": role_arn},
        "Action": actions,
        "Resource": "*",  # in a key policy, "*" is this key
        "Condition": {
            "StringEquals": {"kms:ViaService": via},
            "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": parameter_arns},
        },
    }
