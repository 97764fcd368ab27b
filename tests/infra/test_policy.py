"""The policy pack's rules, fed bad resources (the good ones come from the program, in test_program)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.policy import rules

GOOD_LT = {
    "metadataOptions": {"httpTokens": "required"},
    "networkInterfaces": [{"associatePublicIpAddress": "false", "securityGroups": ["sg-1"]}],
    "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true"}}],
}


def policy(*statements):
    return {"policy": json.dumps({"Version": "2012-10-17", "Statement": list(statements)})}


BAD = [
    (rules.LAUNCH_TEMPLATE, {**GOOD_LT, "networkInterfaces": [{"associatePublicIpAddress": "true"}]}, "no-public-ip"),
    (rules.LAUNCH_TEMPLATE, {**GOOD_LT, "networkInterfaces": []}, "no-public-ip"),
    (rules.INSTANCE, {"associatePublicIpAddress": True, "metadataOptions": {"httpTokens": "required"}}, "no-public-ip"),
    (rules.SUBNET, {"mapPublicIpOnLaunch": True}, "no-public-ip"),
    (rules.LAUNCH_TEMPLATE, {**GOOD_LT, "metadataOptions": {"httpTokens": "optional"}}, "imdsv2-required"),
    (rules.LAUNCH_TEMPLATE, {**GOOD_LT, "metadataOptions": {}}, "imdsv2-required"),
    (
        rules.LAUNCH_TEMPLATE,
        {**GOOD_LT, "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {}}]},
        "encrypted-volumes",
    ),
    ("aws:ebs/volume:Volume", {"encrypted": False}, "encrypted-volumes"),
    (
        rules.SECURITY_GROUP,
        {"ingress": [{"fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]},
        "no-inline-ingress",
    ),
    (rules.INGRESS_RULE, {"cidrIpv4": "0.0.0.0/0", "fromPort": 5432, "toPort": 5432}, "ingress-from-runner-sg-only"),
    (
        rules.INGRESS_RULE,
        {"referencedSecurityGroupId": "sg-1", "fromPort": 0, "toPort": 65535},
        "ingress-from-runner-sg-only",
    ),
    (rules.LEGACY_RULE, {"type": "ingress", "cidrBlocks": ["10.0.0.0/8"]}, "ingress-from-runner-sg-only"),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy(
            {
                "Effect": "Allow",
                "Action": "rds-db:connect",
                "Resource": "arn:aws:rds-db:eu-central-1:123456789012:dbuser:*/*",
            }
        ),
        "rds-connect-scoped",
    ),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy({"Effect": "Allow", "Action": "rds-db:connect", "Resource": "*"}),
        "rds-connect-scoped",
    ),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy({"Effect": "Allow", "Action": ["ec2:TerminateInstances"], "Resource": "*"}),
        "no-needless-wildcards",
    ),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy({"Effect": "Allow", "Action": ["ec2:Describe*"], "Resource": "*"}),
        "no-needless-wildcards",
    ),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy({"Effect": "Allow", "Action": "secretsmanager:GetSecretValue", "Resource": "*"}),
        "secret-read-scoped",
    ),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy(
            {
                "Effect": "Allow",
                "Action": "secretsmanager:GetSecretValue",
                "Resource": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:prod/*",
            }
        ),
        "secret-read-scoped",
    ),
    (
        "aws:iam/rolePolicy:RolePolicy",
        policy(
            {
                "Effect": "Allow",
                "Action": "kms:Decrypt",
                "Resource": "arn:aws:kms:eu-central-1:123456789012:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
            }
        ),
        "secret-read-scoped",
    ),
    (
        rules.MANAGED_ATTACHMENTS[0],
        {"role": "r", "policyArn": "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"},
        "no-managed-policies",
    ),
    (rules.ROLE, {"managedPolicyArns": ["arn:aws:iam::aws:policy/ReadOnlyAccess"]}, "no-managed-policies"),
    (
        rules.KMS_KEY,
        policy(
            {
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                "Action": "kms:*",
                "Resource": "*",
            }
        ),
        "key-use-is-named",
    ),
    (
        rules.KMS_KEY,
        policy({"Effect": "Allow", "Principal": "*", "Action": "kms:Decrypt", "Resource": "*"}),
        "key-use-is-named",
    ),
    (rules.LAMBDA, {"environment": {"variables": {"WEBHOOK_SECRET": "abc"}}}, "no-secrets-in-lambda-env"),
    (
        rules.LAMBDA,
        {"environment": {"variables": {"APP": "-----BEGIN RSA PRIVATE KEY-----\nMII"}}},
        "no-secrets-in-lambda-env",
    ),
    (rules.LAMBDA, {"environment": {"variables": {"GH": "ghp_" + "a" * 36}}}, "no-secrets-in-lambda-env"),
]


@pytest.mark.parametrize(("resource_type", "props", "rule"), BAD, ids=[f"{r}-{i}" for i, (_, _, r) in enumerate(BAD)])
def test_each_rule_catches_its_violation(resource_type, props, rule):
    violations = rules.check(resource_type, props)
    assert any(v.startswith(f"{rule}:") for v in violations), violations


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (rules.LAUNCH_TEMPLATE, GOOD_LT),
        (
            rules.INGRESS_RULE,
            {"referencedSecurityGroupId": "sg-1", "fromPort": 5432, "toPort": 5432, "ipProtocol": "tcp"},
        ),
        (
            "aws:iam/rolePolicy:RolePolicy",
            policy(
                {
                    "Effect": "Allow",
                    "Action": "rds-db:connect",
                    "Resource": "arn:aws:rds-db:eu-central-1:123456789012:dbuser:cluster-ABC123/migrator",
                },
                {"Effect": "Allow", "Action": ["ec2:DescribeInstances"], "Resource": "*"},
                {
                    "Effect": "Allow",
                    "Action": "secretsmanager:GetSecretValue",
                    "Resource": "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds!db-0f1e2d3c-AbC123",
                },
            ),
        ),
        (rules.LAMBDA, {"environment": {"variables": {"WEBHOOK_SECRET_PARAMETER": "/vpc-runners/x/webhook-secret"}}}),
        (
            rules.KMS_KEY,
            policy(
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                    "Action": ["kms:Encrypt", "kms:Decrypt"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-central-1.amazonaws.com"}},
                },
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": "arn:aws:iam::123456789012:role/webhook"},
                    "Action": "kms:Decrypt",
                    "Resource": "*",
                },
            ),
        ),
    ],
)
def test_compliant_resources_pass(resource_type, props):
    assert rules.check(resource_type, props) == []


def test_stack_rule_finds_inbound_rules_on_the_runner_group():
    resources = [
        (rules.SECURITY_GROUP, {"id": "sg-runner", "description": "vpc-runners: ephemeral runners"}),
        (rules.INGRESS_RULE, {"securityGroupId": "sg-runner", "referencedSecurityGroupId": "sg-x"}),
        (rules.INGRESS_RULE, {"securityGroupId": "sg-database", "referencedSecurityGroupId": "sg-runner"}),
    ]
    assert rules.runner_group_ingress(resources) == ["inbound rule on the runner security group sg-runner"]


def test_policy_pack_wires_every_rule_to_the_engine(monkeypatch: pytest.MonkeyPatch):
    """Run the pack's entry point with PolicyPack captured, then drive its validate callbacks."""
    import runpy
    import sys
    from types import SimpleNamespace

    import pulumi_policy

    packs = []
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: packs.append(kwargs))
    monkeypatch.setattr(sys, "path", [str(Path(rules.__file__).parent), *sys.path])
    runpy.run_path(str(Path(rules.__file__).with_name("__main__.py")), run_name="__main__")
    (pack,) = packs
    policies = {p.name: p for p in pack["policies"]}
    assert set(policies) == set(rules.RULES) | {"runner-sg-no-ingress"}
    assert pack["enforcement_level"] == pulumi_policy.EnforcementLevel.MANDATORY
    reported: list[str] = []
    bad_template = SimpleNamespace(
        resource_type=rules.LAUNCH_TEMPLATE, props={**GOOD_LT, "metadataOptions": {"httpTokens": "optional"}}
    )
    policies["imdsv2-required"].validate(bad_template, reported.append)
    policies["no-public-ip"].validate(bad_template, reported.append)
    assert len(reported) == 1 and "IMDSv2" in reported[0]
    stack = SimpleNamespace(
        resources=[
            SimpleNamespace(resource_type=rules.SECURITY_GROUP, props={"id": "sg-r", "description": "vpc-runners: x"}),
            SimpleNamespace(resource_type=rules.INGRESS_RULE, props={"securityGroupId": "sg-r"}),
        ]
    )
    policies["runner-sg-no-ingress"].validate(stack, reported.append)
    assert reported[-1] == "inbound rule on the runner security group sg-r"
