"""A small model of AWS's IAM policy evaluation, for proving least privilege in tests.

Covers identity-based policies plus one optional resource-based policy in the same account (a KMS key
policy, a bucket policy, ...). Not modelled: SCPs/RCPs, permissions boundaries, session policies,
cross-account requests, ``NotPrincipal``, and the Date/IpAddress/Binary condition operators (those raise
`UnsupportedConditionError` rather than evaluate to anything).

The rules (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html):

* A matching ``Deny`` in any policy wins.
* Otherwise the request is allowed when an identity-policy ``Allow`` matches, or when a resource-policy
  ``Allow`` names the principal itself (its ARN, the role behind an assumed-role session ARN, or ``*``).
* A resource-policy statement whose principal is the *account* (``arn:aws:iam::ACCOUNT:root`` or the bare
  account id) grants nothing by itself: it delegates to IAM, so an identity policy must allow as well. AWS
  documents this for KMS; for other services the same holds within one account, so it is applied
  everywhere (the conservative reading: it can only turn an allow into a deny).
* ``resource_policy_required=True`` is KMS's rule (and a role trust policy's): the key policy must take part.
  Allowed only when (a) the key policy allows the principal directly, or (b) the key policy allows the account
  root for the action *and* an identity policy allows it. An identity ``Allow`` alone is not enough.
* A resource-policy ``Deny`` naming the account applies to every principal in that account.

Condition semantics follow the condition-operator docs: values for one key are OR'ed, keys and operators are
AND'ed; a missing key makes a positive operator false and a negated one true; ``...IfExists`` makes a missing
key true; ``Null`` tests existence; ``ForAllValues`` is true for a missing or empty key, ``ForAnyValue`` false.
Choice for a multivalued (list) context value under an operator *without* a set prefix: a positive operator
holds when any request value matches any policy value, a negated one when none does (``StringNotEquals`` on a
list is ``not ForAnyValue:StringEquals``). Context keys are compared case-insensitively.

Policy variables (``${aws:username}``, ``${ec2:SourceInstanceARN}``, ``${aws:ResourceTag/InstanceId}``,
``${key, 'default'}``, and the escapes ``${*}`` ``${?}`` ``${$}``) are substituted from the request context in
``Resource``/``NotResource`` entries and in condition values. The substituted text is taken literally (its
``*`` is not a wildcard). An entry or value whose variable is missing from the context (and has no default), or
is multivalued, matches nothing; note that for ``NotResource`` this makes the statement apply *more* widely.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ContextValue = str | list[str]


class PolicyError(ValueError):
    """A policy document this evaluator cannot read (malformed, or using an element it does not model)."""


class UnsupportedConditionError(PolicyError):
    """A condition operator outside the supported set: never silently treated as true or false."""


@dataclass(frozen=True)
class Request:
    """One API call: who calls what on which resource, with the request context's condition keys."""

    action: str  # "ssm:GetParameter"
    resource: str  # an ARN, or "*" for actions without resource-level permissions
    principal_arn: str  # the role making the call
    context: Mapping[str, ContextValue] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    sids: tuple[str, ...] = ()  # the statements that decided (Sid, or "identity[0].Statement[2]" without one)

    def __bool__(self) -> bool:
        return self.allowed


def evaluate(
    request: Request,
    identity_policies: list[dict[str, Any]],
    resource_policy: dict[str, Any] | None = None,
    *,
    resource_policy_required: bool = False,
) -> Decision:
    """Decide `request` against the principal's identity policies and the resource's policy (same account).

    With ``resource_policy_required`` (KMS key policies), the key policy must allow the principal directly, or
    allow the account root (delegating to IAM) while an identity policy allows too; see the module docstring.
    An explicit Deny in any applicable statement wins in every mode.
    """
    ctx = _context(request)
    account = _account(request.principal_arn)
    identity_allow: list[str] = []
    direct_allow: list[str] = []
    account_allow: list[str] = []
    deny: list[str] = []
    for n, policy in enumerate(identity_policies):
        for label, st in _statements(policy, f"identity[{n}]"):
            if "Principal" in st or "NotPrincipal" in st:
                raise PolicyError(f"{label}: an identity policy has no Principal element")
            if _applies(st, label, request, ctx):
                (deny if _effect(st, label) == "Deny" else identity_allow).append(label)
    if resource_policy is not None:
        for label, st in _statements(resource_policy, "resource"):
            if "NotPrincipal" in st:
                raise PolicyError(f"{label}: NotPrincipal is not modelled")
            if "Principal" not in st:
                raise PolicyError(f"{label}: a resource policy statement needs a Principal")
            named = _principal_match(st["Principal"], request.principal_arn, account)
            if named is None or not _applies(st, label, request, ctx):
                continue
            if _effect(st, label) == "Deny":
                deny.append(label)
            else:
                (direct_allow if named == "direct" else account_allow).append(label)

    if deny:
        return Decision(False, "explicitly denied", tuple(deny))
    if resource_policy_required:
        if resource_policy is None:
            return Decision(False, "the resource policy must allow, and there is none")
        if direct_allow:
            return Decision(True, "the resource policy allows the principal directly", tuple(direct_allow))
        if account_allow and identity_allow:
            return Decision(
                True,
                "the resource policy delegates to IAM (account root) and an identity policy allows",
                tuple(account_allow + identity_allow),
            )
        if account_allow:
            return Decision(
                False,
                "the resource policy delegates to IAM (account root) but no identity policy allows",
                tuple(account_allow),
            )
        if identity_allow:
            return Decision(
                False,
                "an identity policy allows but the resource policy allows neither the principal nor its account",
                tuple(identity_allow),
            )
        return Decision(False, "implicitly denied: no statement allows")
    if identity_allow or direct_allow:
        return Decision(True, "allowed", tuple(identity_allow + direct_allow))
    if account_allow:
        return Decision(
            False,
            "the resource policy names only the account, which needs an identity policy to allow too",
            tuple(account_allow),
        )
    return Decision(False, "implicitly denied: no statement allows")


# --- statements -------------------------------------------------------------------------------------------

_ELEMENTS = {"Sid", "Effect", "Condition", "Principal", "NotPrincipal"} | {
    f"{no}{name}" for no in ("", "Not") for name in ("Action", "Resource")
}


def _statements(policy: Mapping[str, Any], where: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    body = policy.get("Statement")
    if body is None:
        raise PolicyError(f"{where}: the policy has no Statement")
    for i, st in enumerate([body] if isinstance(body, Mapping) else body):
        if not isinstance(st, Mapping):
            raise PolicyError(f"{where}.Statement[{i}] is not an object")
        label = str(st.get("Sid") or f"{where}.Statement[{i}]")
        unknown = set(st) - _ELEMENTS
        if unknown:
            raise PolicyError(f"{label}: unknown element(s) {sorted(unknown)}")
        condition = st.get("Condition", {})
        if not isinstance(condition, Mapping):
            raise PolicyError(f"{label}: Condition must be an object")
        for name in condition:  # every operator is checked, even in statements that do not apply
            parse_operator(name)
        yield label, st


def _effect(st: Mapping[str, Any], label: str) -> str:
    effect = st.get("Effect")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f"{label}: Effect must be Allow or Deny, not {effect!r}")
    return str(effect)


def _one_of(st: Mapping[str, Any], label: str, name: str) -> tuple[list[str], bool]:
    """The entries of `name` or `Not<name>` (exactly one must be present) and whether it was the Not form."""
    if (name in st) == (f"Not{name}" in st):
        raise PolicyError(f"{label}: needs exactly one of {name} and Not{name}")
    negated = name not in st
    return _strings(st[f"Not{name}" if negated else name]), negated


def _applies(st: Mapping[str, Any], label: str, request: Request, ctx: Mapping[str, list[str]]) -> bool:
    _effect(st, label)
    actions, not_action = _one_of(st, label, "Action")
    if any(_action_matches(a, request.action) for a in actions) == not_action:
        return False
    resources, not_resource = _one_of(st, label, "Resource")
    if any(_resource_matches(r, request.resource, ctx) for r in resources) == not_resource:
        return False
    return _conditions_hold(st.get("Condition", {}), ctx, label)


def _action_matches(pattern: str, action: str) -> bool:
    # Service prefixes and action names are both case-insensitive.
    return re.fullmatch(_glob(pattern), action, re.IGNORECASE | re.DOTALL) is not None


def _resource_matches(pattern: str, resource: str, ctx: Mapping[str, list[str]]) -> bool:
    compiled = _compile(pattern, ctx, wildcards=True)
    return compiled is not None and compiled.fullmatch(resource) is not None


def _principal_match(principal: Any, principal_arn: str, account: str) -> str | None:
    """ "direct" when the statement names this principal (or everyone), "account" when only its account."""
    if principal == "*":
        return "direct"
    if not isinstance(principal, Mapping):
        raise PolicyError(f"Principal must be '*' or an object, not {principal!r}")
    found: str | None = None
    for entry in _strings(principal.get("AWS", [])):
        if entry == "*" or entry == principal_arn or entry == _role_of_session(principal_arn):
            return "direct"
        if entry in (account, f"arn:aws:iam::{account}:root"):
            found = "account"
    if any(s.lower() == principal_arn.lower() for s in _strings(principal.get("Service", []))):
        return "direct"
    return found


def _role_of_session(arn: str) -> str | None:
    """arn:aws:sts::1:assumed-role/Name/session -> arn:aws:iam::1:role/Name (paths are not in session ARNs)."""
    m = re.fullmatch(r"arn:([^:]+):sts::(\d+):assumed-role/([^/]+)/.+", arn)
    return f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}" if m else None


def _account(arn: str) -> str:
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 else ""


def _context(request: Request) -> dict[str, list[str]]:
    """The request context with lower-cased keys and every value as a list; aws:PrincipalArn/Account default
    to the caller's."""
    ctx = {"aws:principalarn": [request.principal_arn], "aws:principalaccount": [_account(request.principal_arn)]}
    for key, value in request.context.items():
        ctx[key.lower()] = _strings(value)
    return ctx


def _strings(value: Any) -> list[str]:
    items = value if isinstance(value, list | tuple) else [value]
    return [("true" if v else "false") if isinstance(v, bool) else str(v) for v in items]


# --- patterns and policy variables -------------------------------------------------------------------------

_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_DEFAULT = re.compile(r"\s*([^,\s]+)\s*(?:,\s*'([^']*)'\s*)?")


def _glob(text: str, *, stars: str = ".*", one: str = ".") -> str:
    return "".join(stars if c == "*" else one if c == "?" else re.escape(c) for c in text)


def _variable(inner: str, ctx: Mapping[str, list[str]]) -> str | None:
    if inner in ("*", "?", "$"):
        return inner
    m = _DEFAULT.fullmatch(inner)
    if m is None:
        raise PolicyError(f"malformed policy variable ${{{inner}}}")
    values = ctx.get(m[1].lower())
    if values is not None and len(values) == 1:
        return values[0]
    return m[2]  # the default, or None: the entry matches nothing


def _segments(text: str, ctx: Mapping[str, list[str]]) -> list[tuple[str, bool]] | None:
    """`text` split into (piece, is_policy_text) with variables substituted; None if one is missing."""
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in _VARIABLE.finditer(text):
        value = _variable(m[1], ctx)
        if value is None:
            return None
        out += [(text[pos : m.start()], True), (value, False)]
        pos = m.end()
    return [*out, (text[pos:], True)]


def _compile(
    text: str, ctx: Mapping[str, list[str]], *, wildcards: bool, ignore_case: bool = False
) -> re.Pattern[str] | None:
    segments = _segments(text, ctx)
    if segments is None:
        return None
    regex = "".join(_glob(s) if wildcards and policy_text else re.escape(s) for s, policy_text in segments)
    return re.compile(regex, (re.IGNORECASE if ignore_case else 0) | re.DOTALL)


def _compile_arn(text: str, ctx: Mapping[str, list[str]]) -> re.Pattern[str] | None:
    """ArnEquals/ArnLike: each of the six colon-separated parts is matched on its own (wildcards stay inside
    their part; the last part, the resource, may hold colons). A value with fewer parts is a plain glob."""
    segments = _segments(text, ctx)
    if segments is None:
        return None
    if sum(s.count(":") for s, _ in segments) < 5:
        return re.compile("".join(_glob(s) if p else re.escape(s) for s, p in segments), re.DOTALL)
    regex, colons = [], 0
    for s, policy_text in segments:
        for c in s:
            if c in "*?" and policy_text:
                in_part = colons < 5
                regex.append(("[^:]*" if in_part else ".*") if c == "*" else ("[^:]" if in_part else "."))
            else:
                regex.append(re.escape(c))
                colons += c == ":"
    return re.compile("".join(regex), re.DOTALL)


# --- conditions ---------------------------------------------------------------------------------------------

Matcher = Callable[[str], bool]


@dataclass(frozen=True)
class _Operator:
    kind: str  # string, arn, numeric, bool
    negated: bool = False
    wildcards: bool = False
    ignore_case: bool = False
    compare: Callable[[float, float], bool] = operator.eq


_OPERATORS: dict[str, _Operator] = {
    "StringEquals": _Operator("string"),
    "StringNotEquals": _Operator("string", negated=True),
    "StringEqualsIgnoreCase": _Operator("string", ignore_case=True),
    "StringNotEqualsIgnoreCase": _Operator("string", negated=True, ignore_case=True),
    "StringLike": _Operator("string", wildcards=True),
    "StringNotLike": _Operator("string", negated=True, wildcards=True),
    # AWS documents ArnEquals and ArnLike as the same comparison, wildcards included.
    "ArnEquals": _Operator("arn"),
    "ArnLike": _Operator("arn"),
    "ArnNotEquals": _Operator("arn", negated=True),
    "ArnNotLike": _Operator("arn", negated=True),
    "Bool": _Operator("bool"),
    "NumericEquals": _Operator("numeric"),
    "NumericNotEquals": _Operator("numeric", negated=True),
    "NumericLessThan": _Operator("numeric", compare=operator.lt),
    "NumericLessThanEquals": _Operator("numeric", compare=operator.le),
    "NumericGreaterThan": _Operator("numeric", compare=operator.gt),
    "NumericGreaterThanEquals": _Operator("numeric", compare=operator.ge),
}
_SET_PREFIXES = ("ForAllValues:", "ForAnyValue:")


def parse_operator(name: str) -> tuple[str | None, str, bool]:
    """'ForAnyValue:StringLikeIfExists' -> ('ForAnyValue', 'StringLike', True); unknown operators raise."""
    set_op = next((p[:-1] for p in _SET_PREFIXES if name.startswith(p)), None)
    base = name.removeprefix(f"{set_op}:") if set_op else name
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    if base == "Null":
        if set_op or if_exists:
            raise UnsupportedConditionError(f"condition operator {name!r}: Null takes no set prefix nor IfExists")
    elif base not in _OPERATORS:
        raise UnsupportedConditionError(f"condition operator {name!r} is not supported by this evaluator")
    return set_op, base, if_exists


def _conditions_hold(block: Any, ctx: Mapping[str, list[str]], label: str) -> bool:
    results = []  # every key is evaluated (no short-circuit), so a bad value raises whatever else the block says
    for name, keys in block.items():
        set_op, base, if_exists = parse_operator(name)
        if not isinstance(keys, Mapping):
            raise PolicyError(f"{label}: {name} must map condition keys to values")
        for key, values in keys.items():
            results.append(_condition(set_op, base, if_exists, ctx.get(key.lower()), _strings(values), ctx, label))
    return all(results)


def _condition(
    set_op: str | None,
    base: str,
    if_exists: bool,
    request_values: list[str] | None,
    policy_values: list[str],
    ctx: Mapping[str, list[str]],
    label: str,
) -> bool:
    present = bool(request_values)  # an empty list (e.g. no aws:TagKeys) counts as absent
    if base == "Null":
        wanted = [_bool(v, label) for v in policy_values]  # "true": the key must be absent
        return any(w != present for w in wanted)
    op = _OPERATORS[base]
    matchers = [m for v in policy_values if (m := _matcher(op, v, ctx, label)) is not None]  # validates them
    if not request_values:
        if set_op == "ForAllValues" or if_exists:
            return True
        return False if set_op == "ForAnyValue" else op.negated

    def matches_any(value: str) -> bool:
        return any(m(value) for m in matchers)

    def value_ok(value: str) -> bool:
        return matches_any(value) != op.negated

    if set_op == "ForAllValues":
        return all(value_ok(v) for v in request_values)
    if set_op == "ForAnyValue":
        return any(value_ok(v) for v in request_values)
    return any(matches_any(v) for v in request_values) != op.negated


def _matcher(op: _Operator, policy_value: str, ctx: Mapping[str, list[str]], label: str) -> Matcher | None:
    """A test of one request value against one policy value; None when the policy value's variable is missing."""
    if op.kind == "bool":
        want = _bool(policy_value, label)
        return lambda v: v.lower() == ("true" if want else "false")
    if op.kind == "numeric":
        try:
            limit = float(policy_value)
        except ValueError:
            raise PolicyError(f"{label}: {policy_value!r} is not a number") from None

        def numeric(value: str) -> bool:
            number = _number(value)
            return number is not None and op.compare(number, limit)

        return numeric
    pattern = (
        _compile_arn(policy_value, ctx)
        if op.kind == "arn"
        else _compile(policy_value, ctx, wildcards=op.wildcards, ignore_case=op.ignore_case)
    )
    return None if pattern is None else lambda v: pattern.fullmatch(v) is not None


def _bool(value: str, label: str) -> bool:
    if value.lower() not in ("true", "false"):
        raise PolicyError(f"{label}: {value!r} is not true or false")
    return value.lower() == "true"


def _number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None
