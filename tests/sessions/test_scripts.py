"""scripts/runner-shell and scripts/db-tunnel, run for real against moto on loopback.

A stub `aws` on PATH records how the session would be opened (no AWS account here); everything
before that, finding the runner and the database and checking the local tools, is the real code.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from tests.fix_cli import REPO, clean_env
from tests.fix_pg import AWS_REGION, aws_env


@pytest.fixture
def tools(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text('#!/bin/bash\nprintf "%s\\n" "$@" > "$AWS_ARGS"\n')
    (bin_dir / "session-manager-plugin").write_text("#!/bin/bash\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


@pytest.fixture
def fleet(moto_server: str) -> dict[str, str]:
    ec2 = boto3.client(
        "ec2", region_name=AWS_REGION, endpoint_url=moto_server, aws_access_key_id="x", aws_secret_access_key="x"
    )
    ids = {}
    for job in ("101", "102"):
        ids[job] = ec2.run_instances(
            ImageId="ami-0123456789abcdef0",
            MinCount=1,
            MaxCount=1,
            TagSpecifications=[
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "vpc-runners:fleet", "Value": "prod"},
                        {"Key": "vpc-runners:job-id", "Value": job},
                        {"Key": "vpc-runners:repository", "Value": "acme/shop"},
                    ],
                }
            ],
        )["Instances"][0]["InstanceId"]
        time.sleep(1.1)  # distinct launch times: 102 is the newest
    ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)  # not a runner
    boto3.client(
        "ssm", region_name=AWS_REGION, endpoint_url=moto_server, aws_access_key_id="x", aws_secret_access_key="x"
    ).put_parameter(
        Name="/vpc-runners/prod/databases/orders",
        Type="String",
        Value=json.dumps(
            {
                "host": "orders.c9akciq32.us-east-1.rds.amazonaws.com",
                "port": 5432,
                "dbname": "orders",
                "user": "migrator",
                "region": AWS_REGION,
            }
        ),
    )
    return ids


def run(
    script: str,
    *args: str,
    tools: Path,
    moto_server: str,
    tmp_path: Path,
    with_plugin: bool = True,
    credentials: bool = True,
) -> tuple[int, str, list[str]]:
    env = clean_env(
        {
            **(
                aws_env()
                if credentials
                else {
                    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
                    "AWS_CONFIG_FILE": "/nonexistent",
                    "AWS_EC2_METADATA_DISABLED": "true",
                }
            ),
            "AWS_REGION": AWS_REGION,
            "AWS_ENDPOINT_URL": moto_server,
            "AWS_ARGS": str(tmp_path / "aws-args"),
            "PATH": f"{tools}:{os.environ['PATH']}",
        }
    )
    if credentials is False:
        # moto still answers the EC2/SSM lookups with any signature; only the credential check should fail.
        env.update({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""})
    if not with_plugin:
        (tools / "session-manager-plugin").unlink()
    proc = subprocess.run(
        [str(REPO / "scripts" / script), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    recorded = (tmp_path / "aws-args").read_text().splitlines() if (tmp_path / "aws-args").exists() else []
    return proc.returncode, proc.stdout + proc.stderr, recorded


def test_runner_shell_lists_runners_of_the_fleet(tools, fleet, moto_server, tmp_path):
    code, output, recorded = run(
        "runner-shell", "--list", "--fleet", "prod", tools=tools, moto_server=moto_server, tmp_path=tmp_path
    )
    assert code == 0 and recorded == []
    lines = output.strip().splitlines()
    assert [line.split()[0] for line in lines] == [fleet["102"], fleet["101"]]  # newest first, only runners
    assert "job 102" in lines[0] and "acme/shop" in lines[0]


@pytest.mark.parametrize(("args", "job"), [((), "102"), (("--job", "101"), "101"), (("--instance", None), "101")])
def test_runner_shell_opens_a_session_on_the_chosen_runner(tools, fleet, moto_server, tmp_path, args, job):
    args = tuple(fleet["101"] if a is None else a for a in args)
    code, _, recorded = run(
        "runner-shell", "--fleet", "prod", *args, tools=tools, moto_server=moto_server, tmp_path=tmp_path
    )
    assert code == 0
    assert recorded == ["ssm", "start-session", "--region", AWS_REGION, "--target", fleet[job]]


def test_db_tunnel_forwards_to_the_database_through_a_runner(tools, fleet, moto_server, tmp_path):
    code, output, recorded = run(
        "db-tunnel", "--fleet", "prod", "--database", "orders", tools=tools, moto_server=moto_server, tmp_path=tmp_path
    )
    assert code == 0
    assert recorded[:8] == [
        "ssm",
        "start-session",
        "--region",
        AWS_REGION,
        "--target",
        fleet["102"],
        "--document-name",
        "AWS-StartPortForwardingSessionToRemoteHost",
    ]
    assert json.loads(recorded[9]) == {
        "host": ["orders.c9akciq32.us-east-1.rds.amazonaws.com"],
        "portNumber": ["5432"],
        "localPortNumber": ["5432"],
    }
    assert "vpc-migrate psql --ssm-parameter /vpc-runners/prod/databases/orders --hostaddr 127.0.0.1" in output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("runner-shell", "--fleet", "prod", "--job", "999"), 2, "no running runner is on job 999"),
        (("runner-shell", "--fleet", "staging"), 2, "no running vpc-runners instance found"),
        (("db-tunnel", "--fleet", "prod", "--database", "ledger"), 2, "/vpc-runners/prod/databases/ledger not found"),
        (("db-tunnel", "--database", "orders"), 2, "--database needs --fleet"),
    ],
)
def test_clear_errors_for_what_is_not_there(tools, fleet, moto_server, tmp_path, args, code, message):
    got, output, recorded = run(*args, tools=tools, moto_server=moto_server, tmp_path=tmp_path)
    assert (got, recorded) == (code, []) and message in output


def test_missing_plugin_or_credentials_are_named(tools, fleet, moto_server, tmp_path):
    code, output, recorded = run(
        "runner-shell", "--fleet", "prod", tools=tools, moto_server=moto_server, tmp_path=tmp_path, with_plugin=False
    )
    assert (code, recorded) == (3, []) and "Session Manager plugin is not installed" in output
    code, output, _ = run("db-tunnel", "--help", tools=tools, moto_server=moto_server, tmp_path=tmp_path)
    assert code == 0 and "--local-port" in output
