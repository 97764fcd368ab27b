"""--hold-on-failure: keep a failed runner alive for a while, so a developer can open a session on it.

On a kit runner the bootstrap puts two variables in every job's environment: the instance id and a
hold file. Writing the hold file makes the bootstrap stop the job's processes and wait (up to the
stack's ceiling after the job) before the instance terminates itself. The reaper keeps a held instance
only while GitHub reports its job failed, and at most the ceiling after the job ended, so a job cannot
keep its instance (and its database access) alive by asking. The instance role grants nothing for
this: no tag, no API call. The step summary and the log get the exact command to open a session.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from .output import Reporter

INSTANCE_ENV = "VPC_RUNNER_INSTANCE_ID"
HOLD_FILE_ENV = "VPC_RUNNER_HOLD_FILE"


def hold_runner(duration_s: float, environ: Mapping[str, str], reporter: Reporter) -> int | None:
    """Ask for the hold; returns the epoch second it lasts until, or None when there is nothing to hold."""
    instance, hold_file = environ.get(INSTANCE_ENV), environ.get(HOLD_FILE_ENV)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if not instance or not hold_file:
        reporter.warning("--hold-on-failure: not on a vpc-runner-kit runner, so there is no instance to keep")
        return None
    until = int(time.time() + duration_s)
    Path(hold_file).write_text(f"{until}\n")
    when = datetime.fromtimestamp(until, UTC).strftime("%H:%M UTC")
    command = f"aws ssm start-session --target {instance}" + (f" --region {region}" if region else "")
    reporter.warning(f"holding this runner until {when} for debugging: {command}")
    repo = environ.get("GITHUB_REPOSITORY", "")
    reporter.summary(
        "\n".join(
            [
                "### 🔍 The runner is held for debugging",
                "",
                f"This runner ({instance}) stays up until **{when}**, then terminates as usual. Open a shell on it:",
                "",
                "```sh",
                command,
                f"# or, from a checkout of vpc-runner-kit: scripts/runner-shell --instance {instance}",
                "```",
                "",
                "On the runner: `sudo -iu runner`, then `vpc-migrate doctor` and `vpc-migrate status`"
                + (f" in the checkout of {repo} under /opt/actions-runner/_work." if repo else "."),
            ]
        )
    )
    return until
