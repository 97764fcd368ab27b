"""scripts/job-trace: one job's timeline read back from CloudWatch Logs (moto), the same timeline the
harness assembled from what its simulated functions and instance printed."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from ops import job_trace
from simulator import harness
from tests.fix_control_plane import EVENTS, moto_account

REPO = Path(__file__).resolve().parents[2]


def simulated(jobs: int = 2) -> dict[str, Any]:
    payload = json.loads((EVENTS / "workflow_job_queued.json").read_text())
    return harness.replay(
        payload,
        jobs=jobs,
        max_runners=5,
        spot=False,
        labels=["self-hosted", "linux", "x64", "vpc"],
        pool_label="vpc",
        instance_types=["t3.small"],
    )


def ship(logs: Any, stack: str, result: dict[str, Any]) -> None:
    """Put the simulated lines where the stack's log groups would hold them."""
    functions, runners = job_trace.log_groups(stack)
    for group in [*functions, runners]:
        logs.create_log_group(logGroupName=group)

    def put(group: str, stream: str, lines: list[str]) -> None:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in lines]
        if events:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    put(functions[0], "2026/11/22/[$LATEST]abc", ["START RequestId: x", *result["log_lines"]["functions"]])
    for instance_id, lines in result["log_lines"]["instances"].items():
        put(runners, f"{instance_id}/trace", lines)
        put(runners, f"{instance_id}/bootstrap", ["not a trace line"])


@pytest.fixture
def logged() -> dict[str, Any]:
    return simulated()


def test_the_timeline_from_cloudwatch_is_the_harness_timeline(logged, monkeypatch: pytest.MonkeyPatch, capsys):
    with moto_account(monkeypatch):
        ship(boto3.client("logs"), "prod", logged)
        for job in logged["traces"]:
            assert job_trace.main([str(job["job_id"]), "--stack", "prod", "--json"]) == job_trace.Exit.FOUND
            read = json.loads(capsys.readouterr().out)
            assert read["marks"] == job["marks"] and read["missing"] == []
            assert read["instance_ids"] == job["instance_ids"]
        assert job_trace.main(["424242", "--stack", "prod"]) == job_trace.Exit.NOT_FOUND
        assert "no trace of job 424242" in capsys.readouterr().err
        assert job_trace.main(["1", "--stack", "never-deployed"]) == job_trace.Exit.NOT_FOUND


@pytest.mark.parametrize(
    ("argv", "problem"), [(["12x", "--stack", "p"], "not a job id"), (["1", "--stack", "p", "--since", "0"], "--since")]
)
def test_bad_arguments_are_exit_2(argv, problem, capsys):
    assert job_trace.main(argv) == job_trace.Exit.BAD_INPUT
    assert problem in capsys.readouterr().err


def test_the_script_reads_a_cloudwatch_endpoint(logged, moto_server: str):
    logs = boto3.client(
        "logs", region_name="us-east-1", endpoint_url=moto_server, aws_access_key_id="t", aws_secret_access_key="t"
    )
    ship(logs, "prod", logged)
    job = logged["traces"][0]
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "t",
        "AWS_SECRET_ACCESS_KEY": "t",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    done = subprocess.run(
        [str(REPO / "scripts" / "job-trace"), str(job["job_id"]), "--stack", "prod"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"job {job['job_id']} on {job['instance_ids'][0]}")
    assert "QueueToStart:" in done.stdout and "missing" not in done.stdout
    denied = subprocess.run(
        [str(REPO / "scripts" / "job-trace"), "1", "--stack", "prod"],
        capture_output=True,
        text=True,
        env={**env, "AWS_ENDPOINT_URL": "http://127.0.0.1:9"},
        check=False,
    )
    assert denied.returncode == 3 and "CloudWatch Logs" in denied.stderr
