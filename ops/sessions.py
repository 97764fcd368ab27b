"""Debugging from a laptop through Session Manager: a shell on a runner, or a tunnel to a database.

Used by ``scripts/runner-shell`` and ``scripts/db-tunnel``. Runners are found by the fleet tag the
control plane puts on them; sessions are opened with ``aws ssm start-session``, which needs the
AWS CLI and the session-manager plugin locally, and on the instance Session Manager's own channel
permissions (the stack grants exactly those). No bastion, no SSH, no inbound rule anywhere.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NoReturn

from runner.control_plane.config import TAG_FLEET, TAG_JOB_ID, TAG_REPOSITORY


class Exit(enum.IntEnum):
    OK = 0
    BAD_INPUT = 2  # no such runner, job or database
    CANNOT_CONNECT = 3  # AWS CLI, plugin or credentials missing


class SessionError(Exception):
    def __init__(self, message: str, code: Exit) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Runner:
    instance_id: str
    fleet: str
    job_id: str
    repository: str
    launched: datetime

    def line(self) -> str:
        return (
            f"{self.instance_id}  {self.fleet:<12} job {self.job_id or '-':<12} {self.repository or '-':<30} "
            f"up since {self.launched:%Y-%m-%d %H:%M}"
        )


def find_runners(ec2: Any, fleet: str | None) -> list[Runner]:
    """Running runner instances, newest first."""
    filters = [{"Name": "instance-state-name", "Values": ["running"]}]
    filters.append(
        {"Name": f"tag:{TAG_FLEET}", "Values": [fleet]} if fleet else {"Name": "tag-key", "Values": [TAG_FLEET]}
    )
    found = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            for i in reservation["Instances"]:
                tags = {t["Key"]: t["Value"] for t in i.get("Tags", [])}
                found.append(
                    Runner(
                        i["InstanceId"],
                        tags.get(TAG_FLEET, ""),
                        tags.get(TAG_JOB_ID, ""),
                        tags.get(TAG_REPOSITORY, ""),
                        i["LaunchTime"],
                    )
                )
    return sorted(found, key=lambda r: r.launched, reverse=True)


def choose(runners: list[Runner], *, instance: str | None = None, job: str | None = None) -> Runner:
    if not runners:
        raise SessionError(
            "no running vpc-runners instance found (runners live only while a job runs; "
            "use --hold-on-failure to keep a failed one)",
            Exit.BAD_INPUT,
        )
    if instance:
        match = [r for r in runners if r.instance_id == instance]
        if not match:
            raise SessionError(f"{instance} is not a running vpc-runners instance", Exit.BAD_INPUT)
        return match[0]
    if job:
        match = [r for r in runners if r.job_id == job]
        if not match:
            raise SessionError(f"no running runner is on job {job}", Exit.BAD_INPUT)
        return match[0]
    return runners[0]


def database_coordinates(ssm: Any, parameter: str) -> dict[str, Any]:
    try:
        value = ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        raise SessionError(
            f"SSM parameter {parameter} not found (the stack's databaseParameters output lists them)", Exit.BAD_INPUT
        ) from None
    data: dict[str, Any] = json.loads(value)
    return data


def preflight() -> None:
    """The local tools a session needs, with what to do when one is missing."""
    if shutil.which("aws") is None:
        raise SessionError("the AWS CLI (aws) is not installed: https://docs.aws.amazon.com/cli/", Exit.CANNOT_CONNECT)
    if shutil.which("session-manager-plugin") is None:
        raise SessionError(
            "the Session Manager plugin is not installed: https://docs.aws.amazon.com/systems-manager/"
            "latest/userguide/session-manager-working-with-install-plugin.html",
            Exit.CANNOT_CONNECT,
        )
    import boto3

    if boto3.session.Session().get_credentials() is None:
        raise SessionError("no AWS credentials: run `aws sso login` (or set AWS_PROFILE) first", Exit.CANNOT_CONNECT)


def shell_command(runner: Runner, region: str) -> list[str]:
    return ["aws", "ssm", "start-session", "--region", region, "--target", runner.instance_id]


def tunnel_command(runner: Runner, region: str, host: str, port: int, local_port: int) -> list[str]:
    parameters = {"host": [host], "portNumber": [str(port)], "localPortNumber": [str(local_port)]}
    return [
        "aws",
        "ssm",
        "start-session",
        "--region",
        region,
        "--target",
        runner.instance_id,
        "--document-name",
        "AWS-StartPortForwardingSessionToRemoteHost",
        "--parameters",
        json.dumps(parameters),
    ]


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fleet",
        default=os.environ.get("VPC_RUNNERS_FLEET"),
        help="the stack name (tag vpc-runners:fleet); default: any fleet [env VPC_RUNNERS_FLEET]",
    )
    parser.add_argument(
        "--region",
        default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
        help="AWS region [env AWS_REGION]",
    )
    parser.add_argument("--instance", help="this runner instance (i-...)")
    parser.add_argument("--job", help="the runner working on this GitHub job id")


def _clients(region: str | None) -> tuple[Any, Any, str]:
    if not region:
        raise SessionError("no region: pass --region or set AWS_REGION", Exit.BAD_INPUT)
    import boto3

    return boto3.client("ec2", region_name=region), boto3.client("ssm", region_name=region), region


def runner_shell_main(argv: Sequence[str] | None = None) -> int:
    """Open a shell on a live runner through Session Manager (newest, or --instance/--job); --list to list."""
    parser = argparse.ArgumentParser(prog="runner-shell", description=runner_shell_main.__doc__)
    _common(parser)
    parser.add_argument("--list", action="store_true", help="list live runners and exit")
    args = parser.parse_args(argv)
    try:
        ec2, _, region = _clients(args.region)
        runners = find_runners(ec2, args.fleet)
        if args.list:
            print("\n".join(r.line() for r in runners) or "no running vpc-runners instance")
            return Exit.OK
        runner = choose(runners, instance=args.instance, job=args.job)
        preflight()
    except SessionError as err:
        print(f"runner-shell: {err}", file=sys.stderr)
        return err.code
    print(f"opening a session on {runner.line()}", file=sys.stderr)
    return _replace_process(shell_command(runner, region))


def db_tunnel_main(argv: Sequence[str] | None = None) -> int:
    """Forward a local port through a runner to a database, then use vpc-migrate or psql locally."""
    parser = argparse.ArgumentParser(prog="db-tunnel", description=db_tunnel_main.__doc__)
    _common(parser)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--database", help="a database name from the stack (needs --fleet)")
    target.add_argument("--ssm-parameter", help="the database's connection parameter")
    parser.add_argument("--local-port", type=int, help="local port (default: the database's port)")
    args = parser.parse_args(argv)
    try:
        if args.database and not args.fleet:
            raise SessionError("--database needs --fleet (or use --ssm-parameter)", Exit.BAD_INPUT)
        ec2, ssm, region = _clients(args.region)
        parameter = args.ssm_parameter or f"/vpc-runners/{args.fleet}/databases/{args.database}"
        db = database_coordinates(ssm, parameter)
        runner = choose(find_runners(ec2, args.fleet), instance=args.instance, job=args.job)
        preflight()
    except SessionError as err:
        print(f"db-tunnel: {err}", file=sys.stderr)
        return err.code
    port = int(db.get("port", 5432))
    local = args.local_port or port
    print(
        f"forwarding 127.0.0.1:{local} -> {db['host']}:{port} through {runner.instance_id}. In another terminal:\n"
        f"  vpc-migrate psql --ssm-parameter {parameter} --hostaddr 127.0.0.1"
        + ("" if local == port else f" --port {local}")
        + "\n(the IAM token and TLS verify-full use the real host name; only TCP goes through the tunnel)",
        file=sys.stderr,
    )
    return _replace_process(tunnel_command(runner, region, db["host"], port, local))


def _replace_process(command: list[str]) -> NoReturn:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvp(command[0], command)  # the session owns the terminal and its signals from here
