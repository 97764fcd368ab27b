"""scripts/bake-image: EC2 through moto, the build instance's user data run for real under the stubs."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.settings import DEFAULT_AMI
from ops import bake_image
from runner.control_plane.bootstrap import render
from simulator.instance import Boot, values
from tests.fix_control_plane import Aws


def template(aws: Aws, user_data: str) -> str:
    group = aws.ec2.create_security_group(GroupName="runners", Description="vpc-runners: test")["GroupId"]
    return aws.ec2.create_launch_template(
        LaunchTemplateName="vpc-runners-bake-test",
        LaunchTemplateData={
            "ImageId": DEFAULT_AMI,  # the stack's default: resolved from SSM at each launch
            "InstanceType": "t3.small",
            "UserData": base64.b64encode(user_data.encode()).decode(),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "MetadataOptions": {"HttpTokens": "required"},
            "NetworkInterfaces": [{"DeviceIndex": 0, "Groups": [group], "AssociatePublicIpAddress": False}],
        },
    )["LaunchTemplate"]["LaunchTemplateId"]


class BuildInstance:
    """Stands in for EC2 running the instance: its user data (as EC2 holds it) runs under the stubs, and
    the instance stops when the script shut it down."""

    def __init__(self, aws: Aws, tmp_path: Path, **placeholders: str) -> None:
        self.aws, self.boot = aws, Boot(tmp_path / "build")
        self.user_data = render(values(RUNNER_SHA256=self.boot.sha256) | placeholders)

    def wait_stopped(self, instance_id: str) -> None:
        attribute = self.aws.ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
        script = base64.b64decode(attribute["UserData"]["Value"]).decode()
        self.result = self.boot.run(script_text=script, instance_id=instance_id)
        if self.boot.lines()[-1:] != ["shutdown -h now"]:
            raise bake_image.BakeError(f"{instance_id} did not stop")
        behaviour = self.aws.ec2.describe_instance_attribute(
            InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
        )
        assert behaviour["InstanceInitiatedShutdownBehavior"]["Value"] == "stop"
        self.aws.ec2.stop_instances(InstanceIds=[instance_id])


def instances(aws: Aws) -> list[dict[str, Any]]:
    return [i for r in aws.ec2.describe_instances()["Reservations"] for i in r["Instances"]]


def test_a_bake_images_the_stopped_build_instance_and_terminates_it(aws: Aws, tmp_path: Path):
    build = BuildInstance(aws, tmp_path)
    lt = template(aws, build.user_data)
    image_id = bake_image.bake(
        aws.ec2,
        launch_template_id=lt,
        subnet_id=aws.subnets[0],
        name="vpc-runners-prod",
        wait_stopped=build.wait_stopped,
    )
    (image,) = aws.ec2.describe_images(ImageIds=[image_id])["Images"]
    assert image["State"] == "available" and image["Name"].startswith("vpc-runners-prod-")
    (instance,) = instances(aws)
    assert instance["State"]["Name"] == "terminated" and instance["SubnetId"] == aws.subnets[0]
    assert not instance.get("PublicIpAddress")
    tags = {t["Key"]: t["Value"] for t in instance["Tags"] if not t["Key"].startswith("aws:")}
    assert tags == {"Name": "vpc-runners-prod bake", "vpc-runners:bake": "vpc-runners-prod"}, "no fleet tag"
    baked = (build.boot.root / "etc/vpc-runner-kit/baked").read_text()
    assert "RUNNER=2.338.0/x64/" in baked
    # And a runner booting from that disk downloads nothing (see test_bootstrap for the call-by-call check).
    runner = Boot(tmp_path / "runner")
    build.boot.copy_image_to(runner)
    assert runner.run(script_text=build.user_data).returncode == 0
    assert not [line for line in runner.lines() if line.startswith(("dnf", "aws s3", "pip"))]


def test_a_failed_bake_leaves_no_image_and_no_instance(aws: Aws, tmp_path: Path):
    build = BuildInstance(aws, tmp_path, RUNNER_SHA256="f" * 64)  # the runner download fails its checksum
    lt = template(aws, build.user_data)
    with pytest.raises(bake_image.BakeError, match="did not stop"):
        bake_image.bake(
            aws.ec2, launch_template_id=lt, subnet_id=aws.subnets[0], name="x", wait_stopped=build.wait_stopped
        )
    assert (
        build.result.returncode != 0 and "checksum mismatch" in (build.boot.root / "var/log/vpc-runner.log").read_text()
    )
    assert not (build.boot.root / "etc/vpc-runner-kit/baked").exists()
    assert [i["State"]["Name"] for i in instances(aws)] == ["terminated"]
    assert aws.ec2.describe_images(Owners=["self"])["Images"] == []


def test_a_template_that_is_not_ours_is_refused(aws: Aws, capsys: pytest.CaptureFixture[str]):
    lt = template(aws, "#!/bin/bash\necho hello\n")
    code = bake_image.main(["--launch-template", lt, "--subnet", aws.subnets[0], "--region", "us-east-1"])
    assert code == bake_image.Exit.BAD_INPUT
    assert "not the vpc-runners runner script" in capsys.readouterr().err
    assert instances(aws) == [], "nothing launched"


def test_bad_ids_are_exit_2(capsys: pytest.CaptureFixture[str]):
    assert bake_image.main(["--launch-template", "my-template", "--subnet", "subnet-1"]) == bake_image.Exit.BAD_INPUT
    assert "lt-" in capsys.readouterr().err


def test_aws_refusing_is_exit_3(aws: Aws, capsys: pytest.CaptureFixture[str]):
    code = bake_image.main(
        ["--launch-template", "lt-0000000000000000f", "--subnet", aws.subnets[0], "--region", "us-east-1"]
    )
    assert code == bake_image.Exit.AWS_ERROR and "AWS:" in capsys.readouterr().err
    assert boto3.client("ec2", region_name="us-east-1").describe_instances()["Reservations"] == []


def test_a_build_instance_that_never_stops_is_exit_1_and_terminated(aws: Aws, tmp_path: Path, capsys):
    """moto never runs the user data, so the instance never stops: the bake times out, as a failed one does."""
    lt = template(aws, BuildInstance(aws, tmp_path).user_data)
    argv = ["--launch-template", lt, "--subnet", aws.subnets[0], "--region", "us-east-1", "--timeout", "15"]
    assert bake_image.main(argv) == bake_image.Exit.FAILED
    err = capsys.readouterr().err
    assert "did not stop within 15 s" in err and "/bootstrap of the runners log group" in err
    assert [i["State"]["Name"] for i in instances(aws)] == ["terminated"]
