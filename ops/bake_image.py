"""Bake a runner image (`scripts/bake-image`): a boot from it downloads nothing.

Launches one instance from the stack's own launch template (its role, security group, encrypted
volume, IMDSv2, no public IP) in one of its private subnets, with the template's user data in bake mode:
it installs the prerequisites, the RDS CA bundle, the kit's wheelhouse and the runner release the stack
pins, records them in /etc/vpc-runner-kit/baked, and stops. This script then images the stopped disk,
terminates the instance (whatever happened), and prints the image id to set as the stack's ``amiId``.
A boot from that image compares the record (the prerequisites' fingerprint, the kit build, the runner's
version, architecture and checksum) with its own and installs only what differs, so an image older than
the stack is slower, never wrong. Runs with the caller's AWS credentials; needs (PERMISSIONS)
ec2:DescribeLaunchTemplateVersions, ec2:RunInstances, ec2:CreateTags, iam:PassRole (the stack's instance
role), ssm:GetParameters (the template's resolve:ssm image, read as the caller), ec2:DescribeInstances,
ec2:CreateImage, ec2:DescribeImages, ec2:DeregisterImage (an image that failed) and
ec2:TerminateInstances; with ebsKmsKeyId, also (KMS_PERMISSIONS, on that key) kms:CreateGrant,
kms:GenerateDataKeyWithoutPlaintext, kms:Decrypt and kms:DescribeKey.

Exit codes: 0 image available (its id on stdout); 1 the bake did not finish in time (the instance's
bootstrap log stream says why) or the image failed; 2 bad arguments or not a vpc-runners template;
3 AWS refused or unreachable.
"""

from __future__ import annotations

import argparse
import base64
import enum
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, WaiterError


class Exit(enum.IntEnum):
    AVAILABLE = 0
    FAILED = 1
    BAD_INPUT = 2
    AWS_ERROR = 3


class BakeError(Exception):
    """The bake or the image failed; the message says where to look."""


class NotOurTemplate(ValueError):
    """The launch template's user data is not the kit's runner user data."""


MODE_LINE = "MODE=${VPC_RUNNER_MODE:-boot}"
# What its calls need (tests/control_plane/test_ops_permissions.py records them): CreateTags for the tags
# given at launch and on the image, PassRole for the role of the template's instance profile, and
# GetParameters for the template's resolve:ssm image (the stack's default), read as the launching caller.
# With ebsKmsKeyId, EC2 also uses that key as the caller (KMS_PERMISSIONS, on that key).
PERMISSIONS = (
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:RunInstances",
    "ec2:CreateTags",
    "iam:PassRole",
    "ssm:GetParameters",
    "ec2:DescribeInstances",
    "ec2:CreateImage",
    "ec2:DescribeImages",
    "ec2:DeregisterImage",
    "ec2:TerminateInstances",
)
KMS_PERMISSIONS = ("kms:CreateGrant", "kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt", "kms:DescribeKey")
TAG_BAKE = "vpc-runners:bake"


def bake_user_data(user_data: str) -> str:
    """The template's user data, switched to bake mode (the same script: one source of truth)."""
    shebang, _, rest = user_data.partition("\n")
    if not shebang.startswith("#!") or MODE_LINE not in rest:
        raise NotOurTemplate("its user data is not the vpc-runners runner script (no bake mode)")
    return f"{shebang}\nexport VPC_RUNNER_MODE=bake\n{rest}"


def bake(
    ec2: Any,
    *,
    launch_template_id: str,
    subnet_id: str,
    name: str,
    timeout_s: int = 1800,
    image_attempts: int = 120,  # EC2's image_available waiter polls every 15 s
    wait_stopped: Callable[[str], None] | None = None,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> str:
    """Bake and image; returns the image id. ``wait_stopped`` waits for the instance to stop (EC2's
    waiter by default; the tests run the real user data there)."""
    versions = ec2.describe_launch_template_versions(LaunchTemplateId=launch_template_id, Versions=["$Latest"])
    data = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    script = bake_user_data(base64.b64decode(data.get("UserData", "")).decode())
    groups = [g for nic in data.get("NetworkInterfaces", []) for g in nic.get("Groups", [])]
    launched = ec2.run_instances(
        LaunchTemplate={"LaunchTemplateId": launch_template_id, "Version": "$Latest"},
        MinCount=1,
        MaxCount=1,
        UserData=script,
        # The bake ends with `shutdown`: stop (the template says terminate) so the disk can be imaged.
        InstanceInitiatedShutdownBehavior="stop",
        NetworkInterfaces=[
            {
                "DeviceIndex": 0,
                "SubnetId": subnet_id,
                "Groups": groups,
                "AssociatePublicIpAddress": False,
                "DeleteOnTermination": True,
            }
        ],
        # No fleet tag: the reaper never takes the build instance for a runner.
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "Name", "Value": f"{name} bake"}, {"Key": TAG_BAKE, "Value": name}],
            }
        ],
    )
    instance_id = launched["Instances"][0]["InstanceId"]
    log(f"bake-image: baking on {instance_id} (its log: stream {instance_id}/bootstrap of the runners log group)")
    try:
        if wait_stopped is not None:
            wait_stopped(instance_id)
        else:
            try:
                ec2.get_waiter("instance_stopped").wait(
                    InstanceIds=[instance_id], WaiterConfig={"Delay": 15, "MaxAttempts": max(timeout_s // 15, 1)}
                )
            except WaiterError:
                raise BakeError(
                    f"{instance_id} did not stop within {timeout_s} s: the bake failed or is slow; its log is stream "
                    f"{instance_id}/bootstrap of the runners log group"
                ) from None
        image_id: str = ec2.create_image(
            InstanceId=instance_id,
            Name=f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}",
            Description=f"vpc-runners runner image baked from {launch_template_id}",
            TagSpecifications=[{"ResourceType": "image", "Tags": [{"Key": TAG_BAKE, "Value": name}]}],
        )["ImageId"]
        log(f"bake-image: imaging {instance_id} as {image_id}")
        try:
            ec2.get_waiter("image_available").wait(
                ImageIds=[image_id], WaiterConfig={"Delay": 15, "MaxAttempts": image_attempts}
            )
        except WaiterError:
            ec2.deregister_image(ImageId=image_id)  # no half-made image left for anyone to boot
            raise BakeError(f"image {image_id} did not become available (deregistered)") from None
        return image_id
    finally:
        ec2.terminate_instances(InstanceIds=[instance_id])
        log(f"bake-image: terminated {instance_id}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bake-image", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--launch-template", required=True, help="the stack's output launchTemplateId (lt-...)")
    parser.add_argument("--subnet", required=True, help="one of the stack's private subnets (privateSubnetIds)")
    parser.add_argument("--name", default="vpc-runners", help="the image name's prefix (vpc-runners)")
    parser.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    parser.add_argument("--timeout", type=int, default=1800, metavar="SECONDS", help="how long a bake may take")
    args = parser.parse_args(argv)
    if not args.launch_template.startswith("lt-") or not args.subnet.startswith("subnet-"):
        print("bake-image: --launch-template takes an lt-... id and --subnet a subnet-... id", file=sys.stderr)
        return Exit.BAD_INPUT
    try:
        ec2 = boto3.client("ec2", region_name=args.region)
        image_id = bake(
            ec2, launch_template_id=args.launch_template, subnet_id=args.subnet, name=args.name, timeout_s=args.timeout
        )
    except NotOurTemplate as err:
        print(f"bake-image: {args.launch_template}: {err}", file=sys.stderr)
        return Exit.BAD_INPUT
    except BakeError as err:
        print(f"bake-image: {err}", file=sys.stderr)
        return Exit.FAILED
    except (BotoCoreError, ClientError) as err:
        print(f"bake-image: AWS: {err}", file=sys.stderr)
        return Exit.AWS_ERROR
    print(image_id)
    print(f"bake-image: now `pulumi config set vpc-runners:amiId {image_id}` and `pulumi up`", file=sys.stderr)
    return Exit.AVAILABLE


if __name__ == "__main__":
    sys.exit(main())
