"""What the operators' commands need from the caller's AWS credentials, proved both ways: the IAM actions
each documents (its ``PERMISSIONS``, its --help and the README) are exactly those its AWS calls need, as
recorded while it runs against moto; and each is an action in AWS's Service Authorization Reference."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import botocore.client
import pytest
from botocore.response import StreamingBody

from ops import bake_image, drain, job_trace
from tests.aws_iam import reference
from tests.control_plane.test_bake_image import BuildInstance, template
from tests.control_plane.test_drain import STACK, reaper, three_runners
from tests.fix_control_plane import Aws, Plane

REPO = Path(__file__).resolve().parents[2]
# Where the IAM action is not service:Operation (Service Authorization Reference).
ACTION_OF = {("lambda", "Invoke"): "lambda:InvokeFunction"}


def needed(service: str, operation: str, params: dict[str, Any], image: str | None = None) -> set[str]:
    """The IAM actions one call needs: its own, and those AWS also authorizes for it (dependent actions).
    ``image``: RunInstances' launch template's image."""
    found = {ACTION_OF.get((service, operation), f"{service}:{operation}")}
    if params.get("TagSpecifications"):
        found.add("ec2:CreateTags")  # tags on create (EC2 User Guide)
    if (service, operation) == ("ec2", "RunInstances"):
        found.add("iam:PassRole")  # the role of the stack's launch template's instance profile
        if (image or "").startswith("resolve:ssm:"):
            found.add("ssm:GetParameters")  # EC2 reads the parameter as the launching caller (EC2 User Guide)
    return found


def template_image(client: Any, original: Any, params: dict[str, Any]) -> str | None:
    """The image of the launch template RunInstances launches from, as EC2 reads it."""
    if "LaunchTemplate" not in params:
        return None
    spec = params["LaunchTemplate"]
    versions = original(
        client,
        "DescribeLaunchTemplateVersions",
        {"LaunchTemplateId": spec["LaunchTemplateId"], "Versions": [spec.get("Version", "$Default")]},
    )
    image: str | None = versions["LaunchTemplateVersions"][0]["LaunchTemplateData"].get("ImageId")
    return image


class Recording:
    def __init__(self) -> None:
        self.actions: set[str] = set()
        self.on = True

    @contextmanager
    def paused(self) -> Iterator[None]:
        """What happens here is EC2's or Lambda's side, not the command's calls."""
        self.on = False
        try:
            yield
        finally:
            self.on = True


@contextmanager
def recording(answers: dict[tuple[str, str], Callable[[dict[str, Any]], Any]] | None = None) -> Iterator[Recording]:
    original = botocore.client.BaseClient._make_api_call
    seen = Recording()

    def record(client: Any, operation: str, params: dict[str, Any]) -> Any:
        service = client.meta.service_model.service_name
        if not seen.on:
            return original(client, operation, params)
        image = template_image(client, original, params) if operation == "RunInstances" else None
        seen.actions |= needed(service, operation, params, image)
        if answer := (answers or {}).get((service, operation)):
            with seen.paused():
                return answer(params)
        return original(client, operation, params)

    with mock.patch.object(botocore.client.BaseClient, "_make_api_call", record):
        yield seen


def documented(module: Any) -> None:
    readme = (REPO / "README.md").read_text()
    for action in module.PERMISSIONS:
        assert reference.action(action) is not None, f"{action} is not in the Service Authorization Reference"
        assert action in (module.__doc__ or ""), f"{module.__name__}'s --help does not name {action}"
        assert f"`{action}`" in readme, f"the README does not name {action}"


def test_job_trace(aws: Aws):
    logs = boto3.client("logs")
    functions, runners = job_trace.log_groups("prod")
    for group in [*functions, runners]:
        logs.create_log_group(logGroupName=group)
    line = json.dumps(
        {"trace": "launched", "at": "2026-11-22T10:00:03.000Z", "job_id": 9, "instance_id": "i-0abc12345"}
    )
    logs.create_log_stream(logGroupName=functions[1], logStreamName="s")
    logs.put_log_events(
        logGroupName=functions[1],
        logStreamName="s",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": line}],
    )
    with recording() as seen:
        assert job_trace.job_trace(logs, "prod", 9, since_s=3600).instance_ids == ("i-0abc12345",)
    assert seen.actions == set(job_trace.PERMISSIONS)
    documented(job_trace)


def test_bake_image(aws: Aws, tmp_path: Path):
    """Two runs: a bake that completes (EC2's side, the build instance, stands in for the stop waiter), and one
    whose instance never stops (the real waiter polls, then gives up)."""
    build = BuildInstance(aws, tmp_path)
    lt = template(aws, build.user_data)
    with recording() as seen:

        def ec2_runs_it(instance_id: str) -> None:
            with seen.paused():
                build.wait_stopped(instance_id)

        bake_image.bake(aws.ec2, launch_template_id=lt, subnet_id=aws.subnets[0], name="x", wait_stopped=ec2_runs_it)
        argv = ["--launch-template", lt, "--subnet", aws.subnets[0], "--region", "us-east-1", "--timeout", "15"]
        assert bake_image.main(argv) == bake_image.Exit.FAILED
    # A third: the image fails, and is deregistered.
    failed = {
        ("ec2", "DescribeImages"): lambda params: {"Images": [{"ImageId": params["ImageIds"][0], "State": "failed"}]}
    }
    with recording(failed) as failing:

        def stops(instance_id: str) -> None:
            with failing.paused():
                build.wait_stopped(instance_id)

        with pytest.raises(bake_image.BakeError, match=r"did not become available \(deregistered\)"):
            bake_image.bake(
                aws.ec2, launch_template_id=lt, subnet_id=aws.subnets[0], name="y", image_attempts=1, wait_stopped=stops
            )
    assert "ec2:DeregisterImage" in failing.actions
    assert seen.actions | failing.actions == set(bake_image.PERMISSIONS)
    documented(bake_image)


def test_drain(lambdas: Any, aws: Aws, plane: Plane, fake_github: Any):
    """moto cannot run a Lambda (no Docker): Invoke is answered by the real reaper handler, in process."""
    three_runners(plane, fake_github)
    busy = fake_github.runner_named(plane.config.runner_name(aws.live_instances(STACK)[0]["InstanceId"]))
    if busy is not None:
        busy.busy = False

    def invoke(params: dict[str, Any]) -> dict[str, Any]:
        body = json.dumps(reaper(json.loads(params["Payload"]))).encode()
        return {"StatusCode": 200, "Payload": StreamingBody(io.BytesIO(body), len(body))}

    with recording({("lambda", "Invoke"): invoke}) as seen:
        result = drain.drain(lambdas, STACK, now=True, wait_s=0, log=lambda line: None)
    assert len(result["terminated"]) == 3 and result["kept"] == {}
    assert seen.actions == set(drain.PERMISSIONS)
    documented(drain)
