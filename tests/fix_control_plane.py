"""Pytest plugin for the control plane: AWS through moto, GitHub through the fake API on loopback."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from moto import mock_aws

from runner.control_plane import config as config_module
from runner.control_plane import handlers
from runner.control_plane.fleet import Fleet
from runner.control_plane.github import AppAuth, GitHubClient
from runner.control_plane.scale_up import JitStore, ScaleUp
from simulator.fake_github import FakeGitHub, new_app_key
from simulator.harness import FakeAws, fake_fleet_aws

EVENTS = Path(__file__).parent / "control_plane" / "events"
WEBHOOK_SECRET = b"test-webhook-secret"
REGION = "us-east-1"


def sign(body: bytes, secret: bytes = WEBHOOK_SECRET) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def event(name: str, **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    return data


def delivery(
    payload: dict[str, Any], delivery_id: str, event_name: str = "workflow_job"
) -> tuple[dict[str, str], bytes]:
    body = json.dumps(payload).encode()
    return {
        "X-GitHub-Event": event_name,
        "X-GitHub-Delivery": delivery_id,
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json",
    }, body


@pytest.fixture(scope="session")
def app_key() -> tuple[str, str]:
    """(private PEM, public PEM) of a test GitHub App."""
    return new_app_key()


@pytest.fixture
def fake_github(app_key: tuple[str, str]) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(owner="acme", app_public_key_pem=app_key[1])
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()


class Aws(FakeAws):
    def live_instances(self, fleet: str = "test-fleet") -> list[dict[str, Any]]:
        pages = self.ec2.describe_instances(
            Filters=[
                {"Name": "tag:vpc-runners:fleet", "Values": [fleet]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )
        return [i for r in pages["Reservations"] for i in r["Instances"]]


@contextmanager
def moto_account(monkeypatch: pytest.MonkeyPatch, region: str = REGION) -> Iterator[None]:
    """An in-process moto account in ``region``, with test credentials in the environment."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    with moto_account(monkeypatch):
        fleet = fake_fleet_aws(REGION, "vpc-runner")
        fleet.ssm.put_parameter(
            Name="/vpc-runners/test-fleet/webhook-secret", Type="SecureString", Value=WEBHOOK_SECRET.decode()
        )
        yield Aws(**vars(fleet))


def control_plane_env(aws: Aws, github_url: str, **overrides: str) -> dict[str, str]:
    env = {
        "VPC_RUNNERS_FLEET": "test-fleet",
        "GITHUB_OWNER": "acme",
        "GITHUB_API_URL": github_url,
        "GITHUB_APP_ID": "424242",
        "GITHUB_APP_KEY_PARAMETER": "/vpc-runners/test-fleet/github-app-key",
        "WEBHOOK_SECRET_PARAMETER": "/vpc-runners/test-fleet/webhook-secret",
        "RUNNER_LABELS": json.dumps(["self-hosted", "linux", "x64", "vpc"]),
        "POOL_LABEL": "vpc",
        "QUEUE_URL": aws.queue_url,
        "LAUNCH_TEMPLATE_ID": aws.launch_template_id,
        "SUBNET_IDS": json.dumps(aws.subnets),
        "INSTANCE_TYPES": json.dumps(["t3.small", "t3a.small"]),
        "MAX_RUNNERS": "10",
        "ALLOWED_REPOSITORIES": json.dumps(["acme/shop", "acme/billing"]),
    }
    env.update(overrides)
    return env


@dataclass
class Plane:
    """The scale-up side wired to moto and the fake GitHub; ``sleeps`` records rate-limit waits."""

    config: config_module.Config
    fleet: Fleet
    github: GitHubClient
    jit: JitStore
    sleeps: list[float]

    def scale_up(self) -> ScaleUp:
        return ScaleUp(self.config, self.fleet, self.github, self.jit)


def make_plane(aws: Aws, fake: FakeGitHub, private_key: str, **env: str) -> Plane:
    cfg = config_module.load(control_plane_env(aws, fake.url, **env))
    sleeps: list[float] = []
    github = GitHubClient(
        cfg.github_api_url, cfg.github_owner, AppAuth(cfg.app_id or "", private_key), sleep=sleeps.append
    )
    return Plane(cfg, Fleet(aws.ec2, cfg), github, JitStore(aws.ssm, cfg), sleeps)


@pytest.fixture
def plane(aws: Aws, fake_github: FakeGitHub, app_key: tuple[str, str]) -> Plane:
    return make_plane(aws, fake_github, app_key[0])


@pytest.fixture
def moto_server() -> Iterator[str]:
    """A moto server on loopback, for a vpc-migrate subprocess (AWS_ENDPOINT_URL)."""
    from moto.server import ThreadedMotoServer
    from throwaway_postgres import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()  # moto's state is per process
    try:
        yield url
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10).raise_for_status()
        server.stop()


@pytest.fixture
def lambdas(aws: Aws, fake_github: FakeGitHub, app_key, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The scale-up function as moto holds it (scripts/drain throttles it), and the environment the
    reaper handler runs with in process (moto cannot run a Lambda)."""
    for key, value in control_plane_env(aws, fake_github.url).items():
        monkeypatch.setenv(key, value)
    aws.ssm.put_parameter(Name="/vpc-runners/test-fleet/github-app-key", Type="SecureString", Value=app_key[0])
    iam = boto3.client("iam")
    role = iam.create_role(RoleName="scale-up", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as z:
        z.writestr("handler.py", "def handler(event, context):\n    return None\n")
    client = boto3.client("lambda")
    client.create_function(
        FunctionName="vpc-runners-test-fleet-scale-up",
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
    )
    for cache in (handlers._config, handlers._secret, handlers._github):
        cache.cache_clear()
    yield client
    for cache in (handlers._config, handlers._secret, handlers._github):
        cache.cache_clear()
