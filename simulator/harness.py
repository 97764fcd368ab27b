"""Replay a recorded ``workflow_job`` webhook through receiver, queue and scale-up, without AWS.

    python -m simulator.harness tests/control_plane/events/workflow_job_queued.json \\
        --jobs 25 --max-runners 10 --spot

AWS is moto (in process), GitHub is the fake API on loopback; the control plane code is the real
code the Lambdas run. Prints what would be launched, what went back to the queue, and the API calls
per launched runner, and every job that errored (exit 1 when any did). Needs the `dev` dependency
group (moto, PyJWT): run it inside the project's environment, ``.venv/bin/python -m ...`` after
``scripts/test`` or ``uv sync`` built it.

Exit codes: 0 every job was launched or waits for capacity; 1 a job errored; 2 bad arguments, an
unreadable event, or the dev group missing.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import hmac
import importlib.util
import io
import json
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SECRET = b"harness-webhook-secret"
DEV_MODULES = {"moto": "moto", "jwt": "PyJWT", "cryptography": "cryptography"}


class _Errors(logging.Handler):
    """Collects the control plane's error records (one per errored job) instead of printing tracebacks."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        cause = (
            f": {record.exc_info[0].__name__}: {record.exc_info[1]}" if record.exc_info and record.exc_info[0] else ""
        )
        self.messages.append(record.getMessage() + cause)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.harness",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("event", type=Path, help="a recorded workflow_job webhook payload (JSON)")
    parser.add_argument("--jobs", type=int, default=1, help="replay it as this many distinct queued jobs")
    parser.add_argument("--max-runners", type=int, default=10)
    parser.add_argument("--spot", action="store_true")
    parser.add_argument("--labels", default="self-hosted,linux,x64,vpc", help="the pool's runner labels")
    parser.add_argument("--pool-label", default="vpc")
    parser.add_argument("--instance-types", default="t3.small,t3a.small")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    missing = [dist for module, dist in DEV_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        print(
            f"harness: needs the `dev` dependency group ({', '.join(missing)} missing): build the project's "
            "environment with scripts/test (or uv sync) and run .venv/bin/python -m simulator.harness",
            file=sys.stderr,
        )
        return 2
    try:
        payload = json.loads(args.event.read_text())
    except (OSError, ValueError) as err:
        print(f"harness: cannot read {args.event}: {err}", file=sys.stderr)
        return 2
    result = replay(
        payload,
        jobs=args.jobs,
        max_runners=args.max_runners,
        spot=args.spot,
        labels=args.labels.split(","),
        pool_label=args.pool_label,
        instance_types=args.instance_types.split(","),
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 1 if result["errors"] else 0


@dataclass
class FakeAws:
    """The AWS side of a fleet, inside an active moto mock."""

    ec2: Any
    sqs: Any
    ssm: Any
    queue_url: str
    subnets: list[str]
    launch_template_id: str


def fake_fleet_aws(region: str, name: str) -> FakeAws:
    """A VPC with private subnets in two zones, a runner launch template and the FIFO job queue.

    Call inside ``moto.mock_aws()``. Also used by the test suite's fixtures.
    """
    import boto3

    ec2: Any = boto3.client("ec2", region_name=region)
    sqs: Any = boto3.client("sqs", region_name=region)
    ssm: Any = boto3.client("ssm", region_name=region)
    vpc = ec2.create_vpc(CidrBlock="10.90.0.0/16")["Vpc"]["VpcId"]
    subnets = [
        ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.90.{i}.0/24", AvailabilityZone=f"{region}{az}")["Subnet"][
            "SubnetId"
        ]
        for i, az in ((1, "a"), (2, "b"))
    ]
    template = ec2.create_launch_template(
        LaunchTemplateName=f"{name}-runner",
        LaunchTemplateData={
            # moto launches any image id; listing its AMI catalogue costs most of a second.
            "ImageId": "ami-0123456789abcdef0",
            "InstanceType": "t3.small",
            "MetadataOptions": {"HttpTokens": "required"},
            "InstanceInitiatedShutdownBehavior": "terminate",
        },
    )
    queue = sqs.create_queue(
        QueueName=f"{name}-jobs.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "60"}
    )["QueueUrl"]
    return FakeAws(ec2, sqs, ssm, queue, subnets, template["LaunchTemplate"]["LaunchTemplateId"])


def replay(
    payload: dict[str, Any],
    *,
    jobs: int,
    max_runners: int,
    spot: bool,
    labels: list[str],
    pool_label: str,
    instance_types: list[str],
) -> dict[str, Any]:
    from moto import mock_aws

    from runner.control_plane import config as config_module
    from runner.control_plane.fleet import Fleet
    from runner.control_plane.github import AppAuth, GitHubClient
    from runner.control_plane.scale_up import JitStore, ScaleUp
    from runner.control_plane.webhook import JobMessage, receive

    from .fake_github import FakeGitHub, new_app_key

    private_pem, public_pem = new_app_key()
    owner = payload.get("repository", {}).get("owner", {}).get("login", "acme")
    installation = payload.get("installation", {}).get("id", 1)
    fake = FakeGitHub(owner=owner, app_public_key_pem=public_pem, installation_id=installation)
    fake.start()
    errors = _Errors()
    control_plane_log = logging.getLogger("runner.control_plane")
    control_plane_log.addHandler(errors)
    control_plane_log.propagate = False
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "harness", "AWS_SECRET_ACCESS_KEY": "harness", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    try:
        with mock_aws():
            aws = fake_fleet_aws("us-east-1", "harness")
            ec2, sqs, ssm, queue = aws.ec2, aws.sqs, aws.ssm, aws.queue_url
            cfg = config_module.load(
                {
                    "VPC_RUNNERS_FLEET": "harness",
                    "GITHUB_OWNER": owner,
                    "GITHUB_API_URL": fake.url,
                    "GITHUB_APP_ID": fake.app_id,
                    "GITHUB_APP_KEY_PARAMETER": "/unused",
                    "RUNNER_LABELS": json.dumps(labels),
                    "POOL_LABEL": pool_label,
                    "QUEUE_URL": queue,
                    "LAUNCH_TEMPLATE_ID": aws.launch_template_id,
                    "SUBNET_IDS": json.dumps(aws.subnets),
                    "INSTANCE_TYPES": json.dumps(instance_types),
                    "MAX_RUNNERS": str(max_runners),
                    "SPOT": "true" if spot else "false",
                    # The recorded event's own repository: the harness replays what the stack would admit.
                    "ALLOWED_REPOSITORIES": json.dumps([payload.get("repository", {}).get("full_name", "")]),
                }
            )
            github = GitHubClient(cfg.github_api_url, owner, AppAuth(fake.app_id, private_pem))
            fleet, jit = Fleet(ec2, cfg), JitStore(ssm, cfg)

            receiver_answers: list[tuple[int, str]] = []
            t0 = time.perf_counter()
            for n in range(jobs):
                event = copy.deepcopy(payload)
                job = event.get("workflow_job", {})
                if isinstance(job.get("id"), int):
                    job["id"] += n
                    fake.add_job(job["id"], repo=event["repository"]["name"], run_id=job.get("run_id"))
                body = json.dumps(event).encode()
                headers = {
                    "X-GitHub-Event": "workflow_job",
                    "X-GitHub-Delivery": f"harness-{n}",
                    "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
                }

                def enqueue(message: JobMessage) -> None:
                    sqs.send_message(
                        QueueUrl=queue,
                        MessageBody=message.to_json(),
                        MessageGroupId=str(message.job_id),
                        MessageDeduplicationId=message.delivery_id,
                    )

                answer = receive(headers, body, secret=SECRET, pools=cfg.pools, enqueue=enqueue)
                receiver_answers.append((answer.status, answer.message))
            receive_s = time.perf_counter() - t0

            scale_up = ScaleUp(cfg, fleet, github, jit)
            refused: list[str] = []
            t1 = time.perf_counter()
            metric_lines = io.StringIO()  # the EMF lines a Lambda would print: refusals are read back from them
            with contextlib.redirect_stdout(metric_lines):
                handled, retried = _drain(sqs, queue, scale_up, refused)
            for line in metric_lines.getvalue().splitlines():
                emitted = json.loads(line)
                if "JobRefused" in emitted:
                    refused.append(f"{emitted['repository']}: {emitted['reason']}")
            scale_s = time.perf_counter() - t1

            instances = fleet.live()
            launched = [
                {
                    "job_id": int(i.tags.get("vpc-runners:job-id", "0")),
                    "instance_id": i.id,
                    "runner_name": i.tags.get("vpc-runners:runner-name"),
                    "jit_parameter": cfg.jit_parameter(i.id),
                }
                for i in instances
            ]
            details = (
                {
                    r["InstanceId"]: r
                    for res in ec2.describe_instances(InstanceIds=[i.id for i in instances])["Reservations"]
                    for r in res["Instances"]
                }
                if instances
                else {}
            )
            for row in launched:
                row["subnet"] = details[row["instance_id"]]["SubnetId"]
                row["instance_type"] = details[row["instance_id"]]["InstanceType"]
            count = max(len(launched), 1)
            return {
                "receiver": [{"status": s, "message": m} for s, m in receiver_answers],
                "launched": sorted(launched, key=lambda r: r["job_id"]),
                "back_to_queue": sorted(retried),
                "errors": errors.messages,
                "refused": refused,
                "calls_per_runner": {
                    "ec2": fleet.calls / count,
                    "github": github.calls / count,
                    "ssm": jit.calls / count,
                },
                "seconds_per_job": {"receiver": receive_s / max(jobs, 1), "scale_up": scale_s / max(handled, 1)},
            }
    finally:
        control_plane_log.removeHandler(errors)
        control_plane_log.propagate = True
        fake.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _drain(sqs: Any, queue: str, scale_up: Any, refused: list[str]) -> tuple[int, list[int]]:
    """One pass over the queue through the real batch handler: (messages handled, job ids retried).

    Retried messages are reported, not redelivered (Lambda would retry them)."""
    from runner.control_plane.scale_up import process_batch

    handled, retried = 0, []
    while batch := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        records = [{"messageId": m["MessageId"], "body": m["Body"], "receiptHandle": m["ReceiptHandle"]} for m in batch]
        handled += len(records)
        failures = process_batch(
            records, scale_up, lambda receipt, delay: None, lambda body, reason: refused.append(reason)
        )["batchItemFailures"]
        failed = {f["itemIdentifier"] for f in failures}
        retried += [json.loads(r["body"])["job_id"] for r in records if r["messageId"] in failed]
        for record in records:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=record["receiptHandle"])
    return handled, retried


def _print(result: dict[str, Any]) -> None:
    statuses = Counter(answer["status"] for answer in result["receiver"])
    print("receiver answered:", ", ".join(f"{n} x HTTP {status}" for status, n in sorted(statuses.items())))
    for answer in result["receiver"]:
        if answer["status"] != 202:
            print(f"  {answer['status']}: {answer['message']}")
    print(f"launched {len(result['launched'])} runner(s):")
    for row in result["launched"]:
        print(
            f"  job {row['job_id']}: {row['instance_id']} {row['instance_type']} in {row['subnet']}, "
            f"runner {row['runner_name']}, config in {row['jit_parameter']}"
        )
    if result["back_to_queue"]:
        print(f"back to the queue (retried when capacity frees): {len(result['back_to_queue'])} job(s)")
    if result["refused"]:
        print(f"refused: {len(result['refused'])} job(s)")
        for reason in result["refused"]:
            print(f"  {reason}")
    if result["errors"]:
        print(f"errored: {len(result['errors'])} job(s)")
        for message in result["errors"]:
            print(f"  {message}")
    calls = result["calls_per_runner"]
    print(
        f"API calls per launched runner: EC2 {calls['ec2']:.1f}, GitHub {calls['github']:.1f}, SSM {calls['ssm']:.1f}"
    )


if __name__ == "__main__":
    sys.exit(main())
