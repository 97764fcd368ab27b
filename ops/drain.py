"""Drain a stack before `pulumi destroy` (`scripts/drain --stack NAME`): nothing is left behind.

Instances, JIT configs and GitHub registrations are created at run time, not by Pulumi, so `pulumi
destroy` alone would leave running runners whose role and logs it deletes. This:
  1. stops launches: the scale-up function's reserved concurrency goes to 0 (queued jobs stay queued);
  2. invokes the reaper with ``{"drain": true}``: every instance whose runner is not busy is terminated,
     with its JIT config and its registration (``--now``: busy ones too, cancelling their jobs);
  3. repeats every 30 s until no instance is left, or ``--wait`` runs out; it is drained only once a pass
     removes nothing and scale-up's timeout has passed since launches stopped (an invocation already
     running when they stopped may still land an instance).
To resume instead, `pulumi up --refresh` sets the scale-up concurrency back to the declared 1. Runs with
the caller's AWS credentials; needs (PERMISSIONS) lambda:PutFunctionConcurrency on the scale-up function and
lambda:InvokeFunction on the reaper.

Exit codes: 0 drained; 1 instances still busy, or registrations GitHub still shows busy, when --wait ran
out (listed); 2 bad arguments; 3 AWS refused
or unreachable, or the reaper failed (GitHub unreachable: nothing is terminated then).
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError


class Exit(enum.IntEnum):
    DRAINED = 0
    STILL_BUSY = 1
    BAD_INPUT = 2
    AWS_ERROR = 3


class ReaperFailed(Exception):
    pass


PERMISSIONS = ("lambda:PutFunctionConcurrency", "lambda:InvokeFunction")  # tests/control_plane/test_ops_permissions.py
SCALE_UP_TIMEOUT_S = 60  # infra/control_plane.py: how long a launch already under way can still take


def function_name(stack: str, purpose: str) -> str:
    return f"vpc-runners-{stack}-{purpose}"


def invoke_reaper(lambda_client: Any, stack: str, payload: dict[str, Any]) -> dict[str, Any]:
    answer = lambda_client.invoke(FunctionName=function_name(stack, "reaper"), Payload=json.dumps(payload).encode())
    body = json.loads(answer["Payload"].read() or b"{}")
    if answer.get("FunctionError"):
        raise ReaperFailed(f"the reaper failed: {body.get('errorMessage', body)}")
    report: dict[str, Any] = body
    return report


def drain(
    lambda_client: Any,
    stack: str,
    *,
    now: bool,
    wait_s: float,
    invoke: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> dict[str, Any]:
    """Stop launches, then reap until nothing is left; the last report, with everything it removed."""
    lambda_client.put_function_concurrency(
        FunctionName=function_name(stack, "scale-up"), ReservedConcurrentExecutions=0
    )
    log(f"drain: launches stopped ({function_name(stack, 'scale-up')} reserved concurrency 0)")
    call = invoke or (lambda payload: invoke_reaper(lambda_client, stack, payload))
    removed: dict[str, list[str]] = {"terminated": [], "runners_deleted": [], "parameters_deleted": []}
    stopped = clock()
    deadline, settled_at = stopped + wait_s, stopped + SCALE_UP_TIMEOUT_S
    while True:
        report = call({"drain": "now" if now else True})
        if report.get("error"):
            raise ReaperFailed(report["error"])
        found = {key: list(report.get(key, [])) for key in removed}
        for key, names in found.items():
            removed[key] += names
        kept, left = report.get("kept", {}), report.get("runners_left", [])
        log(f"drain: {len(found['terminated'])} terminated, {len(kept)} busy, {len(left)} registrations left")
        if kept or left:  # busy runners, or registrations GitHub still shows busy: up to --wait
            if clock() >= deadline:
                return {**removed, "kept": kept, "runners_left": left}
            sleep(min(30.0, deadline - clock()))
        elif not any(found.values()) and clock() >= settled_at:
            return {**removed, "kept": {}, "runners_left": []}
        else:  # one more pass, once a launch under way when they stopped can have landed
            sleep(min(30.0, max(settled_at - clock(), 0.0)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="drain", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stack", required=True, help="the Pulumi stack (fleet) to drain")
    parser.add_argument("--region", help="the stack's region (default: the AWS configuration's)")
    parser.add_argument("--now", action="store_true", help="terminate busy runners too (their jobs fail)")
    parser.add_argument("--wait", type=float, default=3600, metavar="SECONDS", help="for busy runners (3600)")
    args = parser.parse_args(argv)
    if args.wait < 0:
        print("drain: --wait must be 0 or more seconds", file=sys.stderr)
        return Exit.BAD_INPUT
    try:
        result = drain(boto3.client("lambda", region_name=args.region), args.stack, now=args.now, wait_s=args.wait)
    except (BotoCoreError, ClientError, ReaperFailed) as err:
        print(f"drain: {err}", file=sys.stderr)
        return Exit.AWS_ERROR
    print(json.dumps(result, indent=2))
    if result["kept"]:
        print(f"drain: still busy: {', '.join(sorted(result['kept']))} (wait longer, or --now)", file=sys.stderr)
        return Exit.STILL_BUSY
    if result["runners_left"]:
        print(
            f"drain: GitHub still shows these runners busy, their instances gone: {', '.join(result['runners_left'])}"
            " (run drain again in a few minutes, once GitHub has failed their jobs)",
            file=sys.stderr,
        )
        return Exit.STILL_BUSY
    print(f"drain: nothing left of stack {args.stack!r}'s runners: `pulumi destroy` now", file=sys.stderr)
    return Exit.DRAINED


if __name__ == "__main__":
    sys.exit(main())
