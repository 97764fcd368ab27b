"""Resolving where the database is: precedence, regions, TLS rules, and the stack's SSM parameter."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from runner.migrate.connection import RDS_CA_BUNDLE, ConnectionOptions, infer_region, resolve_target
from runner.migrate.errors import BadInput
from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import AWS_REGION, IamUser, aws_env

HOST = "app.c9akciq32.eu-central-1.rds.amazonaws.com"


@pytest.mark.parametrize(
    ("host", "region"),
    [
        (HOST, "eu-central-1"),
        ("mycluster.cluster-ro-c9akciq32.us-gov-west-1.rds.amazonaws.com", "us-gov-west-1"),
        ("proxy.proxy-c9akciq32.ap-southeast-2.rds.amazonaws.com", "ap-southeast-2"),
        ("db.abc.cn-north-1.rds.amazonaws.com.cn", "cn-north-1"),
        ("db.internal.example.com", None),
        ("127.0.0.1", None),
    ],
)
def test_region_is_inferred_from_rds_host_names(host: str, region: str | None):
    assert infer_region(host) == region


def test_flags_beat_url_which_beats_environment():
    env = {"PGHOST": "env-host", "PGUSER": "env-user", "PGDATABASE": "env-db", "PGPORT": "6000"}
    target = resolve_target(
        ConnectionOptions(database_url="postgresql://url-user@url-host/url-db", dbname="flag-db"), env
    )
    assert target.params["host"] == "url-host" and target.params["user"] == "url-user"
    assert target.params["dbname"] == "flag-db" and target.params["port"] == "6000"
    assert not target.iam


def test_iam_defaults_to_verify_full_with_the_rds_bundle_and_inferred_region():
    target = resolve_target(ConnectionOptions(host=HOST, user="migrator", iam=True), {})
    assert target.iam and target.region == "eu-central-1"
    assert target.params == {
        "host": HOST,
        "user": "migrator",
        "port": "5432",
        "sslmode": "verify-full",
        "sslrootcert": RDS_CA_BUNDLE,
    }


def test_iam_refuses_a_password_in_the_url():
    with pytest.raises(BadInput, match="has a password"):
        resolve_target(ConnectionOptions(database_url=f"postgresql://u:pw@{HOST}/db", iam=True), {})


def test_environment_switch_turns_on_iam():
    target = resolve_target(ConnectionOptions(host=HOST, user="u"), {"VPC_MIGRATE_IAM": "1"})
    assert target.iam


@mock_aws
def test_ssm_parameter_supplies_every_coordinate_and_implies_iam():
    boto3.client("ssm", region_name="eu-central-1").put_parameter(
        Name="/vpc-runners/prod/databases/orders",
        Type="String",
        Value=json.dumps(
            {"host": HOST, "port": 5433, "dbname": "orders", "user": "migrator", "region": "eu-central-1"}
        ),
    )
    env = {
        "AWS_REGION": "eu-central-1",
        "VPC_MIGRATE_SSM_PARAMETER": "/vpc-runners/prod/databases/orders",
        "DATABASE_URL": "postgresql://ignored@elsewhere/db",
    }
    target = resolve_target(ConnectionOptions(), env)
    assert target.iam and target.params["port"] == "5433" and target.params["dbname"] == "orders"
    assert target.params["host"] == HOST
    # A flag still wins over the parameter.
    assert resolve_target(ConnectionOptions(dbname="other"), env).params["dbname"] == "other"


@mock_aws
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "does not exist"),
        ("not json", "is not JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ('{"host": "h"}', "lacks user, dbname"),
    ],
)
def test_bad_ssm_parameter_is_bad_input(value: str | None, message: str):
    if value is not None:
        boto3.client("ssm", region_name="us-east-1").put_parameter(Name="/p", Type="String", Value=value)
    with pytest.raises(BadInput, match=message):
        resolve_target(ConnectionOptions(ssm_parameter="/p", region="us-east-1"), {})


def test_ssm_parameter_needs_a_region():
    with pytest.raises(BadInput, match="needs a region"):
        resolve_target(ConnectionOptions(ssm_parameter="/p"), {})


def test_end_to_end_the_workflow_needs_no_coordinates(iam_user: IamUser, migrations: Migrations, moto_server: str):
    """The runner's environment names the stack's SSM parameter; `vpc-migrate up` needs nothing else."""
    env = {**aws_env(), "AWS_REGION": AWS_REGION, "AWS_ENDPOINT_URL": moto_server}
    boto3.client(
        "ssm",
        region_name=AWS_REGION,
        endpoint_url=moto_server,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).put_parameter(
        Name="/vpc-runners/test/databases/app",
        Type="String",
        Value=json.dumps(
            {
                "host": "127.0.0.1",
                "port": iam_user.database.server.port,
                "user": iam_user.name,
                "dbname": iam_user.database.name,
                "region": AWS_REGION,
            }
        ),
    )
    migrations.write("0001_t.sql", "CREATE TABLE t (x int);\n")
    env["VPC_MIGRATE_SSM_PARAMETER"] = "/vpc-runners/test/databases/app"
    env["PGSSLROOTCERT"] = str(iam_user.database.server.ca_file)  # the runner image's bundle, here the test CA
    result = run_cli("up", "--dir", str(migrations.path), env=env)
    assert result.code == 0, result.output
    assert iam_user.database.history() == [(1, "t", "applied")]
    assert "(IAM, sslmode=verify-full)" in result.err


def test_exec_child_gets_a_working_iam_database_url(iam_user: IamUser, tmp_path: Path):
    import sys

    script = (
        "import os, psycopg; "
        "print(psycopg.connect(os.environ['DATABASE_URL']).execute('select current_user').fetchone()[0])"
    )
    result = run_cli("exec", *iam_user.cli_args(), "--", sys.executable, "-c", script, env=aws_env())
    assert result.code == 0, result.output
    assert result.out.strip() == iam_user.name
    assert "X-Amz-Signature" not in result.output


def test_sessions_carry_the_ci_run_in_application_name():
    from runner.migrate.connection import Connector, Target
    from runner.migrate.output import Reporter

    env = {"GITHUB_REPOSITORY": "acme/shop", "GITHUB_RUN_ID": "4242"}
    connector = Connector(Target(params={"host": "h"}), Reporter(env), env)
    assert connector.application_name("lock") == "vpc-migrate lock acme/shop#4242"
    assert (
        len(
            Connector(
                Target(), Reporter({}), {"GITHUB_REPOSITORY": "o/" + "r" * 80, "GITHUB_RUN_ID": "1"}
            ).application_name("migrate")
        )
        == 63
    )
