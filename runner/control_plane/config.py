"""Every control-plane setting, read from the environment the stack gives each Lambda.

Secrets are never here: the environment names the SSM SecureString parameters that hold them.
A missing or malformed variable raises ConfigError naming it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from .admission import AdmissionPolicy
from .errors import ConfigError
from .pools import Pool

# Tag keys on runner instances. The fleet tag scopes every query to this stack's instances.
TAG_FLEET = "vpc-runners:fleet"
TAG_JOB_ID = "vpc-runners:job-id"
TAG_RUN_ID = "vpc-runners:run-id"
TAG_REPOSITORY = "vpc-runners:repository"
TAG_RUNNER_NAME = "vpc-runners:runner-name"
TAG_RUNNER_ID = "vpc-runners:runner-id"
TAG_INSTALLATION_ID = "vpc-runners:installation-id"  # the GitHub App installation, for the reaper's job lookups
# The tag the instance role's SSM condition compares with the caller's instance (see infra).
TAG_PARAMETER_INSTANCE = "InstanceId"
# Every tag key scale-up writes: at launch (CreateFleet), then once the runner exists. The stack's
# policy lets it write these keys and no others.
LAUNCH_TAG_KEYS = (TAG_FLEET, TAG_JOB_ID, TAG_RUN_ID, TAG_REPOSITORY, TAG_INSTALLATION_ID, "Name")
SETUP_TAG_KEYS = (TAG_RUNNER_NAME, TAG_RUNNER_ID)


@dataclass(frozen=True)
class Config:
    fleet: str  # stack name; value of TAG_FLEET
    github_owner: str
    github_api_url: str
    pools: tuple[Pool, ...]
    runner_group_id: int
    runner_name_prefix: str
    runner_scope: str  # "org" or "repo"
    jit_parameter_prefix: str
    admission: AdmissionPolicy | None = None  # None only for functions that launch nothing
    app_id: str | None = None
    app_key_parameter: str | None = None
    token_parameter: str | None = None
    webhook_secret_parameter: str | None = None
    queue_url: str | None = None
    dead_letter_url: str | None = None  # scale-up moves jobs it must refuse here, with the reason
    jit_kms_key_id: str | None = None  # the customer-managed key runner configs are encrypted with
    launch_template_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    instance_types: tuple[str, ...] = ()
    max_runners: int = 10
    spot: bool = False
    boot_timeout_s: int = 900
    idle_timeout_s: int = 1800
    max_lifetime_s: int = 6 * 3600
    max_delivery_age_s: int = 3600  # older webhook deliveries are replays, not new jobs
    hold_ceiling_s: int = 3600
    extra: dict[str, str] = field(default_factory=dict)

    def runner_name(self, instance_id: str) -> str:
        return f"{self.runner_name_prefix}-{instance_id}"

    def instance_of_runner(self, runner_name: str) -> str | None:
        prefix = f"{self.runner_name_prefix}-"
        rest = runner_name[len(prefix) :] if runner_name.startswith(prefix) else ""
        return rest if rest.startswith("i-") else None

    def jit_parameter(self, instance_id: str) -> str:
        return f"{self.jit_parameter_prefix}/{instance_id}"


def load(environ: Mapping[str, str], *, needs: tuple[str, ...] = ()) -> Config:
    """Read the configuration; ``needs`` names variables this Lambda cannot do without."""
    for name in needs:
        if not environ.get(name):
            raise ConfigError(f"missing environment variable {name}")

    def text(name: str, default: str | None = None) -> str | None:
        value = environ.get(name)
        return value if value else default

    def number(name: str, default: int) -> int:
        raw = environ.get(name)
        if not raw:
            return default
        if not raw.isdigit():
            raise ConfigError(f"{name} must be a whole number, got {raw!r}")
        return int(raw)

    def strings(name: str) -> tuple[str, ...]:
        raw = environ.get(name)
        if not raw:
            return ()
        try:
            value = json.loads(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a JSON list of strings") from None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{name} must be a JSON list of strings")
        return tuple(value)

    fleet = text("VPC_RUNNERS_FLEET")
    owner = text("GITHUB_OWNER")
    if not fleet:
        raise ConfigError("missing environment variable VPC_RUNNERS_FLEET")
    if not owner:
        raise ConfigError("missing environment variable GITHUB_OWNER")
    labels = strings("RUNNER_LABELS") or ("self-hosted", "linux", "x64", "vpc")
    key_label = text("POOL_LABEL", "vpc") or "vpc"
    try:
        pool = Pool(name=fleet, labels=labels, key_label=key_label)
    except ValueError as err:
        raise ConfigError(f"POOL_LABEL/RUNNER_LABELS: {err}") from None
    scope = text("RUNNER_SCOPE", "org") or "org"
    if scope not in ("org", "repo"):
        raise ConfigError(f"RUNNER_SCOPE must be org or repo, got {scope!r}")
    spot = (text("SPOT", "false") or "false").lower()
    if spot not in ("true", "false"):
        raise ConfigError(f"SPOT must be true or false, got {spot!r}")
    app_id, key_param, token_param = (
        text("GITHUB_APP_ID"),
        text("GITHUB_APP_KEY_PARAMETER"),
        text("GITHUB_TOKEN_PARAMETER"),
    )
    if not token_param and not (app_id and key_param):
        raise ConfigError(
            "GitHub credentials: set GITHUB_APP_ID and GITHUB_APP_KEY_PARAMETER, or GITHUB_TOKEN_PARAMETER"
        )
    repositories = strings("ALLOWED_REPOSITORIES")
    if scope == "repo" and "*" in repositories:
        # Repository runners are listed per repository: the reaper must know every repository to look in.
        raise ConfigError("RUNNER_SCOPE=repo needs ALLOWED_REPOSITORIES to name each repository, not '*'")
    return Config(
        admission=AdmissionPolicy(
            owner=owner,
            repositories=repositories,
            events=strings("ALLOWED_EVENTS"),
            branches=strings("ALLOWED_BRANCHES"),
        )
        if repositories
        else None,
        fleet=fleet,
        github_owner=owner,
        github_api_url=(text("GITHUB_API_URL", "https://api.github.com") or "").rstrip("/"),
        pools=(pool,),
        runner_group_id=number("RUNNER_GROUP_ID", 1),
        runner_name_prefix=text("RUNNER_NAME_PREFIX", "vpc") or "vpc",
        runner_scope=scope,
        jit_parameter_prefix=(text("JIT_PARAMETER_PREFIX", f"/vpc-runners/{fleet}/jit") or "").rstrip("/"),
        app_id=app_id,
        app_key_parameter=key_param,
        token_parameter=token_param,
        webhook_secret_parameter=text("WEBHOOK_SECRET_PARAMETER"),
        queue_url=text("QUEUE_URL"),
        dead_letter_url=text("DEAD_LETTER_QUEUE_URL"),
        jit_kms_key_id=text("JIT_KMS_KEY_ID"),
        launch_template_id=text("LAUNCH_TEMPLATE_ID"),
        subnet_ids=strings("SUBNET_IDS"),
        instance_types=strings("INSTANCE_TYPES"),
        max_runners=number("MAX_RUNNERS", 10),
        spot=spot == "true",
        boot_timeout_s=number("BOOT_TIMEOUT_S", 900),
        idle_timeout_s=number("IDLE_TIMEOUT_S", 1800),
        max_lifetime_s=number("MAX_LIFETIME_S", 6 * 3600),
        max_delivery_age_s=number("MAX_DELIVERY_AGE_S", 3600),
        hold_ceiling_s=number("HOLD_CEILING_S", 3600),
    )
