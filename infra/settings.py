"""The stack's configuration (namespace ``vpc-runners``), read and validated in one place.

Every key is checked before any resource is declared; each problem names its key, and all of
them are reported together. Secrets (the App key, webhook secret, token) stay Pulumi secrets.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import pulumi

from runner.control_plane.bootstrap import DEFAULT_RUNNER_SHA256, DEFAULT_RUNNER_VERSION

NAMESPACE = "vpc-runners"
RESOURCE_ID = re.compile(r"^(db|cluster|prx)-[A-Za-z0-9]+$")
SECURITY_GROUP_ID = re.compile(r"^sg-[0-9a-f]{8,17}$")
SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{8,17}$")
VPC_ID = re.compile(r"^vpc-[0-9a-f]{8,17}$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
DEFAULT_AMI = "resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
BASE_LABELS = ("self-hosted", "linux", "x64")  # every runner's; the pool label is added per stack
MIN_WEBHOOK_SECRET = 32  # characters; GitHub signs with it, so it is the receiver's only lock
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$")
# The complete ARN, with the 6 characters Secrets Manager appends to the name: the grant names it exactly.
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@!-]+-[A-Za-z0-9]{6}$")


class ConfigError(Exception):
    """One or more configuration keys are missing or malformed."""


@dataclass(frozen=True)
class Database:
    """One database the runners reach. It logs in with IAM (resource_id) or a secret's password (secret_arn);
    with a secret, host, dbname and user may come from the secret instead."""

    name: str
    security_group_id: str
    resource_id: str | None
    host: str | None
    port: int
    dbname: str | None
    user: str | None
    secret_arn: str | None = None
    secret_kms_key_arn: str | None = None  # when the secret's key is customer managed

    @property
    def iam(self) -> bool:
        return self.secret_arn is None


@dataclass(frozen=True)
class GitHub:
    owner: str
    app_id: str | None
    app_private_key: pulumi.Output[str] | None
    token: pulumi.Output[str] | None
    webhook_secret: pulumi.Output[str]
    api_url: str
    runner_group_id: int
    labels: tuple[str, ...]
    pool_label: str
    repositories: tuple[str, ...] = ()  # the admission allow-list: owner/name, or ("*",)
    events: tuple[str, ...] = ()
    branches: tuple[str, ...] = ()
    runner_scope: str = "org"  # or "repo": repository-level JIT runners, for a short allow-list


@dataclass(frozen=True)
class Settings:
    create_vpc: bool
    vpc_id: str | None
    private_subnet_ids: tuple[str, ...]
    vpc_cidr: str
    databases: tuple[Database, ...]
    github: GitHub
    instance_types: tuple[str, ...]
    max_runners: int
    spot: bool
    ami_id: str
    runner_version: str
    runner_sha256: str
    volume_size_gb: int
    log_retention_days: int
    boot_timeout_s: int
    max_lifetime_s: int
    hold_ceiling_s: int
    max_delivery_age_s: int
    runner_name_prefix: str
    ebs_kms_key_arn: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    queue_age_alarm_s: int = 600
    alarm_email: str | None = None
    # Prebuilt artifacts (python -m infra.artifacts) for deployers without PyPI; None: built from uv.lock.
    lambda_layer_dir: str | None = None
    runner_package_dir: str | None = None


def load(config: pulumi.Config | None = None, stack: str | None = None) -> Settings:
    """The stack's settings; ``stack`` (default: the current stack) names the per-stack defaults: the
    pool label ``vpc-<stack>`` and the runner name prefix ``vpc-<stack>``, so two stacks in one
    organization never take, launch for or reap each other's runners."""
    config = config or pulumi.Config(NAMESPACE)
    stack = stack or pulumi.get_stack()
    problems: list[str] = []
    reader = _Reader(config, problems)

    create_vpc = reader.boolean("createVpc", False)
    vpc_id = reader.text("vpcId")
    subnets = reader.strings("privateSubnetIds")
    if create_vpc:
        if vpc_id or subnets:
            problems.append("createVpc: true makes its own VPC; remove vpcId and privateSubnetIds")
    else:
        if not vpc_id:
            problems.append("vpcId: required (or set createVpc: true)")
        elif not VPC_ID.match(vpc_id):
            problems.append(f"vpcId: {vpc_id!r} is not a VPC id (vpc-...)")
        if subnets is None or len(subnets) < 2:
            problems.append("privateSubnetIds: need two or more private subnets, in different availability zones")
        else:
            problems += [
                f"privateSubnetIds: {s!r} is not a subnet id (subnet-...)" for s in subnets if not SUBNET_ID.match(s)
            ]

    databases = _databases(config, problems)
    github = _github(config, reader, problems, stack)
    instance_types = reader.strings("instanceTypes") or ["t3.small", "t3a.small", "m6i.large"]
    max_runners = reader.integer("maxRunners", 10, minimum=1)
    idle = reader.integer("idleRunners", 0, minimum=0)
    if idle:
        problems.append("idleRunners: warm capacity is not supported yet; each job starts its own runner (use 0)")
    runner_version = reader.text("runnerVersion") or DEFAULT_RUNNER_VERSION
    runner_sha256 = reader.text("runnerSha256") or (
        DEFAULT_RUNNER_SHA256 if runner_version == DEFAULT_RUNNER_VERSION else ""
    )
    if not re.fullmatch(r"[0-9a-f]{64}", runner_sha256):
        problems.append(
            "runnerSha256: the SHA-256 of actions-runner-linux-x64-<runnerVersion>.tar.gz (64 hex digits) "
            "is required whenever runnerVersion is set"
        )
    settings = Settings(
        create_vpc=create_vpc,
        vpc_id=vpc_id,
        private_subnet_ids=tuple(subnets or ()),
        vpc_cidr=reader.text("vpcCidr") or "10.80.0.0/16",
        databases=tuple(databases),
        github=github,  # type: ignore[arg-type]  # None only when problems were found
        instance_types=tuple(instance_types),
        max_runners=max_runners,
        spot=reader.boolean("spot", False),
        ami_id=reader.text("amiId") or DEFAULT_AMI,
        runner_version=runner_version,
        runner_sha256=runner_sha256,
        volume_size_gb=reader.integer("volumeSizeGb", 30, minimum=8),
        log_retention_days=reader.integer("logRetentionDays", 30, minimum=1),
        boot_timeout_s=reader.integer("bootTimeoutSeconds", 900, minimum=60),
        max_lifetime_s=reader.integer("maxLifetimeSeconds", 6 * 3600, minimum=600),
        hold_ceiling_s=reader.integer("holdCeilingSeconds", 3600, minimum=0),
        max_delivery_age_s=reader.integer("maxDeliveryAgeSeconds", 3600, minimum=60),
        runner_name_prefix=f"vpc-{stack}",
        ebs_kms_key_arn=_kms_key(reader.text("ebsKmsKeyId"), problems),
        tags=reader.object("tags") or {},
        queue_age_alarm_s=reader.integer("queueAgeAlarmSeconds", 600, minimum=60),
        alarm_email=_email(reader.text("alarmEmail"), problems),
        lambda_layer_dir=reader.text("lambdaLayerDir"),
        runner_package_dir=reader.text("runnerPackageDir"),
    )
    if problems:
        raise ConfigError("invalid vpc-runners configuration:\n  " + "\n  ".join(problems))
    return settings


class _Reader:
    def __init__(self, config: pulumi.Config, problems: list[str]) -> None:
        self.config, self.problems = config, problems

    def raw(self, key: str) -> Any:
        try:
            return self.config.get_object(key)
        except Exception:  # not JSON: a plain string value
            return self.config.get(key)

    def text(self, key: str) -> str | None:
        value = self.config.get(key)
        return value or None

    def boolean(self, key: str, default: bool) -> bool:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "false"):
            return str(value).lower() == "true"
        self.problems.append(f"{key}: must be true or false, got {value!r}")
        return default

    def integer(self, key: str, default: int, *, minimum: int) -> int:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not str(value).isdigit() or int(value) < minimum:
            self.problems.append(f"{key}: must be a whole number >= {minimum}, got {value!r}")
            return default
        return int(value)

    def strings(self, key: str) -> list[str] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            self.problems.append(f"{key}: must be a list of strings")
            return None
        return value

    def object(self, key: str) -> dict[str, str] | None:
        value = self.raw(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append(f"{key}: must be an object")
            return None
        return {str(k): str(v) for k, v in value.items()}


def _databases(config: pulumi.Config, problems: list[str]) -> list[Database]:
    raw = _Reader(config, problems).raw("databases")
    if raw is None:
        problems.append(
            "databases: required, a list of {name, securityGroupId, resourceId, host, dbname, user} "
            "(or secretArn instead of resourceId)"
        )
        return []
    if not isinstance(raw, list) or not raw:
        problems.append("databases: must be a non-empty list of objects")
        return []
    found: list[Database] = []
    for i, item in enumerate(raw):
        where = f"databases[{i}]"
        if isinstance(item, str):
            # `pulumi config set --path 'vpc-runners:databases[0]' '{...}'` stores its value as a string.
            try:
                item = json.loads(item)
            except ValueError:
                item = None
            if not isinstance(item, dict):
                problems.append(f"{where}: a string that is not a JSON object (give the object, see the README)")
                continue
        if not isinstance(item, dict):
            problems.append(f"{where}: must be an object")
            continue
        secret_arn, secret_key = item.get("secretArn"), item.get("secretKmsKeyId")
        required = ("name", "securityGroupId") if secret_arn else ("name", "securityGroupId", "resourceId", "host")
        missing = [k for k in (*required, *(() if secret_arn else ("dbname", "user"))) if not item.get(k)]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}" + ("" if secret_arn else " (or secretArn)"))
            continue
        if not NAME.match(str(item["name"])):
            problems.append(f"{where}.name: {item['name']!r} must be lower-case letters, digits and -")
        if not SECURITY_GROUP_ID.match(str(item["securityGroupId"])):
            problems.append(f"{where}.securityGroupId: {item['securityGroupId']!r} is not a security group id (sg-...)")
        if secret_arn and item.get("resourceId"):
            problems.append(
                f"{where}: give resourceId (IAM authentication) or secretArn (a password in Secrets Manager), not both"
            )
        elif secret_arn and not SECRET_ARN.match(str(secret_arn)):
            problems.append(
                f"{where}.secretArn: {secret_arn!r} is not a complete secret ARN "
                "(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf, as describe-secret prints it)"
            )
        if secret_key and not secret_arn:
            problems.append(f"{where}.secretKmsKeyId: only with secretArn")
        elif secret_key and not KMS_KEY_ARN.match(str(secret_key)):
            problems.append(f"{where}.secretKmsKeyId: {secret_key!r} is not a KMS key ARN")
        if not secret_arn and not RESOURCE_ID.match(str(item["resourceId"])):
            problems.append(
                f"{where}.resourceId: {item['resourceId']!r} is not a DbiResourceId (db-...), "
                "an Aurora cluster resource id (cluster-...) or an RDS Proxy id (prx-...)"
            )
        port = item.get("port", 5432)
        if isinstance(port, bool) or not str(port).isdigit() or not 0 < int(port) < 65536:
            problems.append(f"{where}.port: {port!r} is not a port number")
            port = 5432
        found.append(
            Database(
                name=str(item["name"]),
                security_group_id=str(item["securityGroupId"]),
                resource_id=None if secret_arn else str(item["resourceId"]),
                host=_optional(item.get("host")),
                port=int(port),
                dbname=_optional(item.get("dbname")),
                user=_optional(item.get("user")),
                secret_arn=_optional(secret_arn),
                secret_kms_key_arn=_optional(secret_key),
            )
        )
    names = [d.name for d in found]
    problems += [f"databases: name {n!r} is used twice" for n in sorted({n for n in names if names.count(n) > 1})]
    return found


def _optional(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _email(value: str | None, problems: list[str]) -> str | None:
    if value and not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", value):
        problems.append(f"alarmEmail: {value!r} is not an email address")
    return value


def _kms_key(value: str | None, problems: list[str]) -> str | None:
    if value and not KMS_KEY_ARN.match(value):
        problems.append(f"ebsKmsKeyId: {value!r} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)")
    return value


def _github(config: pulumi.Config, reader: _Reader, problems: list[str], stack: str) -> GitHub | None:
    raw = reader.raw("github")
    if not isinstance(raw, dict):
        problems.append("github: required, an object with owner, appId, appPrivateKey (secret), webhookSecret (secret)")
        return None
    missing = [k for k in ("owner", "webhookSecret") if not raw.get(k)]
    has_app, has_token = bool(raw.get("appId") and raw.get("appPrivateKey")), bool(raw.get("token"))
    if not has_app and not has_token:
        missing.append("appId and appPrivateKey (or token, a fine-grained token)")
    if has_app and has_token:
        problems.append("github: give either appId/appPrivateKey or token, not both")
    if missing:
        problems.append(f"github: missing {', '.join(missing)}")
        return None
    pool_label = str(raw.get("poolLabel") or f"vpc-{stack}")
    labels = raw.get("labels") or [*BASE_LABELS, pool_label]
    if not isinstance(labels, list) or not all(isinstance(v, str) and v for v in labels):
        problems.append("github.labels: must be a list of strings")
        labels = [*BASE_LABELS, pool_label]
    given = {label.lower() for label in labels}
    if pool_label.lower() not in given:
        problems.append(
            f"github.labels: must include the pool label {pool_label!r} (jobs use runs-on: [self-hosted, {pool_label}])"
        )
    if "self-hosted" not in given:
        # GitHub gives every self-hosted runner this label; a pool without it matches no job's runs-on.
        problems.append("github.labels: must include 'self-hosted' (jobs use runs-on: [self-hosted, ...])")
    if len(str(raw["webhookSecret"])) < MIN_WEBHOOK_SECRET:
        problems.append(f"github.webhookSecret: at least {MIN_WEBHOOK_SECRET} characters (e.g. openssl rand -hex 32)")
    repositories = _names(raw, "repositories", problems)
    if repositories is None:
        problems.append(
            "github.repositories: required, the repositories whose jobs may get a runner "
            f'([{raw["owner"]}/NAME, ...], or ["*"] for every repository of {raw["owner"]})'
        )
    else:
        foreign = [
            r
            for r in repositories
            if r != "*" and (r.count("/") != 1 or r.split("/")[0].lower() != str(raw["owner"]).lower())
        ]
        problems += [f"github.repositories: {r!r} is not a repository of {raw['owner']} (OWNER/NAME)" for r in foreign]
    scope = str(raw.get("runnerScope") or "org")
    if scope not in ("org", "repo"):
        problems.append(f"github.runnerScope: must be org or repo, got {scope!r}")
    elif scope == "repo" and (not repositories or "*" in repositories):
        problems.append("github.runnerScope: repo needs github.repositories to name each repository (not '*')")
    group = raw.get("runnerGroup", 1)
    if isinstance(group, bool) or not str(group).isdigit():
        problems.append("github.runnerGroup: the numeric runner group id (GET /orgs/ORG/actions/runner-groups)")
        group = 1
    secret = pulumi.Output.secret
    return GitHub(
        owner=str(raw["owner"]),
        app_id=str(raw["appId"]) if has_app else None,
        app_private_key=secret(str(raw["appPrivateKey"])) if has_app else None,
        token=secret(str(raw["token"])) if has_token else None,
        webhook_secret=secret(str(raw["webhookSecret"])),
        api_url=str(raw.get("apiUrl") or "https://api.github.com").rstrip("/"),
        runner_group_id=int(group),
        labels=tuple(labels),
        pool_label=pool_label,
        repositories=tuple(repositories or ()),
        events=tuple(_names(raw, "events", problems) or ()),
        branches=tuple(_names(raw, "branches", problems) or ()),
        runner_scope=scope,
    )


def _names(raw: dict[str, Any], key: str, problems: list[str]) -> list[str] | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        problems.append(f"github.{key}: must be a non-empty list of strings")
        return None
    return value
