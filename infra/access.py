"""Network access: the runners' security group, and one DatabaseAccess per configured database.

The runner security group has no inbound rules at all (Session Manager needs none). Outbound:
HTTPS (GitHub, AWS APIs, package mirrors) and each database's port to that database's security
group only. Each database's security group gets one inbound rule: from the runner group, on its port.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from .settings import Database


@dataclass
class RunnerSecurityGroupArgs:
    vpc_id: pulumi.Input[str]
    tags: dict[str, str]


class RunnerSecurityGroup(pulumi.ComponentResource):
    def __init__(self, name: str, args: RunnerSecurityGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:access:RunnerSecurityGroup", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.group = aws.ec2.SecurityGroup(
            name,
            vpc_id=args.vpc_id,
            description="vpc-runners: ephemeral GitHub Actions runners (no inbound)",
            tags={**args.tags, "Name": name},
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-https",
            security_group_id=self.group.id,
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
            description="GitHub, AWS APIs and package mirrors",
            opts=child,
        )
        self.id = self.group.id
        self.register_outputs({"id": self.id})


@dataclass
class DatabaseAccessArgs:
    database: Database
    runner_security_group_id: pulumi.Input[str]
    region: str
    parameter_prefix: str
    tags: dict[str, str]


class DatabaseAccess(pulumi.ComponentResource):
    """Runners -> one database: the security group rules, and the connection parameter vpc-migrate reads."""

    def __init__(self, name: str, args: DatabaseAccessArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:access:DatabaseAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        db = args.database
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-from-runners",
            security_group_id=db.security_group_id,
            ip_protocol="tcp",
            from_port=db.port,
            to_port=db.port,
            referenced_security_group_id=args.runner_security_group_id,
            description=f"vpc-runners: migrations from the runner fleet to {db.name}",
            opts=child,
        )
        aws.vpc.SecurityGroupEgressRule(
            f"{name}-to-database",
            security_group_id=args.runner_security_group_id,
            ip_protocol="tcp",
            from_port=db.port,
            to_port=db.port,
            referenced_security_group_id=db.security_group_id,
            description=f"to database {db.name}",
            opts=child,
        )
        self.parameter_name = f"{args.parameter_prefix}/{db.name}"
        self.parameter = aws.ssm.Parameter(
            name,
            name=self.parameter_name,
            type="String",
            tier="Standard",
            tags=args.tags,
            description=f"vpc-migrate connection for {db.name} (coordinates only; login is "
            + ("IAM)" if db.iam else "the secret it names)"),
            value=json.dumps(connection_json(db, args.region)),
            opts=child,
        )
        self.register_outputs({"parameter_name": self.parameter_name})


def connection_json(db: Database, region: str) -> dict[str, object]:
    """What vpc-migrate reads (runner/migrate/connection.py): coordinates, and IAM or the secret's ARN."""
    coordinates = {"host": db.host, "port": db.port, "dbname": db.dbname, "user": db.user, "region": region}
    login: dict[str, object] = {"iam": True} if db.iam else {"secret": db.secret_arn}
    return {**{k: v for k, v in coordinates.items() if v is not None}, **login}
