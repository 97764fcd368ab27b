"""What IAM authorizes for each AWS API call the runtime makes: record the calls, then map each to requests.

``Recorder`` wraps botocore's one entry point (``BaseClient._make_api_call``) while the real runtime code
runs against moto, and notes who was calling (``acting_as``) and the state IAM would see (the target's
tags, a parameter's KMS key) at the moment of the call. ``requests_for`` turns one recorded call into
the authorization requests AWS makes for it, dependent actions included. The facts used, each with
its source:

- ARN formats, resource types, condition keys, dependent actions: the Service Authorization Reference
  (``tests/aws_iam/reference.py``; the tests check the mapping against it).
- SSM SecureStrings under a customer-managed key: SSM calls KMS as the caller, through SSM
  (``kms:ViaService``), with the encryption context ``PARAMETER_ARN``; Standard tier uses
  ``kms:Encrypt``/``kms:Decrypt``, Advanced tier envelope encryption ``kms:GenerateDataKey``/``kms:Decrypt``
  (AWS Systems Manager User Guide, "How AWS Systems Manager Parameter Store uses AWS KMS").
- ``PutParameter`` with ``Tags`` also needs ``ssm:AddTagsToResource`` (SSM User Guide, tagging on create).
- ``CreateFleet`` (instant) launches through ``RunInstances``: both are authorized on the launched
  instance and on the resources it uses (template, subnet, security group, image, interface, volume);
  tags on create need ``ec2:CreateTags`` with ``ec2:CreateAction``; the instance profile's role needs
  ``iam:PassRole``; an image given as ``resolve:ssm:`` needs ``ssm:GetParameters`` on that parameter
  (EC2 User Guide, "Launch instances" IAM examples; Service Authorization Reference dependent actions).
- ``GetSecretValue`` is authorized on the secret's ARN (a name is resolved to it); Secrets Manager then
  decrypts as the caller through itself (``kms:ViaService``), with the encryption context ``SecretARN``
  and ``SecretVersionId``, under the secret's key: a customer managed key, or the account's AWS managed
  key ``aws/secretsmanager``, whose key policy lets every account principal use it through Secrets
  Manager (Secrets Manager User Guide, "Secret encryption and decryption"; ``AWS_MANAGED_KEY_POLICIES``).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import botocore.client

from tests.aws_iam.evaluate import Request


@dataclass(frozen=True)
class World:
    """The account the runtime runs in, and what the stack declared that a request needs to name."""

    region: str
    account: str
    launch_template: dict[str, Any]  # the declared launch template's inputs (image, security group, tags)
    instance_role_arn: str

    def arn(self, service: str, resource: str, *, account: bool = True) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account if account else ''}:{resource}"

    def parameter_arn(self, name: str) -> str:
        return self.arn("ssm", "parameter/" + name.lstrip("/"))

    def queue_arn(self, url: str) -> str:
        return self.arn("sqs", url.rstrip("/").rsplit("/", 1)[-1])

    def aws_managed_key_arn(self, service: str) -> str:
        """Stands for the account's aws/<service> key (its real id differs per account)."""
        return self.arn("kms", f"key/00000000-aws-managed-{service}")

    def aws_managed_key_policies(self) -> dict[str, dict[str, Any]]:
        """The documented key policy of aws/secretsmanager, which this account's secrets may use."""
        via = {"kms:CallerAccount": self.account, "kms:ViaService": f"secretsmanager.{self.region}.amazonaws.com"}
        return {
            self.aws_managed_key_arn("secretsmanager"): {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "AllowAccessThroughSecretsManagerForThePrincipalsOfTheAccount",
                        "Effect": "Allow",
                        "Principal": {"AWS": "*"},
                        "Action": [
                            "kms:Encrypt",
                            "kms:Decrypt",
                            "kms:ReEncrypt*",
                            "kms:CreateGrant",
                            "kms:DescribeKey",
                        ],
                        "Resource": "*",
                        "Condition": {"StringEquals": via},
                    }
                ],
            }
        }


@dataclass
class Call:
    principal: str  # the role ARN calling
    service: str
    operation: str
    params: dict[str, Any]
    response: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)  # what IAM would read at call time
    source_instance: str | None = None  # the instance ARN, when the role is an instance's


class Recorder:
    """Records every botocore call made in the process while active."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._who: tuple[str, str | None] | None = None
        self._quiet = threading.local()

    @contextlib.contextmanager
    def acting_as(self, role_arn: str, source_instance: str | None = None) -> Iterator[None]:
        before, self._who = self._who, (role_arn, source_instance)
        try:
            yield
        finally:
            self._who = before

    @contextlib.contextmanager
    def quiet(self) -> Iterator[None]:
        """Calls made here (test set-up, state look-ups) are not the runtime's."""
        self._quiet.on = True
        try:
            yield
        finally:
            self._quiet.on = False

    @contextlib.contextmanager
    def active(self) -> Iterator[Recorder]:
        original = botocore.client.BaseClient._make_api_call
        recorder = self

        def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if getattr(recorder._quiet, "on", False) or recorder._who is None:
                return original(client, operation, params)
            service = client.meta.service_model.service_name
            with recorder.quiet():
                state = _state_before(client, service, operation, params)
            call = Call(
                recorder._who[0], service, operation, dict(params), state=state, source_instance=recorder._who[1]
            )
            # IAM authorizes before the service answers: a call that fails (ParameterNotFound...) counts too.
            recorder.calls.append(call)
            response = original(client, operation, params)
            call.response = response
            if service == "ec2" and operation == "CreateFleet":
                with recorder.quiet():
                    call.state["subnets"] = _subnets_of(client, response)
            return response

        with mock.patch.object(botocore.client.BaseClient, "_make_api_call", record):
            yield self

    def add(self, call: Call) -> None:
        """A call made outside Python (the aws CLI in the user data, an agent), mapped by the test."""
        self.calls.append(call)


def _state_before(client: Any, service: str, operation: str, params: dict[str, Any]) -> dict[str, Any]:
    """Tags and keys of the call's target, as IAM sees them when authorizing (before the call changes them)."""
    if service == "ssm" and operation in ("GetParameter", "DeleteParameter") and "Name" in params:
        found = client.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [params["Name"]]}])
        meta = found["Parameters"][0] if found["Parameters"] else {}
        tags = {}
        if meta:
            listed = client.list_tags_for_resource(ResourceType="Parameter", ResourceId=params["Name"])
            tags = {t["Key"]: t["Value"] for t in listed["TagList"]}
        return {"type": meta.get("Type"), "key_id": meta.get("KeyId"), "tags": tags}
    if service == "secretsmanager" and operation == "GetSecretValue":
        try:
            meta = client.describe_secret(SecretId=params["SecretId"])
        except client.exceptions.ResourceNotFoundException:
            return {}
        stage = params.get("VersionStage", "AWSCURRENT")
        versions = [v for v, stages in meta.get("VersionIdsToStages", {}).items() if stage in stages]
        return {"arn": meta["ARN"], "key_id": meta.get("KmsKeyId"), "version": versions[0] if versions else None}
    if service == "ec2" and operation in ("TerminateInstances", "CreateTags"):
        ids = params.get("InstanceIds") or params.get("Resources") or []
        described = client.describe_instances(InstanceIds=ids)
        return {
            "tags": {
                i["InstanceId"]: {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                for r in described["Reservations"]
                for i in r["Instances"]
            }
        }
    return {}


def _subnets_of(client: Any, response: dict[str, Any]) -> dict[str, str]:
    ids = [i for group in response.get("Instances", []) for i in group.get("InstanceIds", [])]
    if not ids:
        return {}
    described = client.describe_instances(InstanceIds=ids)
    return {i["InstanceId"]: i["SubnetId"] for r in described["Reservations"] for i in r["Instances"]}


def _tag_context(tags: dict[str, str], prefix: str) -> dict[str, str]:
    return {f"{prefix}/{k}": v for k, v in tags.items()}


def _request_tags(tags: list[dict[str, str]]) -> dict[str, Any]:
    as_dict = {t["Key"]: t["Value"] for t in tags}
    return {**_tag_context(as_dict, "aws:RequestTag"), "aws:TagKeys": sorted(as_dict)}


def _kms(world: World, call: Call, action: str, key_id: str, parameter_arn: str) -> Request:
    key_arn = key_id if key_id.startswith("arn:") else world.arn("kms", f"key/{key_id}")
    return Request(
        action,
        key_arn,
        call.principal,
        {
            "kms:ViaService": f"ssm.{world.region}.amazonaws.com",
            "kms:CallerAccount": world.account,
            "kms:EncryptionContext:PARAMETER_ARN": parameter_arn,
        },
    )


def requests_for(call: Call, world: World) -> list[Request]:
    """The authorization requests AWS makes for one call (see the module docstring for the sources)."""
    ctx: dict[str, Any] = {}
    if call.source_instance:
        ctx["ec2:SourceInstanceARN"] = call.source_instance
    p, op = call.params, call.operation

    def req(action: str, resource: str, extra: dict[str, Any] | None = None) -> Request:
        return Request(action, resource, call.principal, {**ctx, **(extra or {})})

    if call.service == "sqs":
        return [req(f"sqs:{op}", world.queue_arn(p["QueueUrl"]))]
    if call.service == "ssm":
        if op in ("GetParameter", "DeleteParameter"):
            arn = world.parameter_arn(p["Name"])
            state = call.state
            found = [req(f"ssm:{op}", arn, _tag_context(state.get("tags") or {}, "aws:ResourceTag"))]
            if op == "GetParameter" and p.get("WithDecryption") and state.get("type") == "SecureString":
                found.append(_kms(world, call, "kms:Decrypt", state.get("key_id") or "alias/aws/ssm", arn))
            return found
        if op == "PutParameter":
            arn = world.parameter_arn(p["Name"])
            found = [req("ssm:PutParameter", arn)]
            if p.get("Tags"):
                found.append(req("ssm:AddTagsToResource", arn, _request_tags(p["Tags"])))
            if p.get("Type") == "SecureString":
                action = "kms:GenerateDataKey" if p.get("Tier") == "Advanced" else "kms:Encrypt"
                found.append(_kms(world, call, action, p.get("KeyId") or "alias/aws/ssm", arn))
            return found
        if op == "GetParametersByPath":
            return [req("ssm:GetParametersByPath", world.parameter_arn(p["Path"]))]
        if op == "GetParameters":
            return [req("ssm:GetParameters", world.parameter_arn(n)) for n in p["Names"]]
    if call.service == "ec2":
        if op == "DescribeInstances":
            return [req("ec2:DescribeInstances", "*")]
        if op in ("TerminateInstances", "CreateTags"):
            ids = p.get("InstanceIds") or p.get("Resources") or []
            extra = _request_tags(p["Tags"]) if op == "CreateTags" else {}
            return [
                req(
                    f"ec2:{op}",
                    world.arn("ec2", f"instance/{i}"),
                    {**_tag_context(call.state["tags"].get(i, {}), "aws:ResourceTag"), **extra},
                )
                for i in ids
            ]
        if op == "CreateFleet":
            return _create_fleet(call, world, req)
    if call.service == "secretsmanager" and op == "GetSecretValue":
        arn = call.state.get("arn") or world.arn("secretsmanager", f"secret:{p['SecretId']}-??????")
        found = [req("secretsmanager:GetSecretValue", arn)]
        if call.state.get("version"):  # decrypting happens only for a version that exists
            key = call.state.get("key_id") or world.aws_managed_key_arn("secretsmanager")
            key_arn = key if key.startswith("arn:") else world.arn("kms", f"key/{key}")
            context = {
                "kms:ViaService": f"secretsmanager.{world.region}.amazonaws.com",
                "kms:CallerAccount": world.account,
                "kms:EncryptionContext:SecretARN": arn,
                "kms:EncryptionContext:SecretVersionId": call.state["version"],
            }
            found.append(req("kms:Decrypt", key_arn, context))
        return found
    if call.service == "s3" and op == "GetObject":
        return [req("s3:GetObject", f"arn:aws:s3:::{p['Bucket']}/{p['Key']}")]
    if call.service == "logs":
        return [req(f"logs:{op}", p["resource"])]
    if call.service in ("ssmmessages", "rds-db") or (call.service == "ssm" and op == "UpdateInstanceInformation"):
        return [req(f"{call.service}:{op}", p["resource"])]
    raise AssertionError(f"no IAM mapping for {call.service}:{op}: add one (with its source) before using it")


def _create_fleet(call: Call, world: World, req: Any) -> list[Request]:
    """CreateFleet (instant), per launched instance: what EC2 authorizes (module docstring)."""
    p, template = call.params, world.launch_template
    found: list[Request] = []
    fleet_id = call.response.get("FleetId", "fleet-unknown")
    found.append(req("ec2:CreateFleet", world.arn("ec2", f"fleet/{fleet_id}")))
    specification = p["LaunchTemplateConfigs"][0]["LaunchTemplateSpecification"]
    template_arn = world.arn("ec2", f"launch-template/{specification['LaunchTemplateId']}")
    instance_tags = next(t["Tags"] for t in p["TagSpecifications"] if t["ResourceType"] == "instance")
    volume_tags = [
        {"Key": k, "Value": v}
        for spec in template.get("tagSpecifications", [])
        if spec["resourceType"] == "volume"
        for k, v in spec["tags"].items()
    ]
    image = str(template["imageId"])
    resolved_image = image if image.startswith("ami-") else "ami-0resolvedbyssm0000"
    image_context = {} if image.startswith("ami-") else {"ec2:Owner": "amazon"}
    security_groups = template["networkInterfaces"][0]["securityGroups"]
    launched = [i for group in call.response.get("Instances", []) for i in group.get("InstanceIds", [])]
    subnets = call.state.get("subnets") or {}
    for instance_id in launched:
        instance_arn = world.arn("ec2", f"instance/{instance_id}")
        subnet_arn = world.arn("ec2", f"subnet/{subnets.get(instance_id, 'unknown')}")
        on_create = {"ec2:CreateAction": "CreateFleet"}
        # CreateFleet itself is authorized on what its request names (the instance, the template, the
        # overrides' subnets); what only the template names (group, image) is RunInstances' alone.
        for action in ("ec2:CreateFleet", "ec2:RunInstances"):
            found += [
                req(action, instance_arn, {**_request_tags(instance_tags), "ec2:LaunchTemplate": template_arn}),
                req(action, template_arn),
                req(action, subnet_arn),
            ]
        found += [
            *[req("ec2:RunInstances", world.arn("ec2", f"security-group/{g}")) for g in security_groups],
            req("ec2:RunInstances", world.arn("ec2", f"image/{resolved_image}", account=False), image_context),
        ]
        found += [
            req(
                "ec2:RunInstances",
                world.arn("ec2", "network-interface/eni-0launched0000000"),
                {"ec2:Subnet": subnet_arn},
            ),
            req("ec2:RunInstances", world.arn("ec2", "volume/vol-0launched0000000"), _request_tags(volume_tags)),
            req("ec2:CreateTags", instance_arn, {**_request_tags(instance_tags), **on_create}),
            req(
                "ec2:CreateTags",
                world.arn("ec2", "volume/vol-0launched0000000"),
                {**_request_tags(volume_tags), **on_create},
            ),
            req("iam:PassRole", world.instance_role_arn, {"iam:PassedToService": "ec2.amazonaws.com"}),
        ]
        for device in template.get("blockDeviceMappings", []):
            key = device.get("ebs", {}).get("kmsKeyId")
            if key:  # EC2 uses a customer-managed volume key as the launching caller (EBS User Guide)
                via = {"kms:ViaService": f"ec2.{world.region}.amazonaws.com"}
                found += [
                    req(action, key, via)
                    for action in ("kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt", "kms:DescribeKey")
                ]
                found.append(req("kms:CreateGrant", key, {**via, "kms:GrantIsForAWSResource": "true"}))
        if image.startswith("resolve:ssm:"):
            name = image.removeprefix("resolve:ssm:")
            found.append(req("ssm:GetParameters", world.arn("ssm", "parameter/" + name.lstrip("/"), account=False)))
        if p["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == "spot":
            found.append(
                req(
                    "iam:CreateServiceLinkedRole",
                    f"arn:aws:iam::{world.account}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot",
                    {"iam:AWSServiceName": "spot.amazonaws.com"},
                )
            )
    return found
