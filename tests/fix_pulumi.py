"""Pytest plugin: run the real Pulumi program (infra/__main__.py) under pulumi.runtime mocks.

Every declared resource is recorded with its resolved inputs; the AWS lookups the program makes
(caller identity, region, partition, availability zones) are answered here. Nothing reaches AWS.
"""

from __future__ import annotations

import hashlib
import json
import runpy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pulumi
import pytest

REPO = Path(__file__).resolve().parent.parent
MAIN = REPO / "infra" / "__main__.py"
ACCOUNT, REGION = "123456789012", "eu-central-1"
APP_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-only\n-----END PRIVATE KEY-----\n"
WEBHOOK_SECRET = "whsec-test-0123456789abcdef0123456789abcdef"
TOKEN = "github_pat_11TESTTOKEN0000000000_abcdefghijklmnopqrstuvwxyz"


# How the Pulumi SDK marks a secret value on the wire.
_SIG_KEY, _SECRET_SIG = "4dabf18193072939515e22adb298388d", "1b47061264138c4ac30d75fd1eb44270"


def _is_secret(value: Any) -> bool:
    return isinstance(value, dict) and value.get(_SIG_KEY) == _SECRET_SIG


def unwrap(value: Any) -> Any:
    if _is_secret(value):
        return unwrap(value["value"])
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


@dataclass
class Resource:
    type: str
    name: str
    inputs: dict[str, Any]  # plain values
    id: str
    secret_inputs: frozenset[str] = frozenset()  # top-level inputs that are Pulumi secrets


@dataclass
class Program:
    resources: list[Resource]
    exports: dict[str, Any]

    def of(self, type_: str) -> list[Resource]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name_part: str = "") -> Resource:
        found = [r for r in self.of(type_) if name_part in r.name]
        assert len(found) == 1, f"expected one {type_} named *{name_part}*, found {[r.name for r in found]}"
        return found[0]

    def by_id(self, resource_id: str) -> Resource:
        return next(r for r in self.resources if r.id == resource_id)


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, given: dict[str, dict[str, Any]] | None = None) -> None:
        self.resources: list[Resource] = []
        # Per resource name: the id and outputs to answer with (e.g. those of a moto resource).
        self.given = given or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        digest = hashlib.sha256(f"{args.typ}/{args.name}".encode()).hexdigest()
        short = args.typ.split(":")[-1]
        prefixes = {
            "SecurityGroup": "sg-",
            "Vpc": "vpc-",
            "Subnet": "subnet-",
            "LaunchTemplate": "lt-",
            "NatGateway": "nat-",
            "InternetGateway": "igw-",
            "Eip": "eipalloc-",
        }
        resource_id = prefixes.get(short, f"{short.lower()}-") + digest[:17]
        outputs = unwrap(dict(args.inputs))
        service = args.typ.split(":")[1].split("/")[0]
        outputs.setdefault("arn", f"arn:aws:{service}:{REGION}:{ACCOUNT}:{short.lower()}/{args.name}")
        if short == "Queue":
            outputs["url"] = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{args.inputs.get('name', args.name)}"
            outputs["arn"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{args.inputs.get('name', args.name)}"
        if short == "LogGroup":
            outputs["arn"] = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{args.inputs.get('name', args.name)}"
        if short == "Bucket":
            outputs["bucket"] = args.inputs.get("bucketPrefix", "b-") + digest[:8]
            outputs["arn"] = f"arn:aws:s3:::{outputs['bucket']}"
        if short == "FunctionUrl":
            outputs["functionUrl"] = f"https://{digest[:32]}.lambda-url.{REGION}.on.aws/"
        if short == "Parameter":
            outputs["arn"] = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{args.inputs['name']}"
        if short == "Role":
            outputs["arn"] = f"arn:aws:iam::{ACCOUNT}:role/{args.name}"
            outputs["name"] = args.name
        if args.name in self.given:
            outputs.update(self.given[args.name])
            resource_id = str(self.given[args.name].get("id", resource_id))
        self.resources.append(
            Resource(
                args.typ,
                args.name,
                unwrap(dict(args.inputs)),
                resource_id,
                frozenset(k for k, v in args.inputs.items() if _is_secret(v)),
            )
        )
        return resource_id, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        answers: dict[str, dict[str, Any]] = {
            "aws:index/getCallerIdentity:getCallerIdentity": {
                "accountId": ACCOUNT,
                "arn": f"arn:aws:iam::{ACCOUNT}:user/ci",
                "userId": "AIDATEST",
                "id": ACCOUNT,
            },
            "aws:index/getRegion:getRegion": {"name": REGION, "region": REGION, "id": REGION},
            "aws:index/getPartition:getPartition": {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"},
            "aws:index/getAvailabilityZones:getAvailabilityZones": {
                "names": [f"{REGION}a", f"{REGION}b", f"{REGION}c"],
                "zoneIds": ["euc1-az2", "euc1-az3", "euc1-az1"],
                "id": REGION,
            },
        }
        return answers.get(args.token, {})


def base_config(**changes: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "vpcId": "vpc-0a1b2c3d4e5f60718",
        "privateSubnetIds": ["subnet-0aa11bb22cc33dd44", "subnet-0ee55ff66aa77bb88"],
        "databases": [
            {
                "name": "orders",
                "securityGroupId": "sg-0123456789abcdef0",
                "resourceId": "db-ABCDEFGHIJKLMNOPQRSTUVWXYZ",
                "host": "orders.c9akciq32.eu-central-1.rds.amazonaws.com",
                "port": 5432,
                "dbname": "orders",
                "user": "migrator",
            }
        ],
        "github": {
            "owner": "acme",
            "appId": "123456",
            "appPrivateKey": APP_KEY,
            "webhookSecret": WEBHOOK_SECRET,
            "repositories": ["acme/shop", "acme/billing"],
        },
    }
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    return config


def set_config(config: dict[str, Any], layer_dir: Path) -> None:
    values = {f"vpc-runners:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
    # Prebuilt-artifact directories, as a deployer without PyPI would give them: the program under
    # mocks then builds nothing (tests/infra/test_artifacts.py builds the real ones).
    values["vpc-runners:lambdaLayerDir"] = str(layer_dir)
    values["vpc-runners:runnerPackageDir"] = str(layer_dir)
    values["aws:region"] = REGION
    pulumi.runtime.set_all_config(values, ["vpc-runners:github"])


@pytest.fixture
def layer_dir(tmp_path: Path) -> Path:
    (tmp_path / "layer" / "python" / "jwt").mkdir(parents=True)
    (tmp_path / "layer" / "requirements.txt").write_text("")
    return tmp_path / "layer"


@pytest.fixture
def run_program(layer_dir: Path) -> Callable[..., Program]:
    def run(config: dict[str, Any], stack: str = "test", given: dict[str, dict[str, Any]] | None = None) -> Program:
        mocks = RecordingMocks(given)
        pulumi.runtime.set_mocks(mocks, project="vpc-runners", stack=stack, preview=False)
        set_config(config, layer_dir)
        exported: dict[str, Any] = {}
        resolved: dict[str, Any] = {}

        @pulumi.runtime.test
        def program() -> pulumi.Output[Any]:
            with mock.patch("pulumi.export", side_effect=lambda k, v: exported.__setitem__(k, v)):
                runpy.run_path(str(MAIN), run_name="__main__")
            return pulumi.Output.all(**exported).apply(resolved.update)

        program()
        return Program(mocks.resources, resolved)

    return run


@dataclass
class Policy:
    statements: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, resource: Resource) -> Policy:
        doc = resource.inputs["policy"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        return cls(doc["Statement"])

    def resources_for(self, action: str) -> list[str]:
        found: list[str] = []
        for s in self.statements:
            actions = s["Action"] if isinstance(s["Action"], list) else [s["Action"]]
            if action in actions:
                found += s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
        return found
