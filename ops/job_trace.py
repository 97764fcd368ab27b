"""One job's timeline, from CloudWatch Logs (`scripts/job-trace JOB_ID --stack NAME`).

Reads the trace lines (runner/control_plane/trace.py) the stack's functions wrote for the job (webhook,
scale-up, reaper log groups), then the lines its instance wrote (the runners log group, stream
``<instance id>/trace``), and prints them as one timeline: each milestone, the time since the job was
created, the step before it, the intervals, and what is missing (a job still running has no
``finished``). Runs with the caller's own AWS credentials; needs (PERMISSIONS) logs:FilterLogEvents on those
log groups.

Exit codes: 0 the job's trace printed; 1 no trace line for that job in the time window; 2 bad arguments;
3 AWS refused or unreachable.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from runner.control_plane import trace


class Exit(enum.IntEnum):
    FOUND = 0
    NOT_FOUND = 1
    BAD_INPUT = 2
    AWS_ERROR = 3


FUNCTIONS = ("webhook", "scale-up", "reaper")
PERMISSIONS = ("logs:FilterLogEvents",)  # what its calls need: tests/control_plane/test_ops_permissions.py


def log_groups(stack: str) -> tuple[list[str], str]:
    """(the functions' log groups, the runners' log group) of stack ``stack``, as the stack names them."""
    return [f"/aws/lambda/vpc-runners-{stack}-{f}" for f in FUNCTIONS], f"/vpc-runners/{stack}/runners"


def fetch(logs: Any, group: str, start_ms: int, **query: Any) -> list[str]:
    """Every message of ``group`` since ``start_ms`` matching ``query`` (a filterPattern or stream names)."""
    found: list[str] = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group, startTime=start_ms, **query):
            found += [e["message"] for e in page.get("events", [])]
    except logs.exceptions.ResourceNotFoundException:
        return []  # a function that never ran has no log group yet
    return found


def job_trace(logs: Any, stack: str, job_id: int, *, since_s: float, now: float | None = None) -> trace.Timeline:
    start_ms = int(((now if now is not None else time.time()) - since_s) * 1000)
    functions, runners = log_groups(stack)
    lines: list[str] = []
    for group in functions:
        # CloudWatch's JSON filter: only this job's lines cross the network; the match is re-checked here.
        lines += fetch(logs, group, start_ms, filterPattern=f"{{ $.job_id = {job_id} }}")
    first = trace.timeline(trace.parse(lines), job_id)
    if first.instance_ids:
        streams = [f"{i}/trace" for i in first.instance_ids]
        lines += fetch(logs, runners, start_ms, logStreamNames=streams)
    return trace.timeline(trace.parse(lines), job_id)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="job-trace", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("job_id", help="the job's id: the number at the end of its URL (.../job/JOB_ID)")
    parser.add_argument("--stack", required=True, help="the Pulumi stack (fleet) that ran the job")
    parser.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    parser.add_argument("--since", type=float, default=24, metavar="HOURS", help="how far back to look (24)")
    parser.add_argument("--json", action="store_true", help="print the timeline as JSON")
    args = parser.parse_args(argv)
    if not args.job_id.isdigit():
        print(f"job-trace: {args.job_id!r} is not a job id (a number)", file=sys.stderr)
        return Exit.BAD_INPUT
    if args.since <= 0:
        print("job-trace: --since must be a positive number of hours", file=sys.stderr)
        return Exit.BAD_INPUT
    try:
        logs = boto3.client("logs", region_name=args.region)
        timeline = job_trace(logs, args.stack, int(args.job_id), since_s=args.since * 3600)
    except (BotoCoreError, ClientError) as err:
        print(f"job-trace: CloudWatch Logs: {err}", file=sys.stderr)
        return Exit.AWS_ERROR
    if not timeline.marks:
        print(
            f"job-trace: no trace of job {args.job_id} in stack {args.stack!r} in the last {args.since:g} h "
            "(another stack, or older?)",
            file=sys.stderr,
        )
        return Exit.NOT_FOUND
    if args.json:
        print(
            json.dumps(
                {
                    "job_id": timeline.job_id,
                    "instance_ids": list(timeline.instance_ids),
                    "marks": [{"milestone": m.milestone, "at": trace.iso(m.at)} for m in timeline.marks],
                    "intervals": timeline.intervals(),
                    "missing": list(timeline.missing),
                },
                indent=2,
            )
        )
    else:
        print(timeline.render())
        for name, seconds in timeline.intervals().items():
            print(f"  {name}: {seconds:.3f} s")
    return Exit.FOUND


if __name__ == "__main__":
    sys.exit(main())
