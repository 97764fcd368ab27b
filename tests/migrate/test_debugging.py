"""`vpc-migrate doctor` and `--hold-on-failure`, against the real server (and moto on loopback)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3

from tests.fix_cli import Migrations, finish, run_cli, start_cli
from tests.fix_pg import AWS_REGION, Database, IamUser, aws_env

NO_AWS = {
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def doctor(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, dict]]:
    result = run_cli("doctor", "--json", *args, env=env)
    return result.code, {c["name"]: c for c in json.loads(result.out)}


def test_doctor_all_green_on_a_healthy_database(database: Database):
    code, checks = doctor("--database-url", database.url)
    assert code == 0
    assert {n: c["status"] for n, c in checks.items()} == {
        "settings": "ok",
        "DNS": "ok",
        "TCP": "ok",
        "TLS trust": "n/a",
        "AWS credentials": "n/a",
        "IAM token": "n/a",
        "secret": "n/a",
        "login": "ok",
        "history table": "ok",
        "migration lock": "ok",
    }
    assert "not created yet" in checks["history table"]["detail"] and checks["migration lock"]["detail"] == "free"


def test_doctor_with_iam_checks_credentials_token_and_tls(iam_user: IamUser):
    code, checks = doctor(*iam_user.cli_args(), env=aws_env())
    assert code == 0, checks
    assert checks["AWS credentials"]["detail"] == "found (env)"
    assert "CA certificate(s)" in checks["TLS trust"]["detail"] and "TLS" in checks["login"]["detail"]


def test_doctor_names_the_first_broken_link(iam_user: IamUser, tmp_path: Path):
    code, checks = doctor("--iam", "--host", "db.nowhere.invalid", "--user", "u", "--region", AWS_REGION, env=aws_env())
    assert code == 3 and checks["DNS"]["status"] == "failed"
    assert all(checks[n]["status"] == "skipped" for n in ("TCP", "login", "migration lock"))

    args = iam_user.cli_args()
    args[args.index("--sslrootcert") + 1] = str(tmp_path / "absent.pem")
    code, checks = doctor(*args, env=aws_env())
    assert code == 3 and checks["TCP"]["status"] == "ok" and checks["TLS trust"]["status"] == "failed"

    code, checks = doctor(*iam_user.cli_args(), env=NO_AWS)
    assert code == 3 and checks["AWS credentials"]["status"] == "failed"
    assert "instance role" in checks["AWS credentials"]["detail"]

    code, checks = doctor(*iam_user.cli_args(region="eu-west-1"), env=aws_env())
    assert code == 3 and checks["login"]["status"] == "failed" and "GRANT rds_iam" in checks["login"]["detail"]


def test_doctor_reports_who_holds_the_lock(database: Database, migrations: Migrations):
    migrations.write("0001_slow.sql", "SELECT pg_sleep(2);\n")
    running = start_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    database.wait_until_running("SELECT pg_sleep(2)")
    code, checks = doctor("--database-url", database.url)
    assert code == 0 and checks["migration lock"]["detail"].startswith("held by pid")
    assert "vpc-migrate lock" in checks["migration lock"]["detail"]
    assert finish(running).code == 0
    human = run_cli("doctor", "--database-url", database.url)
    assert human.code == 0 and "✓ login" in human.out and "1 record(s), latest version 1" in human.out


def test_hold_on_failure_keeps_a_kit_runner_and_says_how_to_get_in(
    database: Database, migrations: Migrations, moto_server: str, tmp_path: Path
):
    ec2 = boto3.client("ec2", region_name=AWS_REGION, endpoint_url=moto_server, **_keys())
    instance = ec2.run_instances(ImageId="ami-0123456789abcdef0", MinCount=1, MaxCount=1)["Instances"][0]["InstanceId"]
    migrations.write("0001_broken.sql", "SELECT nosuch;\n")
    hold_file, summary = tmp_path / "hold-until", tmp_path / "summary.md"
    env = {
        **aws_env(),
        "AWS_REGION": AWS_REGION,
        "AWS_ENDPOINT_URL": moto_server,
        "GITHUB_ACTIONS": "true",
        "GITHUB_STEP_SUMMARY": str(summary),
        "VPC_RUNNER_INSTANCE_ID": instance,
        "VPC_RUNNER_HOLD_FILE": str(hold_file),
    }
    started = time.time()
    result = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, "--hold-on-failure", "30min", env=env
    )
    assert result.code == 1, result.output  # the failure is still the failure
    until = int(hold_file.read_text())
    assert started + 1800 - 5 <= until <= time.time() + 1800
    # The instance role may tag nothing: the hold is the file, and the reaper's check with GitHub.
    assert ec2.describe_tags(Filters=[{"Name": "resource-id", "Values": [instance]}])["Tags"] == []
    command = f"aws ssm start-session --target {instance} --region {AWS_REGION}"
    assert command in summary.read_text() and command in result.err and "::warning::" in result.err


def test_hold_is_a_warning_off_a_kit_runner_and_nothing_on_success(database: Database, migrations: Migrations):
    migrations.write("0001_broken.sql", "SELECT nosuch;\n")
    failed = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, "--hold-on-failure", "5min")
    assert failed.code == 1 and "not on a vpc-runner-kit runner" in failed.err
    migrations.write("0001_broken.sql", "SELECT 1;\n")
    ok = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, "--hold-on-failure", "5min")
    assert ok.code == 0 and "hold" not in ok.err


def _keys() -> dict[str, str]:
    env = aws_env()
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}
