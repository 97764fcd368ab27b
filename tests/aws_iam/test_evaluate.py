"""The IAM evaluator against AWS's documented evaluation logic, one rule at a time."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from tests.aws_iam.evaluate import (
    ContextValue,
    Decision,
    PolicyError,
    Request,
    UnsupportedConditionError,
    evaluate,
    parse_operator,
)

ACCOUNT = "123456789012"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/vpc-runner"
OTHER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/someone-else"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
PARAMETER = f"arn:aws:ssm:eu-central-1:{ACCOUNT}:parameter/vpc-runners/prod/jit/i-0abc"
INSTANCE = f"arn:aws:ec2:eu-central-1:{ACCOUNT}:instance/i-0abc"
KEY = f"arn:aws:kms:eu-central-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str | list[str], resource: str | list[str] = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **more}


def deny(action: str | list[str], resource: str | list[str] = "*", **more: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **more}


def request(
    action: str = "ssm:GetParameter",
    resource: str = PARAMETER,
    principal: str = ROLE,
    context: Mapping[str, ContextValue] | None = None,
) -> Request:
    return Request(action, resource, principal, context or {})


# --- allow, deny ----------------------------------------------------------------------------------------------


def test_a_matching_allow_allows_and_names_its_statement() -> None:
    decision = evaluate(request(), [policy(allow("ssm:GetParameter", PARAMETER, Sid="ReadJit"))])
    assert decision == Decision(True, "allowed", ("ReadJit",))
    assert decision


def test_nothing_allows_means_implicit_deny() -> None:
    decision = evaluate(request(), [policy(allow("ssm:PutParameter", PARAMETER))])
    assert not decision.allowed
    assert "implicitly denied" in decision.reason
    assert decision.sids == ()
    assert not evaluate(request(), [])


def test_explicit_deny_beats_allow_across_policies() -> None:
    identity = [
        policy(allow("ssm:*", "*", Sid="Broad")),
        policy(deny("ssm:GetParameter", "arn:aws:ssm:*:*:parameter/vpc-runners/*", Sid="NoJit")),
    ]
    decision = evaluate(request(), identity)
    assert decision == Decision(False, "explicitly denied", ("NoJit",))
    # The deny is scoped: another parameter is still allowed.
    other = request(resource=f"arn:aws:ssm:eu-central-1:{ACCOUNT}:parameter/other")
    assert evaluate(other, identity).allowed


def test_unnamed_statements_are_labelled_by_position() -> None:
    decision = evaluate(request(), [policy(deny("ssm:Put*")), policy(allow("ssm:Get*"), deny("ssm:GetParameter"))])
    assert decision.sids == ("identity[1].Statement[1]",)


def test_statement_may_be_a_single_object() -> None:
    assert evaluate(request(), [{"Version": "2012-10-17", "Statement": allow("ssm:GetParameter")}]).allowed


# --- Action / NotAction ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "action", "matches"),
    [
        ("ssm:GetParameter", "ssm:GetParameter", True),
        ("SSM:getparameter", "ssm:GetParameter", True),  # prefix and name are case-insensitive
        ("ssm:GetParameter", "ssm:GetParameters", False),
        ("ssm:GetParameter?", "ssm:GetParameters", True),
        ("ssm:GetParameter?", "ssm:GetParameter", False),
        ("ssm:Get*", "ssm:GetParametersByPath", True),
        ("ssm:*", "ssmmessages:OpenDataChannel", False),  # the prefix ends at ":"
        ("ssm*", "ssmmessages:OpenDataChannel", True),
        ("*", "kms:Decrypt", True),
        ("ec2:*Tags", "ec2:CreateTags", True),
        ("ec2:*Tags", "ec2:CreateTagsX", False),
    ],
)
def test_action_wildcards(pattern: str, action: str, matches: bool) -> None:
    assert evaluate(request(action, "*"), [policy(allow(pattern))]).allowed is matches


def test_not_action_allows_everything_else() -> None:
    identity = [policy({"Effect": "Allow", "NotAction": ["iam:*", "kms:*"], "Resource": "*"})]
    assert evaluate(request("ssm:GetParameter"), identity).allowed
    assert not evaluate(request("iam:PassRole", "*"), identity).allowed
    assert not evaluate(request("KMS:Decrypt", "*"), identity).allowed


def test_deny_with_not_action_denies_all_but_the_listed() -> None:
    identity = [
        policy(allow("*"), {"Effect": "Deny", "NotAction": "ssm:GetParameter", "Resource": "*", "Sid": "OnlyGet"})
    ]
    assert evaluate(request("ssm:GetParameter"), identity).allowed
    assert evaluate(request("ssm:PutParameter"), identity).sids == ("OnlyGet",)


# --- Resource / NotResource --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "matches"),
    [
        (PARAMETER, True),
        ("*", True),
        ("arn:aws:ssm:*:*:parameter/vpc-runners/*", True),
        ("arn:aws:ssm:eu-central-1:123456789012:parameter/vpc-runners/prod/jit/i-0ab?", True),
        ("arn:aws:ssm:eu-central-1:123456789012:parameter/vpc-runners/prod/jit/i-0a?", False),  # ? is one character
        ("arn:aws:ssm:eu-central-1:123456789012:parameter/vpc-runners/staging/*", False),
        ("arn:aws:ssm:eu-central-1:123456789012:parameter/VPC-RUNNERS/*", False),  # resources are case-sensitive
        ("arn:aws:ssm:eu-central-1:123456789012:parameter/vpc-runners/prod/jit", False),  # whole ARN, not a prefix
        ("arn:aws:ssm:eu-central-1:123456789012:parameter/vpc-runners/prod/jit/i-0abc.", False),
    ],
)
def test_resource_wildcards(pattern: str, matches: bool) -> None:
    assert evaluate(request(), [policy(allow("ssm:GetParameter", pattern))]).allowed is matches


def test_resource_list_is_any_of() -> None:
    identity = [policy(allow("ssm:GetParameter", ["arn:aws:ssm:*:*:parameter/a", PARAMETER]))]
    assert evaluate(request(), identity).allowed


def test_specific_resource_does_not_match_a_star_request() -> None:
    # Actions without resource-level permissions are requested on "*": only Resource "*" covers them.
    assert not evaluate(request("ec2:DescribeInstances", "*"), [policy(allow("ec2:*", INSTANCE))]).allowed
    assert evaluate(request("ec2:DescribeInstances", "*"), [policy(allow("ec2:*", "*"))]).allowed


def test_not_resource() -> None:
    identity = [
        policy({"Effect": "Allow", "Action": "ssm:GetParameter", "NotResource": "arn:aws:ssm:*:*:parameter/x/*"})
    ]
    assert evaluate(request(), identity).allowed
    assert not evaluate(request(resource=f"arn:aws:ssm:eu-central-1:{ACCOUNT}:parameter/x/y"), identity).allowed
    fence = policy(
        allow("ssm:*"), {"Effect": "Deny", "Action": "ssm:*", "NotResource": PARAMETER, "Sid": "OnlyThisParameter"}
    )
    assert evaluate(request(), [fence]).allowed
    assert evaluate(request(resource=f"{PARAMETER}x"), [fence]).sids == ("OnlyThisParameter",)


# --- policy variables -----------------------------------------------------------------------------------------

OWN_PARAMETER = f"arn:aws:ssm:eu-central-1:{ACCOUNT}:parameter/vpc-runners/prod/jit/${{aws:ResourceTag/InstanceId}}"


def test_variable_in_resource_is_substituted_from_the_context() -> None:
    identity = [policy(allow("ssm:GetParameter", OWN_PARAMETER))]
    assert evaluate(request(context={"aws:ResourceTag/InstanceId": "i-0abc"}), identity).allowed
    assert not evaluate(request(context={"aws:ResourceTag/InstanceId": "i-0def"}), identity).allowed
    # Context keys are case-insensitive, in variables too.
    assert evaluate(request(context={"AWS:RESOURCETAG/INSTANCEID": "i-0abc"}), identity).allowed


def test_missing_variable_makes_the_resource_entry_match_nothing() -> None:
    assert not evaluate(request(), [policy(allow("ssm:GetParameter", OWN_PARAMETER))]).allowed
    # A multivalued key is no policy variable either.
    many = {"aws:ResourceTag/InstanceId": ["i-0abc", "i-0def"]}
    assert not evaluate(request(context=many), [policy(allow("ssm:GetParameter", OWN_PARAMETER))]).allowed


def test_variable_whose_instance_arn_is_the_resource() -> None:
    identity = [policy(allow("ec2:CreateTags", "${ec2:SourceInstanceARN}"))]
    assert evaluate(request("ec2:CreateTags", INSTANCE, context={"ec2:SourceInstanceARN": INSTANCE}), identity).allowed
    other = INSTANCE.replace("i-0abc", "i-0def")
    assert not evaluate(request("ec2:CreateTags", other, context={"ec2:SourceInstanceARN": INSTANCE}), identity).allowed


def test_variable_default_and_escapes() -> None:
    with_default = [policy(allow("ssm:GetParameter", "arn:aws:ssm:*:*:parameter/${aws:username, 'shared'}"))]
    assert evaluate(request(resource=f"arn:aws:ssm:eu-central-1:{ACCOUNT}:parameter/shared"), with_default).allowed
    assert evaluate(
        request(resource=f"arn:aws:ssm:x:{ACCOUNT}:parameter/ann", context={"aws:username": "ann"}), with_default
    )
    # ${*} is a literal star, not a wildcard; a substituted "*" is literal too.
    literal = [policy(allow("ssm:GetParameter", "arn:aws:ssm:*:*:parameter/a${*}"))]
    assert evaluate(request(resource="arn:aws:ssm:r:1:parameter/a*"), literal).allowed
    assert not evaluate(request(resource="arn:aws:ssm:r:1:parameter/ab"), literal).allowed
    substituted = [policy(allow("ssm:GetParameter", "arn:aws:ssm:*:*:parameter/${aws:username}"))]
    assert not evaluate(
        request(resource="arn:aws:ssm:r:1:parameter/ab", context={"aws:username": "*"}), substituted
    ).allowed


def test_variable_in_condition_value() -> None:
    # The control plane tags each runner with its instance id; an instance may read only its own parameter.
    statement = allow(
        "ssm:GetParameter",
        "arn:aws:ssm:*:*:parameter/vpc-runners/*",
        Condition={"ArnEquals": {"ec2:SourceInstanceARN": "arn:aws:ec2:*:*:instance/${aws:ResourceTag/InstanceId}"}},
    )
    own = {"ec2:SourceInstanceARN": INSTANCE, "aws:ResourceTag/InstanceId": "i-0abc"}
    assert evaluate(request(context=own), [policy(statement)]).allowed
    stolen = {"ec2:SourceInstanceARN": INSTANCE, "aws:ResourceTag/InstanceId": "i-0def"}
    assert not evaluate(request(context=stolen), [policy(statement)]).allowed
    untagged = {"ec2:SourceInstanceARN": INSTANCE}
    assert not evaluate(request(context=untagged), [policy(statement)]).allowed


# --- condition operators ---------------------------------------------------------------------------------------

MISSING = None
FLEET = "aws:RequestTag/vpc-runners:fleet"


@pytest.mark.parametrize(
    ("operator", "policy_values", "value", "expected"),
    [
        ("StringEquals", "prod", "prod", True),
        ("StringEquals", "prod", "Prod", False),
        ("StringEquals", ["staging", "prod"], "prod", True),  # values are OR'ed
        ("StringEquals", "prod", MISSING, False),
        ("StringEquals", "pro*", "prod", False),  # no wildcards
        ("StringNotEquals", "prod", "prod", False),
        ("StringNotEquals", "prod", "staging", True),
        ("StringNotEquals", ["staging", "prod"], "prod", False),
        ("StringNotEquals", "prod", MISSING, True),  # negated operators hold on a missing key
        ("StringEqualsIgnoreCase", "PROD", "prod", True),
        ("StringEqualsIgnoreCase", "PROD", "staging", False),
        ("StringEqualsIgnoreCase", "PROD", MISSING, False),
        ("StringNotEqualsIgnoreCase", "PROD", "prod", False),
        ("StringNotEqualsIgnoreCase", "PROD", MISSING, True),
        ("StringLike", "pr?d-*", "prod-eu", True),
        ("StringLike", "pr?d-*", "prd-eu", False),
        ("StringLike", "pr?d-*", "Prod-eu", False),  # case-sensitive
        ("StringLike", "pr?d-*", MISSING, False),
        ("StringNotLike", "pr?d-*", "prod-eu", False),
        ("StringNotLike", "pr?d-*", "staging", True),
        ("StringNotLike", "pr?d-*", MISSING, True),
        ("Bool", "true", "true", True),
        ("Bool", True, "true", True),  # JSON booleans in the policy
        ("Bool", "false", "true", False),
        ("Bool", "true", "TRUE", True),
        ("Bool", "true", MISSING, False),
        ("NumericEquals", "3", "3.0", True),
        ("NumericEquals", 3, "4", False),
        ("NumericNotEquals", "3", "4", True),
        ("NumericNotEquals", "3", MISSING, True),
        ("NumericLessThan", "10", "9", True),
        ("NumericLessThan", "10", "10", False),
        ("NumericLessThanEquals", "10", "10", True),
        ("NumericGreaterThan", "10", "11", True),
        ("NumericGreaterThan", "10", "10", False),
        ("NumericGreaterThanEquals", "10", "10", True),
        ("NumericGreaterThanEquals", "10", "not a number", False),
        ("NumericGreaterThanEquals", "10", MISSING, False),
    ],
)
def test_operator(operator: str, policy_values: Any, value: str | None, expected: bool) -> None:
    statement = allow("ec2:CreateFleet", Condition={operator: {FLEET: policy_values}})
    context = {} if value is None else {FLEET: value}
    assert evaluate(Request("ec2:CreateFleet", "*", ROLE, context), [policy(statement)]).allowed is expected


@pytest.mark.parametrize(
    ("operator", "pattern", "arn", "expected"),
    [
        ("ArnEquals", INSTANCE, INSTANCE, True),
        ("ArnEquals", "arn:aws:ec2:*:*:instance/*", INSTANCE, True),  # ArnEquals takes wildcards, like ArnLike
        ("ArnLike", "arn:aws:ec2:eu-*:123456789012:instance/i-0ab?", INSTANCE, True),
        ("ArnLike", "arn:aws:ec2:*:123456789012:instance/*", INSTANCE, True),
        ("ArnLike", "arn:aws:ec2:*:999999999999:instance/*", INSTANCE, False),
        ("ArnLike", "arn:aws:ec2:*:*:volume/*", INSTANCE, False),
        ("ArnLike", "*", INSTANCE, True),
        ("ArnNotEquals", INSTANCE, INSTANCE, False),
        ("ArnNotLike", "arn:aws:ec2:*:*:volume/*", INSTANCE, True),
        ("ArnNotLike", "arn:aws:ec2:*:*:instance/*", INSTANCE, False),
        # Each of the six parts matches on its own: a region wildcard does not swallow a colon...
        ("ArnLike", "arn:aws:ec2:*:123456789012:instance/*", "arn:aws:ec2:eu:x:123456789012:instance/i", False),
        ("StringLike", "arn:aws:ec2:*:123456789012:instance/*", "arn:aws:ec2:eu:x:123456789012:instance/i", True),
        # ... while the resource part may hold colons.
        ("ArnLike", "arn:aws:logs:*:*:log-group:*", "arn:aws:logs:eu:1:log-group:/a/b:log-stream:c", True),
    ],
)
def test_arn_operators(operator: str, pattern: str, arn: str, expected: bool) -> None:
    statement = allow("ssm:GetParameter", Condition={operator: {"ec2:SourceInstanceARN": pattern}})
    assert evaluate(request(context={"ec2:SourceInstanceARN": arn}), [policy(statement)]).allowed is expected


def test_arn_operator_on_missing_key() -> None:
    assert not evaluate(request(), [policy(allow("*", Condition={"ArnLike": {"aws:SourceArn": "*"}}))]).allowed
    assert evaluate(request(), [policy(allow("*", Condition={"ArnNotLike": {"aws:SourceArn": "*"}}))]).allowed


@pytest.mark.parametrize(
    ("operator", "value", "expected"),
    [
        ("StringEqualsIfExists", MISSING, True),
        ("StringEqualsIfExists", "prod", True),
        ("StringEqualsIfExists", "staging", False),
        ("StringLikeIfExists", MISSING, True),
        ("StringNotEqualsIfExists", "prod", False),
        ("ArnLikeIfExists", MISSING, True),
        ("BoolIfExists", MISSING, True),
        ("NumericLessThanIfExists", MISSING, True),
        ("ForAnyValue:StringEqualsIfExists", MISSING, True),
        ("ForAnyValue:StringEquals", MISSING, False),
    ],
)
def test_if_exists(operator: str, value: str | None, expected: bool) -> None:
    base = operator.removesuffix("IfExists").split(":")[-1]
    policy_value = {"Bool": "true", "ArnLike": "arn:*", "NumericLessThan": "1"}.get(base, "prod")
    statement = allow("ec2:CreateFleet", Condition={operator: {FLEET: policy_value}})
    context = {} if value is None else {FLEET: value}
    assert evaluate(Request("ec2:CreateFleet", "*", ROLE, context), [policy(statement)]).allowed is expected


@pytest.mark.parametrize(
    ("value", "context", "expected"),
    [
        ("true", {}, True),  # "true": the key must be absent
        ("true", {FLEET: "prod"}, False),
        ("false", {FLEET: "prod"}, True),
        ("false", {}, False),
        (False, {FLEET: "prod"}, True),
        ("true", {"aws:TagKeys": []}, True),  # an empty multivalued key counts as absent
    ],
)
def test_null(value: Any, context: dict[str, ContextValue], expected: bool) -> None:
    key = "aws:TagKeys" if "aws:TagKeys" in context else FLEET
    statement = allow("ec2:CreateFleet", Condition={"Null": {key: value}})
    assert evaluate(Request("ec2:CreateFleet", "*", ROLE, context), [policy(statement)]).allowed is expected


ALLOWED_KEYS = ["vpc-runners:fleet", "vpc-runners:repo"]


@pytest.mark.parametrize(
    ("operator", "tag_keys", "expected"),
    [
        ("ForAllValues:StringEquals", ["vpc-runners:fleet"], True),
        ("ForAllValues:StringEquals", ["vpc-runners:fleet", "vpc-runners:repo"], True),
        ("ForAllValues:StringEquals", ["vpc-runners:fleet", "Name"], False),  # every request value must match
        ("ForAllValues:StringEquals", [], True),  # vacuously true
        ("ForAllValues:StringEquals", MISSING, True),
        ("ForAllValues:StringLike", ["vpc-runners:anything"], True),
        ("ForAnyValue:StringEquals", ["Name", "vpc-runners:repo"], True),  # at least one must
        ("ForAnyValue:StringEquals", ["Name", "Owner"], False),
        ("ForAnyValue:StringEquals", [], False),
        ("ForAnyValue:StringEquals", MISSING, False),
        ("ForAnyValue:StringEquals", "vpc-runners:fleet", True),  # a single string is a one-value set
        # Negated operators apply per request value.
        ("ForAllValues:StringNotEquals", ["Name", "Owner"], True),
        ("ForAllValues:StringNotEquals", ["Name", "vpc-runners:fleet"], False),
        ("ForAllValues:StringNotEquals", MISSING, True),
        ("ForAnyValue:StringNotEquals", ["Name", "vpc-runners:fleet"], True),
        ("ForAnyValue:StringNotEquals", ["vpc-runners:fleet"], False),
    ],
)
def test_set_operators(operator: str, tag_keys: list[str] | str | None, expected: bool) -> None:
    pattern = ["vpc-runners:*"] if operator.endswith("Like") else ALLOWED_KEYS
    statement = allow("ec2:CreateTags", Condition={operator: {"aws:TagKeys": pattern}})
    context: dict[str, ContextValue] = {} if tag_keys is None else {"aws:TagKeys": tag_keys}
    assert evaluate(Request("ec2:CreateTags", INSTANCE, ROLE, context), [policy(statement)]).allowed is expected


@pytest.mark.parametrize(
    ("operator", "expected"),
    [("StringEquals", True), ("StringLike", True), ("StringNotEquals", False), ("StringNotLike", False)],
)
def test_multivalued_key_under_a_single_value_operator_matches_on_any_value(operator: str, expected: bool) -> None:
    # Our documented choice: positive operators hold if any request value matches, negated ones if none does.
    statement = allow("ssm:GetParameter", Condition={operator: {"aws:CalledVia": "cloudformation.amazonaws.com"}})
    context = {"aws:CalledVia": ["cloudformation.amazonaws.com", "dynamodb.amazonaws.com"]}
    assert evaluate(Request("ssm:GetParameter", PARAMETER, ROLE, context), [policy(statement)]).allowed is expected


def test_keys_and_operators_are_anded() -> None:
    statement = allow(
        "ec2:CreateTags",
        INSTANCE,
        Condition={
            "StringEquals": {"ec2:CreateAction": ["RunInstances", "CreateFleet"], FLEET: "prod"},
            "ForAllValues:StringEquals": {"aws:TagKeys": ALLOWED_KEYS},
        },
    )
    good: dict[str, ContextValue] = {
        "ec2:CreateAction": "CreateFleet",
        FLEET: "prod",
        "aws:TagKeys": ["vpc-runners:fleet"],
    }
    assert evaluate(Request("ec2:CreateTags", INSTANCE, ROLE, good), [policy(statement)]).allowed
    spoilers: list[dict[str, ContextValue]] = [
        {"ec2:CreateAction": "CreateTags"},
        {FLEET: "staging"},
        {"aws:TagKeys": ["Name"]},
    ]
    for spoiled in spoilers:
        context = {**good, **spoiled}
        assert not evaluate(Request("ec2:CreateTags", INSTANCE, ROLE, context), [policy(statement)]).allowed
    without_action = {k: v for k, v in good.items() if k != "ec2:CreateAction"}
    assert not evaluate(Request("ec2:CreateTags", INSTANCE, ROLE, without_action), [policy(statement)]).allowed


def test_context_keys_are_case_insensitive_both_ways() -> None:
    statement = allow("iam:PassRole", ROLE, Condition={"StringEquals": {"iam:passedtoservice": "ec2.amazonaws.com"}})
    passing = Request("iam:PassRole", ROLE, ROLE, {"IAM:PassedToService": "ec2.amazonaws.com"})
    assert evaluate(passing, [policy(statement)]).allowed
    # The values stay case-sensitive.
    wrong_case = Request("iam:PassRole", ROLE, ROLE, {"iam:PassedToService": "EC2.amazonaws.com"})
    assert not evaluate(wrong_case, [policy(statement)]).allowed


def test_principal_arn_is_in_the_context_by_default() -> None:
    statement = allow("ssm:GetParameter", Condition={"ArnEquals": {"aws:PrincipalArn": ROLE}})
    assert evaluate(request(), [policy(statement)]).allowed
    assert not evaluate(request(principal=OTHER_ROLE), [policy(statement)]).allowed
    account = allow("ssm:GetParameter", Condition={"StringEquals": {"aws:PrincipalAccount": ACCOUNT}})
    assert evaluate(request(), [policy(account)]).allowed


def test_deny_with_condition_applies_only_when_it_holds() -> None:
    identity = [
        policy(
            allow("ec2:TerminateInstances", "arn:aws:ec2:*:*:instance/*"),
            deny(
                "ec2:TerminateInstances",
                "*",
                Sid="OnlyOurFleet",
                Condition={"StringNotEquals": {"aws:ResourceTag/vpc-runners:fleet": "prod"}},
            ),
        )
    ]
    ours = Request("ec2:TerminateInstances", INSTANCE, ROLE, {"aws:ResourceTag/vpc-runners:fleet": "prod"})
    assert evaluate(ours, identity).allowed
    theirs = Request("ec2:TerminateInstances", INSTANCE, ROLE, {})
    assert evaluate(theirs, identity) == Decision(False, "explicitly denied", ("OnlyOurFleet",))


@pytest.mark.parametrize(
    "operator",
    [
        "DateLessThan",
        "IpAddress",
        "NotIpAddress",
        "BinaryEquals",
        "StringEqualsTypo",
        "stringequals",  # operators are spelled exactly
        "ForAllValues:Null",
        "NullIfExists",
        "ForEachValue:StringEquals",
    ],
)
def test_unsupported_operator_raises(operator: str) -> None:
    statement = allow("ssm:GetParameter", Condition={operator: {"aws:SourceIp": "10.0.0.0/8"}})
    with pytest.raises(UnsupportedConditionError, match="condition operator"):
        evaluate(request(), [policy(statement)])
    # Even when another condition in the block is already false, and in a Deny.
    other = {"StringEquals": {"aws:username": "nobody"}, operator: {"aws:SourceIp": "10.0.0.0/8"}}
    with pytest.raises(UnsupportedConditionError):
        evaluate(request(), [policy(deny("ssm:GetParameter", Condition=other))])
    # Even in a statement for another action, or in a resource policy naming someone else.
    with pytest.raises(UnsupportedConditionError):
        evaluate(request(), [policy(allow("kms:Decrypt", Condition={operator: {"aws:SourceIp": "10.0.0.0/8"}}))])
    elsewhere = {"Effect": "Allow", "Principal": {"AWS": OTHER_ROLE}, "Action": "*", "Resource": "*"}
    with pytest.raises(UnsupportedConditionError):
        evaluate(request(), [], policy({**elsewhere, "Condition": {operator: {"aws:SourceIp": "10.0.0.0/8"}}}))


def test_parse_operator() -> None:
    assert parse_operator("ForAnyValue:StringLikeIfExists") == ("ForAnyValue", "StringLike", True)
    assert parse_operator("ForAllValues:StringEquals") == ("ForAllValues", "StringEquals", False)
    assert parse_operator("Null") == (None, "Null", False)
    assert parse_operator("ArnNotLikeIfExists") == (None, "ArnNotLike", True)


def test_bad_values_raise() -> None:
    with pytest.raises(PolicyError, match="not a number"):
        evaluate(request(), [policy(allow("*", Condition={"NumericLessThan": {"x:y": "ten"}}))])
    with pytest.raises(PolicyError, match="true or false"):
        evaluate(request(context={"x:y": "true"}), [policy(allow("*", Condition={"Bool": {"x:y": "yes"}}))])


# --- resource policies, KMS key policies -----------------------------------------------------------------------


def key_policy(*statements: dict[str, Any]) -> dict[str, Any]:
    return policy(*statements)


ROOT_ADMIN = {"Sid": "EnableIAM", "Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "kms:*", "Resource": "*"}
RUNNER_DECRYPT = {
    "Sid": "RunnerDecrypt",
    "Effect": "Allow",
    "Principal": {"AWS": [OTHER_ROLE, ROLE]},
    "Action": "kms:Decrypt",
    "Resource": "*",
    "Condition": {"StringEquals": {"kms:ViaService": "ssm.eu-central-1.amazonaws.com"}},
}
IDENTITY_DECRYPT = policy(allow("kms:Decrypt", KEY, Sid="IdentityDecrypt"))
DECRYPT = Request(
    "kms:Decrypt",
    KEY,
    ROLE,
    {"kms:ViaService": "ssm.eu-central-1.amazonaws.com", "kms:EncryptionContext:PARAMETER_ARN": PARAMETER},
)


def kms(identity: list[dict[str, Any]], key: dict[str, Any] | None, req: Request = DECRYPT) -> Decision:
    return evaluate(req, identity, key, resource_policy_required=True)


def test_kms_root_delegation_needs_an_identity_allow() -> None:
    assert kms([IDENTITY_DECRYPT], key_policy(ROOT_ADMIN)) == Decision(
        True,
        "the resource policy delegates to IAM (account root) and an identity policy allows",
        ("EnableIAM", "IdentityDecrypt"),
    )
    alone = kms([], key_policy(ROOT_ADMIN))
    assert not alone.allowed
    assert "no identity policy allows" in alone.reason


def test_kms_account_id_principal_is_the_root_too() -> None:
    by_id = {**ROOT_ADMIN, "Principal": {"AWS": ACCOUNT}}
    assert kms([IDENTITY_DECRYPT], key_policy(by_id)).allowed
    assert not kms([], key_policy(by_id)).allowed


def test_kms_identity_allow_alone_is_not_enough() -> None:
    decision = kms(
        [IDENTITY_DECRYPT], key_policy({**ROOT_ADMIN, "Principal": {"AWS": "arn:aws:iam::999999999999:root"}})
    )
    assert not decision.allowed
    assert "resource policy allows neither" in decision.reason
    assert not kms([IDENTITY_DECRYPT], None).allowed


def test_kms_direct_principal_allow_suffices() -> None:
    assert kms([], key_policy(RUNNER_DECRYPT)) == Decision(
        True, "the resource policy allows the principal directly", ("RunnerDecrypt",)
    )
    # Its condition still has to hold...
    assert not kms([], key_policy(RUNNER_DECRYPT), Request("kms:Decrypt", KEY, ROLE, {})).allowed
    # ... and it names only those principals.
    assert not kms([], key_policy(RUNNER_DECRYPT), Request("kms:Decrypt", KEY, f"{ROLE}-2", DECRYPT.context)).allowed
    # An assumed-role session of the named role is that role.
    session = f"arn:aws:sts::{ACCOUNT}:assumed-role/vpc-runner/i-0abc"
    assert kms([], key_policy(RUNNER_DECRYPT), Request("kms:Decrypt", KEY, session, DECRYPT.context)).allowed


def test_kms_everyone_principal_is_direct() -> None:
    public = {**RUNNER_DECRYPT, "Principal": "*"}
    assert kms([], key_policy(public)).allowed
    assert kms([], key_policy({**RUNNER_DECRYPT, "Principal": {"AWS": "*"}})).allowed


def test_kms_deny_wins_everywhere() -> None:
    key_deny = {
        "Sid": "OnlyOwnParameter",
        "Effect": "Deny",
        "Principal": {"AWS": ROLE},
        "Action": "kms:Decrypt",
        "Resource": "*",
        "Condition": {"StringNotLike": {"kms:EncryptionContext:PARAMETER_ARN": "arn:aws:ssm:*:*:parameter/other/*"}},
    }
    assert kms([IDENTITY_DECRYPT], key_policy(ROOT_ADMIN, RUNNER_DECRYPT, key_deny)).sids == ("OnlyOwnParameter",)
    identity_deny = policy(deny("kms:*", Sid="NoKms"))
    assert kms([identity_deny], key_policy(RUNNER_DECRYPT)) == Decision(False, "explicitly denied", ("NoKms",))
    # A Deny naming the account covers its roles.
    account_deny = {**key_deny, "Principal": {"AWS": ROOT}, "Condition": {}}
    assert not kms([IDENTITY_DECRYPT], key_policy(RUNNER_DECRYPT, account_deny)).allowed
    # A Deny naming someone else does not.
    someone_else = {**account_deny, "Principal": {"AWS": OTHER_ROLE}}
    assert kms([], key_policy(RUNNER_DECRYPT, someone_else)).allowed


def test_key_policy_statement_must_match_action_and_resource() -> None:
    encrypt_only = {**RUNNER_DECRYPT, "Action": "kms:Encrypt"}
    assert not kms([], key_policy(encrypt_only)).allowed
    other_key = {**RUNNER_DECRYPT, "Resource": KEY.replace("1234abcd", "ffffffff")}
    assert not kms([], key_policy(other_key)).allowed


def test_resource_policy_without_the_kms_rule() -> None:
    bucket = "arn:aws:s3:::vpc-runners-artifacts/runner.whl"
    get = Request("s3:GetObject", bucket, ROLE, {})
    direct = policy({"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "s3:GetObject", "Resource": bucket})
    assert evaluate(get, [], direct).allowed  # same account: a resource policy naming the role suffices
    root = policy({"Effect": "Allow", "Principal": {"AWS": ROOT}, "Action": "s3:GetObject", "Resource": bucket})
    assert not evaluate(get, [], root).allowed  # naming only the account delegates to IAM
    assert evaluate(get, [policy(allow("s3:GetObject", bucket))], root).allowed
    assert evaluate(get, [policy(allow("s3:GetObject", bucket))], None).allowed
    service = policy(
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "s3:GetObject", "Resource": "*"}
    )
    assert not evaluate(get, [], service).allowed
    assert evaluate(Request("s3:GetObject", bucket, "ec2.amazonaws.com", {}), [], service).allowed


# --- malformed policies ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "resource", "message"),
    [
        ([policy({**allow("*"), "Principal": "*"})], None, "no Principal"),
        ([policy({"Effect": "Allow", "Resource": "*"})], None, "exactly one of Action and NotAction"),
        ([policy({**allow("*"), "NotAction": "iam:*"})], None, "exactly one of Action and NotAction"),
        ([policy({"Effect": "Allow", "Action": "*"})], None, "exactly one of Resource and NotResource"),
        ([policy({**allow("*"), "Effect": "allow"})], None, "Effect must be"),
        ([policy({**allow("*"), "Conditions": {}})], None, "unknown element"),
        ([{"Version": "2012-10-17"}], None, "no Statement"),
        ([], policy(allow("*")), "needs a Principal"),
        ([], policy({**allow("*"), "NotPrincipal": {"AWS": ROLE}}), "NotPrincipal"),
        ([policy(allow("*", Condition=["StringEquals"]))], None, "Condition must be an object"),
        ([policy(allow("*", "arn:${bad variable}"))], None, "malformed policy variable"),
    ],
)
def test_malformed_policies_raise(
    identity: list[dict[str, Any]], resource: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(PolicyError, match=message):
        evaluate(request(), identity, resource)
