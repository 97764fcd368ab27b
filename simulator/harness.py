"""Replay a recorded ``workflow_job`` webhook through receiver, queue and scale-up, without AWS.

    python -m simulator.harness tests/control_plane/events/workflow_job_queued.json \\
        --jobs 25 --max-runners 10 --spot

AWS is moto (in process), GitHub is the fake API on loopback; the control plane code is the real
code the Lambdas run. Each launched instance then boots: the real user data runs under stub commands
(simulator/instance.py; ``--baked``: from a baked image), its job starts and finishes (GitHub's
deliveries, through the receiver), and it terminates, which frees capacity for jobs that waited.
Prints what was launched, what waited for capacity, the API calls per launched runner, every job that
errored (exit 1 when any did), and each job's trace from queued to instance gone. Needs the `dev` dependency
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
import math
import os
import sys
import tempfile
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
    parser.add_argument(
        "--no-boot", action="store_true", help="stop at the launch: no simulated boot, job or termination"
    )
    parser.add_argument("--baked", action="store_true", help="boot the simulated instances from a baked image")
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
        boot=not args.no_boot,
        baked=args.baked,
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
    boot: bool = True,
    baked: bool = False,
) -> dict[str, Any]:
    """Replay ``payload`` as ``jobs`` queued jobs. With ``boot``, each launched instance then runs the real
    user data (simulator/instance.py; from a baked image with ``baked``), its job starts and finishes
    (GitHub's in_progress and completed deliveries, through the receiver) and it terminates (EC2's state
    change, through the reaper's handler logic), which frees capacity for the jobs that waited."""
    from moto import mock_aws

    from runner.control_plane import config as config_module
    from runner.control_plane import trace
    from runner.control_plane.fleet import Fleet
    from runner.control_plane.github import AppAuth, GitHubClient
    from runner.control_plane.scale_up import JitStore, ScaleUp

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
    printed = io.StringIO()  # what the Lambdas would print: trace lines and metrics, read back below
    try:
        with mock_aws(), tempfile.TemporaryDirectory(prefix="harness-") as scratch, contextlib.redirect_stdout(printed):
            aws = fake_fleet_aws("us-east-1", "harness")
            cfg = config_module.load(
                {
                    "VPC_RUNNERS_FLEET": "harness",
                    "GITHUB_OWNER": owner,
                    "GITHUB_API_URL": fake.url,
                    "GITHUB_APP_ID": fake.app_id,
                    "GITHUB_APP_KEY_PARAMETER": "/unused",
                    "RUNNER_LABELS": json.dumps(labels),
                    "POOL_LABEL": pool_label,
                    "QUEUE_URL": aws.queue_url,
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
            fleet, jit = Fleet(aws.ec2, cfg), JitStore(aws.ssm, cfg)
            sim = _Simulation(payload, cfg, aws, fake, fleet, Path(scratch), baked=baked)

            t0 = time.perf_counter()
            receiver_answers = [sim.deliver("queued", sim.job_id(n), f"harness-{n}") for n in range(jobs)]
            receive_s = time.perf_counter() - t0

            refused: list[str] = []
            waited: set[int] = set()
            launched: dict[str, dict[str, Any]] = {}
            handled, scale_s, calls = 0, 0.0, {"ec2": 0, "github": 0, "ssm": 0}
            for _ in range(jobs + 1):  # each round frees capacity for at least one waiting job, or stops
                before = (fleet.calls, github.calls, jit.calls)
                t1 = time.perf_counter()
                count, retried = _drain(
                    # One Lambda invocation per round: its own count of live instances.
                    aws.sqs,
                    aws.queue_url,
                    ScaleUp(cfg, fleet, github, jit),
                    refused,
                )
                scale_s += time.perf_counter() - t1
                handled += count
                for key, now, then in zip(calls, (fleet.calls, github.calls, jit.calls), before, strict=True):
                    calls[key] += now - then
                waited |= {job_id for job_id, _ in retried}
                new = {i.id: i for i in fleet.live() if i.id not in launched}
                for instance in new.values():
                    launched[instance.id] = _row(aws, cfg, instance)
                if not boot or not retried or not new:
                    break
                for instance in new.values():
                    sim.run_instance(instance.id, int(instance.tags.get("vpc-runners:job-id", "0")))
                for _, receipt in retried:  # capacity freed: visible again for the next round
                    aws.sqs.change_message_visibility(
                        QueueUrl=aws.queue_url, ReceiptHandle=receipt, VisibilityTimeout=0
                    )
            if boot:
                for instance_id, row in launched.items():
                    if not sim.ran(instance_id):
                        sim.run_instance(instance_id, row["job_id"])
        lines = printed.getvalue().splitlines() + sim.instance_lines
        for line in lines:
            emitted = json.loads(line) if line.startswith("{") else {}
            if "JobRefused" in emitted:
                refused.append(f"{emitted['repository']}: {emitted['detail']}")
        traced = trace.parse(lines)
        timelines = [trace.timeline(traced, sim.job_id(n)) for n in range(jobs)]
        count = max(len(launched), 1)
        return {
            "receiver": [{"status": s, "message": m} for s, m in receiver_answers],
            "launched": sorted(launched.values(), key=lambda r: r["job_id"]),
            "back_to_queue": sorted(waited),
            "errors": errors.messages,
            "refused": refused,
            "calls_per_runner": {k: v / count for k, v in calls.items()},
            "seconds_per_job": {"receiver": receive_s / max(jobs, 1), "scale_up": scale_s / max(handled, 1)},
            "traces": [
                {
                    "job_id": t.job_id,
                    "instance_ids": list(t.instance_ids),
                    "marks": [{"milestone": m.milestone, "at": trace.iso(m.at)} for m in t.marks],
                    "intervals": t.intervals(),
                    "missing": list(t.missing),
                    "text": t.render(),
                }
                for t in timelines
            ],
            "latency": _percentiles(timelines),
            # What CloudWatch Logs would hold: the functions' output, and each instance's trace stream.
            "log_lines": {"functions": printed.getvalue().splitlines(), "instances": sim.lines_by_instance},
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


def _row(aws: FakeAws, cfg: Any, instance: Any) -> dict[str, Any]:
    detail = aws.ec2.describe_instances(InstanceIds=[instance.id])["Reservations"][0]["Instances"][0]
    return {
        "job_id": int(instance.tags.get("vpc-runners:job-id", "0")),
        "instance_id": instance.id,
        "runner_name": instance.tags.get("vpc-runners:runner-name"),
        "jit_parameter": cfg.jit_parameter(instance.id),
        "subnet": detail["SubnetId"],
        "instance_type": detail["InstanceType"],
    }


def _percentiles(timelines: list[Any]) -> dict[str, dict[str, float]]:
    """p50 and p95 of each interval over the simulated jobs (nearest rank)."""
    found: dict[str, dict[str, float]] = {}
    for name in ("QueueToStart", "BootTime", "InstallTime", "QueueWait", "LaunchTime"):
        values = sorted(t.intervals()[name] for t in timelines if name in t.intervals())
        if values:
            found[name] = {
                "p50": values[max(math.ceil(0.50 * len(values)) - 1, 0)],
                "p95": values[max(math.ceil(0.95 * len(values)) - 1, 0)],
            }
    return found


class _Simulation:
    """GitHub's and EC2's side of each job after its launch: the instance boots (the real user data under
    stubs), the runner takes the job, GitHub reports it started and finished, the instance terminates."""

    def __init__(
        self,
        payload: dict[str, Any],
        cfg: Any,
        aws: FakeAws,
        fake: Any,
        fleet: Any,
        scratch: Path,
        *,
        baked: bool,
    ) -> None:
        from .instance import Boot

        self.payload, self.cfg, self.aws, self.fake, self.fleet, self.scratch = payload, cfg, aws, fake, fleet, scratch
        self.instance_lines: list[str] = []
        self.lines_by_instance: dict[str, list[str]] = {}
        self._ran: set[str] = set()
        self._image: Boot | None = None
        if baked:
            self._image = Boot(scratch / "image")
            result = self._image.run(mode="bake", script_text=self._script(self._image))
            if result.returncode != 0:
                raise RuntimeError(f"baking the simulated image failed: {result.stderr[-500:]}")

    def job_id(self, n: int) -> int:
        base = self.payload.get("workflow_job", {}).get("id")
        return base + n if isinstance(base, int) else n

    def _script(self, boot: Any) -> str:
        from runner.control_plane.bootstrap import render

        from .instance import values

        return render(values(**self._values(boot)))

    def _values(self, boot: Any) -> dict[str, str]:
        return {
            "FLEET": self.cfg.fleet,
            "JIT_PARAMETER_PREFIX": self.cfg.jit_parameter_prefix,
            "RUNNER_SHA256": boot.sha256,
        }

    def deliver(self, action: str, job_id: int, delivery_id: str, **job_fields: Any) -> tuple[int, str]:
        """One signed workflow_job delivery through the real receiver (a queued one is enqueued)."""
        from runner.control_plane.webhook import JobMessage, receive

        event = copy.deepcopy(self.payload)
        event["action"] = action
        job = event.setdefault("workflow_job", {})
        if action == "queued":
            job.update(id=job_id, created_at=_iso(time.time()))
            self.fake.add_job(job_id, repo=event["repository"]["name"], run_id=job.get("run_id"))
            self._created = job["created_at"]
        else:
            job.update(id=job_id, **job_fields)
        body = json.dumps(event).encode()
        headers = {
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": delivery_id,
            "X-Hub-Signature-256": "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest(),
        }

        def enqueue(message: JobMessage) -> None:
            self.aws.sqs.send_message(
                QueueUrl=self.aws.queue_url,
                MessageBody=message.to_json(),
                MessageGroupId=str(message.job_id),
                MessageDeduplicationId=message.delivery_id,
            )

        answer = receive(headers, body, secret=SECRET, pools=self.cfg.pools, enqueue=enqueue)
        return answer.status, answer.message

    def ran(self, instance_id: str) -> bool:
        return instance_id in self._ran

    def run_instance(self, instance_id: str, job_id: int) -> None:
        from runner.control_plane.reaper import instance_gone

        from .instance import Boot

        self._ran.add(instance_id)
        boot = Boot(self.scratch / instance_id)
        if self._image is not None:
            self._image.copy_image_to(boot)
        result = boot.run(instance_id=instance_id, script_text=self._script(boot))
        self.lines_by_instance[instance_id] = boot.trace_lines()
        self.instance_lines += self.lines_by_instance[instance_id]
        times = boot.job_times()
        if times is not None:
            created = self.fake.jobs.get(job_id, {}).get("created_at")
            runner = self.fake.runner_named(self.cfg.runner_name(instance_id))
            started, finished = times
            self.fake.set_job_status(job_id, "in_progress", runner=runner)
            common = {
                "created_at": created,
                "started_at": _iso(started),
                "runner_name": self.cfg.runner_name(instance_id),
            }
            self.deliver("in_progress", job_id, f"harness-start-{job_id}", status="in_progress", **common)
            conclusion = "success" if result.returncode == 0 else "failure"
            self.fake.set_job_status(job_id, "completed", conclusion, _iso(finished))
            self.deliver(
                "completed",
                job_id,
                f"harness-end-{job_id}",
                status="completed",
                conclusion=conclusion,
                completed_at=_iso(finished),
                **common,
            )
            if runner is not None:  # an ephemeral runner unregisters after its job
                self.fake.runners.pop(runner.id, None)
        # Shutting down terminates the instance; EC2 reports the state change to the reaper.
        self.aws.ec2.terminate_instances(InstanceIds=[instance_id])
        instance_gone(self.cfg, self.fleet, instance_id, time.time())


def _iso(epoch: float) -> str:
    from runner.control_plane.trace import iso

    return iso(epoch)


def _drain(sqs: Any, queue: str, scale_up: Any, refused: list[str]) -> tuple[int, list[tuple[int, str]]]:
    """One pass over the queue through the real batch handler: (messages handled, (job id, receipt) of
    each message that waits for capacity). Those stay in the queue, invisible until the next round;
    other failures (errors) are reported and deleted (Lambda would retry them)."""
    from runner.control_plane.scale_up import process_batch

    handled, waiting = 0, []
    while batch := sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageSystemAttributeNames=["SentTimestamp"]
    ).get("Messages", []):
        records = [
            {
                "messageId": m["MessageId"],
                "body": m["Body"],
                "receiptHandle": m["ReceiptHandle"],
                "attributes": m.get("Attributes", {}),
            }
            for m in batch
        ]
        handled += len(records)
        requeued: set[str] = set()

        def requeue(receipt: str, delay_s: int, requeued: set[str] = requeued) -> None:
            requeued.add(receipt)

        process_batch(records, scale_up, requeue, lambda body, reason: refused.append(reason))
        for record in records:
            if record["receiptHandle"] in requeued:
                waiting.append((json.loads(record["body"])["job_id"], record["receiptHandle"]))
            else:
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=record["receiptHandle"])
    return handled, waiting


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
    if result["traces"]:
        print("job traces (the lines the Lambdas and instances printed, assembled by runner/control_plane/trace.py):")
        for item in result["traces"]:
            print(item["text"])
    for name, p in result["latency"].items():
        print(f"{name}: p50 {p['p50']:.3f} s, p95 {p['p95']:.3f} s (simulated: stubs stand in for EC2 and downloads)")


if __name__ == "__main__":
    sys.exit(main())
