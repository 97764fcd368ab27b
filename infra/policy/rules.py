"""The security properties of a vpc-runners stack, as checks over resource properties.

Pure functions of (resource type, properties) -> violations, so the same rules run inside the
policy pack (``pulumi preview --policy-pack infra/policy``) and in the unit tests. Properties use
the engine's camelCase names. Values still unknown at preview time are not judged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

Props = Mapping[str, Any]
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
LEGACY_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SUBNET = "aws:ec2/subnet:Subnet"
LAMBDA = "aws:lambda/function:Function"
POLICY_TYPES = ("aws:iam/rolePolicy:RolePolicy", "aws:iam/policy:Policy")
MANAGED_ATTACHMENTS = ("aws:iam/rolePolicyAttachment:RolePolicyAttachment", "aws:iam/policyAttachment:PolicyAttachment")
ROLE = "aws:iam/role:Role"
KMS_KEY = "aws:kms/key:Key"
# Actions AWS cannot scope to a resource (Service Authorization Reference: no resource types), the only
# ones a "*" resource is allowed for. tests/infra/test_least_privilege.py checks this list against it.
UNSCOPABLE_ACTIONS = frozenset(
    {
        "ec2:DescribeInstances",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
)
# What a key policy may let the account (and so anyone IAM lets) do with a key: administer it, and
# encrypt or decrypt through SSM only.
KEY_USE = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncrypt", "kms:CreateGrant", "kms:*")
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+-[A-Za-z0-9]{6}")
SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|PRIVATE_KEY|API_KEY)", re.IGNORECASE)
SECRET_VALUE = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----|^gh[pousr]_[A-Za-z0-9]{20,}|^github_pat_")


def _true(value: Any) -> bool | None:
    if value is None:
        return None
    return str(value).lower() == "true"


def no_public_ip(resource_type: str, props: Props) -> list[str]:
    found = []
    if resource_type == LAUNCH_TEMPLATE:
        for nic in props.get("networkInterfaces") or []:
            if _true(nic.get("associatePublicIpAddress")) is not False:
                found.append("launch template network interface must set associatePublicIpAddress = false")
        if not props.get("networkInterfaces"):
            found.append("launch template must declare its network interface with associatePublicIpAddress = false")
    if resource_type == INSTANCE and _true(props.get("associatePublicIpAddress")):
        found.append("instance must not have a public IP")
    if resource_type == SUBNET and _true(props.get("mapPublicIpOnLaunch")):
        found.append("subnet must not give instances public IPs on launch")
    return found


def imdsv2_required(resource_type: str, props: Props) -> list[str]:
    if resource_type in (LAUNCH_TEMPLATE, INSTANCE):
        tokens = (props.get("metadataOptions") or {}).get("httpTokens")
        if tokens != "required":
            return [f"IMDSv2 must be required (metadataOptions.httpTokens = required, got {tokens!r})"]
    return []


def encrypted_volumes(resource_type: str, props: Props) -> list[str]:
    found = []
    if resource_type == LAUNCH_TEMPLATE:
        mappings = props.get("blockDeviceMappings") or []
        if not mappings:
            found.append("launch template must declare its root volume, encrypted")
        for mapping in mappings:
            if _true((mapping.get("ebs") or {}).get("encrypted")) is not True:
                found.append(f"volume {mapping.get('deviceName')} must be encrypted")
    if resource_type == "aws:ebs/volume:Volume" and _true(props.get("encrypted")) is not True:
        found.append("EBS volume must be encrypted")
    return found


def runner_security_group_has_no_inline_ingress(resource_type: str, props: Props) -> list[str]:
    if resource_type == SECURITY_GROUP and (props.get("ingress") or []):
        return ["security groups of this stack declare no inline ingress; the runner group must have none"]
    return []


def ingress_only_from_security_groups(resource_type: str, props: Props) -> list[str]:
    """Every inbound rule this stack declares is a database rule, from the runner security group."""
    if resource_type == INGRESS_RULE:
        if props.get("cidrIpv4") or props.get("cidrIpv6") or props.get("prefixListId"):
            return ["inbound rules may only reference the runner security group, never an address range"]
        if not props.get("referencedSecurityGroupId"):
            return ["inbound rule must reference the runner security group"]
        if props.get("ipProtocol") in ("-1", "all") or props.get("fromPort") != props.get("toPort"):
            return ["inbound rule must open exactly the database port"]
    if resource_type == LEGACY_RULE and props.get("type") == "ingress" and props.get("cidrBlocks"):
        return ["inbound rules may only reference the runner security group, never an address range"]
    return []


def rds_connect_is_scoped(resource_type: str, props: Props) -> list[str]:
    if resource_type not in POLICY_TYPES:
        return []
    found = []
    for statement in _statements(props.get("policy")):
        actions = _as_list(statement.get("Action"))
        if any(a in ("rds-db:connect", "rds-db:*", "*") for a in actions) and statement.get("Effect") == "Allow":
            for resource in _as_list(statement.get("Resource")):
                if not re.fullmatch(
                    r"arn:aws[a-z-]*:rds-db:[a-z0-9-]+:\d{12}:dbuser:(db|cluster|prx)-[A-Za-z0-9]+/[^*/]+",
                    str(resource),
                ):
                    found.append(f"rds-db:connect must name one database user, not {resource!r}")
    return found


def secret_reads_are_scoped(resource_type: str, props: Props) -> list[str]:
    """GetSecretValue names complete secret ARNs; a role decrypts with a key only through a named service."""
    if resource_type not in POLICY_TYPES:
        return []
    found = []
    for statement in _statements(props.get("policy")):
        if statement.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in _as_list(statement.get("Action"))]
        if any(a in ("secretsmanager:GetSecretValue", "secretsmanager:*", "*") for a in actions):
            for resource in _as_list(statement.get("Resource")):
                if not SECRET_ARN.fullmatch(str(resource)):
                    found.append(f"secretsmanager:GetSecretValue must name one complete secret ARN, not {resource!r}")
        if any(a in ("kms:Decrypt", "kms:*", "*") for a in actions):
            via = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService")
            if not via:
                found.append("kms:Decrypt in a role's policy needs a kms:ViaService condition")
    return found


def wildcards_only_where_unscopable(resource_type: str, props: Props) -> list[str]:
    """A ``*`` resource is allowed only for actions AWS cannot scope (UNSCOPABLE_ACTIONS)."""
    if resource_type not in POLICY_TYPES:
        return []
    found = []
    for statement in _statements(props.get("policy")):
        if statement.get("Effect") == "Allow" and "*" in _as_list(statement.get("Resource")):
            broad = [a for a in _as_list(statement.get("Action")) if a not in UNSCOPABLE_ACTIONS]
            if broad:
                found.append(f"Resource '*' for {broad}: name the resources")
    return found


def no_managed_policies(resource_type: str, props: Props) -> list[str]:
    """Every grant is written in this stack, where it can be read and proved: no managed policies."""
    if resource_type in MANAGED_ATTACHMENTS:
        return [f"managed policy {props.get('policyArn')!r} attached: write the statements the role needs instead"]
    if resource_type == ROLE and props.get("managedPolicyArns"):
        return [f"managed policies {props.get('managedPolicyArns')} on a role: write the statements instead"]
    return []


def key_use_is_named(resource_type: str, props: Props) -> list[str]:
    """A key policy lets only named roles use a key; the account or ``*`` only through SSM."""
    if resource_type != KMS_KEY or props.get("policy") is None:
        return []
    found = []
    for statement in _statements(props.get("policy")):
        if statement.get("Effect") != "Allow":
            continue
        principals = (
            _as_list((statement.get("Principal") or {}).get("AWS"))
            if isinstance(statement.get("Principal"), dict)
            else [statement.get("Principal")]
        )
        broad = [p for p in principals if p == "*" or str(p).endswith(":root")]
        uses = [a for a in _as_list(statement.get("Action")) if str(a).startswith(KEY_USE)]
        via = ((statement.get("Condition") or {}).get("StringEquals") or {}).get("kms:ViaService", "")
        if broad and uses and not str(via).startswith("ssm."):
            found.append(f"key policy lets {broad} use the key ({uses}) other than through SSM")
    return found


def no_secret_in_lambda_environment(resource_type: str, props: Props) -> list[str]:
    if resource_type != LAMBDA:
        return []
    variables = (props.get("environment") or {}).get("variables") or {}
    found = []
    for name, value in variables.items():
        if SECRET_NAME.search(name) and not name.endswith(("_PARAMETER", "_ARN", "_NAME")):
            found.append(
                f"environment variable {name} looks like a secret: keep it in SSM/Secrets Manager and pass its name"
            )
        if isinstance(value, str) and SECRET_VALUE.search(value):
            found.append(f"environment variable {name} holds a secret value")
    return found


RULES: dict[str, tuple[str, Callable[[str, Props], list[str]]]] = {
    "no-public-ip": ("Runners never get public IP addresses.", no_public_ip),
    "imdsv2-required": ("Instance metadata requires IMDSv2 session tokens.", imdsv2_required),
    "encrypted-volumes": ("Runner volumes are encrypted.", encrypted_volumes),
    "no-inline-ingress": (
        "The runner security group has no inbound rules.",
        runner_security_group_has_no_inline_ingress,
    ),
    "ingress-from-runner-sg-only": (
        "Database ingress only from the runner security group, on its port.",
        ingress_only_from_security_groups,
    ),
    "rds-connect-scoped": ("rds-db:connect names each database user; no wildcard.", rds_connect_is_scoped),
    "secret-read-scoped": (
        "A role reads only named secrets, and decrypts only through a named service.",
        secret_reads_are_scoped,
    ),
    "no-needless-wildcards": ("IAM resources are named wherever AWS allows.", wildcards_only_where_unscopable),
    "no-managed-policies": ("Roles carry only the statements this stack writes.", no_managed_policies),
    "key-use-is-named": ("Only named roles use a secret's key; the account only through SSM.", key_use_is_named),
    "no-secrets-in-lambda-env": (
        "Secrets never sit in plain Lambda environment values.",
        no_secret_in_lambda_environment,
    ),
}


def runner_group_ingress(resources: Iterable[tuple[str, Props]]) -> list[str]:
    """Stack-wide: no inbound rule targets the runner security group (whose description says so)."""
    runner_groups = {
        p.get("id")
        for t, p in resources
        if t == SECURITY_GROUP and str(p.get("description", "")).startswith("vpc-runners:")
    }
    return [
        f"inbound rule on the runner security group {p.get('securityGroupId')}"
        for t, p in resources
        if t == INGRESS_RULE and p.get("securityGroupId") in runner_groups - {None}
    ]


def check(resource_type: str, props: Props) -> list[str]:
    return [f"{name}: {message}" for name, (_, rule) in RULES.items() for message in rule(resource_type, props)]


def _statements(policy: Any) -> list[dict[str, Any]]:
    if isinstance(policy, str):
        try:
            policy = json.loads(policy)
        except ValueError:
            return []
    if not isinstance(policy, dict):
        return []
    return [s for s in _as_list(policy.get("Statement")) if isinstance(s, dict)]


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
