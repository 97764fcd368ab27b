"""Logging in with a password from Secrets Manager (moto), against the real server's password roles.

Rotation is the real sequence: the database user's password changes (ALTER ROLE) and the secret gets
a new version, between two runs and between two connections of one run; a single-user rotation's
window (new password set on the database, still AWSPENDING in the secret) is covered too.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.core import set_initial_no_auth_action_count

from runner.migrate.connection import RDS_CA_BUNDLE, ConnectionOptions, Connector, resolve_target
from runner.migrate.errors import BadInput, ConnectionFailed, ExitCode
from runner.migrate.output import Reporter
from runner.migrate.secret import SecretReader
from tests.fix_cli import Migrations, finish, run_cli, start_cli
from tests.fix_pg import AWS_REGION, Database, PasswordUser, Secrets, aws_env

RDS_HOST = "orders.c9akciq32.us-east-1.rds.amazonaws.com"
FIRST, SECOND = "first-Pa$$word/with:odd@chars", "second-Pa$$word%after+rotation"


@pytest.fixture
def in_process_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for key, value in {**aws_env(), "AWS_REGION": AWS_REGION}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield boto3.client("secretsmanager", region_name=AWS_REGION)


def _tls(user: PasswordUser) -> list[str]:
    return ["--sslrootcert", str(user.database.server.ca_file)]


def _rotate(user: PasswordUser, secrets: Secrets, arn: str, password: str) -> None:
    user.set_password(password)
    secrets.client.put_secret_value(SecretId=arn, SecretString=user.secret_json(password))


# -- resolving: which field comes from where -----------------------------------------------------
def test_an_rds_managed_secret_gives_user_and_password_and_flags_give_the_rest(in_process_aws: Any):
    arn = in_process_aws.create_secret(
        Name="rds!db-0f1e2d3c", SecretString=json.dumps({"username": "migrator", "password": FIRST})
    )["ARN"]
    target = resolve_target(ConnectionOptions(secret=arn, host=RDS_HOST, dbname="orders"), {})
    assert target.params == {
        "host": RDS_HOST,
        "port": "5432",
        "user": "migrator",
        "dbname": "orders",
        "sslmode": "verify-full",
        "sslrootcert": RDS_CA_BUNDLE,
    }
    assert not target.iam and target.secret is not None and target.secret.password == FIRST
    assert FIRST not in repr(target) and FIRST not in target.describe()
    assert f"password from secret {arn}" in target.describe()


def test_a_rotation_template_secret_gives_every_coordinate_and_flags_override_it(in_process_aws: Any):
    value = {"engine": "postgres", "host": RDS_HOST, "port": 5433, "username": "app", "password": FIRST}
    in_process_aws.create_secret(Name="prod/orders/migrator", SecretString=json.dumps({**value, "dbname": "orders"}))
    target = resolve_target(ConnectionOptions(secret="prod/orders/migrator"), {"AWS_REGION": AWS_REGION})
    assert (target.params["host"], target.params["port"], target.params["dbname"]) == (RDS_HOST, "5433", "orders")
    flagged = resolve_target(
        ConnectionOptions(secret="prod/orders/migrator", user="other", port=6432), {"AWS_REGION": AWS_REGION}
    )
    assert (flagged.params["user"], flagged.params["port"]) == ("other", "6432")
    from_env = resolve_target(
        ConnectionOptions(), {"AWS_REGION": AWS_REGION, "VPC_MIGRATE_SECRET": "prod/orders/migrator"}
    )
    assert from_env.secret is not None and from_env.params["user"] == "app"


def test_the_stacks_parameter_may_name_a_secret_instead_of_iam(in_process_aws: Any):
    arn = in_process_aws.create_secret(Name="orders", SecretString=json.dumps({"username": "m", "password": FIRST}))[
        "ARN"
    ]
    boto3.client("ssm", region_name=AWS_REGION).put_parameter(
        Name="/vpc-runners/prod/databases/orders",
        Type="String",
        Value=json.dumps({"host": RDS_HOST, "port": 5432, "dbname": "orders", "region": AWS_REGION, "secret": arn}),
    )
    target = resolve_target(
        ConnectionOptions(ssm_parameter="/vpc-runners/prod/databases/orders"), {"AWS_REGION": AWS_REGION}
    )
    assert not target.iam and target.secret is not None and target.params["user"] == "m"


BAD_SECRETS = [
    ("not json", "is not JSON"),
    ('{"username": "m", "password": "hunter2-in-a-broken-secret"', "is not JSON"),
    ('["m", "hunter2"]', "must hold a JSON object"),
    ('{"username": "m"}', "has no password field"),
    ('{"username": "m", "password": ""}', "has no password field"),
    ('{"username": "m", "password": "hunter2", "engine": "mysql"}', "is for engine 'mysql'"),
    ('{"username": "m", "password": "hunter2", "port": "fifty"}', "field port is not a number"),
    ('{"password": "hunter2"}', "needs the database user"),
]


@pytest.mark.parametrize(("value", "message"), BAD_SECRETS)
def test_a_malformed_secret_is_bad_input_naming_the_secret_and_field_never_a_value(
    in_process_aws: Any, value: str, message: str
):
    in_process_aws.create_secret(Name="broken", SecretString=value)
    with pytest.raises(BadInput, match=message) as raised:
        resolve_target(ConnectionOptions(secret="broken", host=RDS_HOST), {"AWS_REGION": AWS_REGION})
    assert "broken" in raised.value.message and "hunter2" not in raised.value.message


def test_a_binary_or_missing_secret_is_bad_input(in_process_aws: Any):
    in_process_aws.create_secret(Name="binary", SecretBinary=b"\x00\x01")
    with pytest.raises(BadInput, match="secret binary holds binary data"):
        resolve_target(ConnectionOptions(secret="binary", host=RDS_HOST), {"AWS_REGION": AWS_REGION})
    with pytest.raises(BadInput, match=f"secret absent does not exist in {AWS_REGION}"):
        resolve_target(ConnectionOptions(secret="absent", host=RDS_HOST), {"AWS_REGION": AWS_REGION})


@pytest.mark.parametrize(
    ("options", "environ", "message"),
    [
        (ConnectionOptions(secret="s", iam=True), {}, "give --iam or --secret, not both"),
        (ConnectionOptions(secret="s"), {"VPC_MIGRATE_IAM": "1"}, "give --iam or --secret, not both"),
        (ConnectionOptions(secret="s"), {}, "needs a region"),
    ],
)
def test_conflicting_or_incomplete_options_are_refused_before_any_call(
    options: ConnectionOptions, environ: dict[str, str], message: str
):
    with pytest.raises(BadInput, match=message):
        resolve_target(options, environ)


def test_a_secret_is_never_sent_without_tls_and_never_beside_a_url_password(in_process_aws: Any):
    in_process_aws.create_secret(Name="s", SecretString=json.dumps({"username": "m", "password": FIRST}))
    env = {"AWS_REGION": AWS_REGION}
    with pytest.raises(BadInput, match="would send the password without TLS"):
        resolve_target(ConnectionOptions(secret="s", host=RDS_HOST, sslmode="prefer"), env)
    with pytest.raises(BadInput, match="the database URL has a password"):
        resolve_target(ConnectionOptions(secret="s", database_url=f"postgresql://m:x@{RDS_HOST}/orders"), env)


def test_the_stacks_parameter_cannot_name_both_iam_and_a_secret(in_process_aws: Any):
    boto3.client("ssm", region_name=AWS_REGION).put_parameter(
        Name="/p", Type="String", Value=json.dumps({"host": RDS_HOST, "iam": True, "secret": "s"})
    )
    with pytest.raises(BadInput, match="names both iam and secret"):
        resolve_target(ConnectionOptions(ssm_parameter="/p"), {"AWS_REGION": AWS_REGION})


@set_initial_no_auth_action_count(3)  # the three set-up calls below
def test_access_denied_is_a_connection_failure_naming_the_grant(monkeypatch: pytest.MonkeyPatch):
    """moto enforces IAM here: a user with no policy may not read the secret."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        iam = boto3.client("iam", region_name=AWS_REGION)
        iam.create_user(UserName="job")  # 1
        keys = iam.create_access_key(UserName="job")["AccessKey"]  # 2
        arn = boto3.client("secretsmanager", region_name=AWS_REGION).create_secret(  # 3
            Name="orders", SecretString=json.dumps({"username": "m", "password": FIRST})
        )["ARN"]
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", keys["AccessKeyId"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", keys["SecretAccessKey"])
        with pytest.raises(ConnectionFailed, match=f"access denied reading secret {arn}") as raised:
            resolve_target(ConnectionOptions(secret=arn, host=RDS_HOST), {})
    assert raised.value.exit_code == ExitCode.CONNECTION_FAILED
    assert "secretsmanager:GetSecretValue" in (raised.value.hint or "")


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        ("DecryptionFailure", ConnectionFailed, "could not be decrypted: KMS refused its key"),
        ("InvalidRequestException", BadInput, "scheduled for deletion"),
        ("InternalServiceError", ConnectionFailed, "cannot read secret orders: InternalServiceError"),
    ],
)
def test_errors_moto_cannot_produce_are_mapped_from_the_documented_codes(
    code: str, error: type[Exception], message: str
):
    """GetSecretValue's documented errors (API reference); botocore's stubber checks the request shape."""
    client = botocore.session.get_session().create_client(
        "secretsmanager", region_name=AWS_REGION, aws_access_key_id="x", aws_secret_access_key="y"
    )
    reader = SecretReader("orders", AWS_REGION)
    reader._client = client
    with Stubber(client) as stub:
        stub.add_client_error(
            "get_secret_value",
            service_error_code=code,
            http_status_code=400,
            expected_params={"SecretId": "orders", "VersionStage": "AWSCURRENT"},
        )
        with pytest.raises(error, match=message):
            reader.read()


def test_no_aws_credentials_is_a_connection_failure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ConnectionFailed, match="no AWS credentials to read secret orders"):
        resolve_target(ConnectionOptions(secret="orders", host=RDS_HOST, region=AWS_REGION), {})


# -- logging in: the real server, passwords over verified TLS, rotation -----------------------------
def test_up_with_only_a_secret_migrates_a_password_database_and_never_prints_the_password(
    password_user: PasswordUser, migrations: Migrations, secrets: Secrets
):
    password_user.set_password(FIRST)
    arn = secrets.create("prod/orders/migrator", password_user.secret_json(FIRST))
    migrations.write("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY);\n")
    result = run_cli("up", "--dir", str(migrations.path), "--secret", arn, *_tls(password_user), env=secrets.env())
    assert result.code == 0, result.output
    assert password_user.database.history() == [(1, "users", "applied")]
    db_user = password_user.database.scalar("SELECT db_user FROM vpc_migrate.history WHERE version = '1'")
    assert db_user == password_user.name
    assert f"password from secret {arn}, sslmode=verify-full" in result.err
    assert FIRST not in result.output


def test_a_workflow_with_only_the_stacks_parameter_logs_in_with_its_secret(
    password_user: PasswordUser, migrations: Migrations, secrets: Secrets
):
    password_user.set_password(FIRST)
    arn = secrets.create("rds!db-orders", json.dumps({"username": password_user.name, "password": FIRST}))
    boto3.client("ssm", region_name=AWS_REGION, endpoint_url=secrets.endpoint, **_keys()).put_parameter(
        Name="/vpc-runners/test/databases/orders",
        Type="String",
        Value=json.dumps(
            {
                "host": "127.0.0.1",
                "port": password_user.database.server.port,
                "dbname": password_user.database.name,
                "region": AWS_REGION,
                "secret": arn,
            }
        ),
    )
    migrations.write("0001_t.sql", "CREATE TABLE t (x int);\n")
    env = secrets.env(
        VPC_MIGRATE_SSM_PARAMETER="/vpc-runners/test/databases/orders",
        PGSSLROOTCERT=str(password_user.database.server.ca_file),
    )
    result = run_cli("up", "--dir", str(migrations.path), env=env)
    assert result.code == 0, result.output
    assert password_user.database.history() == [(1, "t", "applied")]


def test_rotation_between_runs_is_survived(password_user: PasswordUser, migrations: Migrations, secrets: Secrets):
    password_user.set_password(FIRST)
    arn = secrets.create("orders", password_user.secret_json(FIRST))
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    args = ("up", "--dir", str(migrations.path), "--secret", arn, *_tls(password_user))
    assert run_cli(*args, env=secrets.env()).code == 0
    _rotate(password_user, secrets, arn, SECOND)
    migrations.write("0002_b.sql", "CREATE TABLE b (x int);\n")
    result = run_cli(*args, env=secrets.env())
    assert result.code == 0, result.output
    assert password_user.database.history() == [(1, "a", "applied"), (2, "b", "applied")]
    assert FIRST not in result.output and SECOND not in result.output


def test_rotation_within_a_run_is_survived(password_user: PasswordUser, migrations: Migrations, secrets: Secrets):
    """The run's lock connection uses the old password; the rotation lands while it waits for the lock;
    its migration connection fails once, reads the secret again, and logs in with the new one."""
    db = password_user.database
    password_user.set_password(FIRST)
    arn = secrets.create("orders", password_user.secret_json(FIRST))
    migrations.write("0001_slow.sql", "SELECT pg_sleep(2);\n")
    args = ("up", "--dir", str(migrations.path), "--secret", arn, *_tls(password_user))
    holder = start_cli(*args, env=secrets.env())  # logged in before the rotation; keeps its connections
    db.wait_until_running("SELECT pg_sleep(2)")
    waiting = start_cli(*args, env=secrets.env())
    db.wait_until("SELECT count(*) = 2 FROM pg_stat_activity WHERE application_name LIKE 'vpc-migrate lock%'")
    _rotate(password_user, secrets, arn, SECOND)
    held = finish(holder)
    assert held.code == 0, held.output
    result = finish(waiting)
    assert result.code == 0, result.output
    assert f"secret {arn} has a new password (AWSCURRENT): logging in again" in result.err
    assert FIRST not in result.output and SECOND not in result.output


def test_a_single_user_rotations_window_logs_in_with_the_pending_password(
    password_user: PasswordUser, in_process_aws: Any
):
    """Between setSecret and finishSecret the database has the AWSPENDING password, the secret's
    AWSCURRENT is still the old one."""
    password_user.set_password(FIRST)
    arn = in_process_aws.create_secret(Name="orders", SecretString=password_user.secret_json(FIRST))["ARN"]
    target = resolve_target(ConnectionOptions(secret=arn, sslrootcert=str(password_user.database.server.ca_file)), {})
    out = io.StringIO()
    connector = Connector(target, Reporter({}, out=out, err=out), {})
    connector.connect("first").close()
    password_user.set_password(SECOND)
    in_process_aws.put_secret_value(
        SecretId=arn, SecretString=password_user.secret_json(SECOND), VersionStages=["AWSPENDING"]
    )
    with connector.connect("second") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (password_user.name,)
    assert f"secret {arn} has a new password (AWSPENDING)" in out.getvalue()
    assert FIRST not in out.getvalue() and SECOND not in out.getvalue()


def test_a_password_that_is_wrong_everywhere_fails_with_exit_3_after_one_reread(
    password_user: PasswordUser, migrations: Migrations, secrets: Secrets
):
    password_user.set_password(SECOND)
    arn = secrets.create("orders", password_user.secret_json(FIRST))
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    result = run_cli("up", "--dir", str(migrations.path), "--secret", arn, *_tls(password_user), env=secrets.env())
    assert result.code == ExitCode.CONNECTION_FAILED, result.output
    assert "password authentication failed" in result.err and f"check that secret {arn} holds" in result.err
    assert FIRST not in result.output and password_user.database.history() == []


def test_exec_gives_the_password_to_the_child_in_its_environment_only(
    password_user: PasswordUser, secrets: Secrets, tmp_path: Path
):
    password_user.set_password(FIRST)
    arn = secrets.create("orders", password_user.secret_json(FIRST))
    script = tmp_path / "child.sh"
    script.write_text(
        'ps -eo args > "$1/ps.txt"\n'
        "tr '\\0' ' ' < /proc/$$/cmdline > \"$1/cmdline.txt\"\n"
        "tr '\\0' ' ' < /proc/$PPID/cmdline > \"$1/parent-cmdline.txt\"\n"
        "psql -XAtc 'SELECT current_user' > \"$1/psql.txt\"\n"
        'psql -XAtc \'SELECT 1\' "$DATABASE_URL" > "$1/url.txt"\n'
    )
    result = run_cli(
        "exec", "--secret", arn, *_tls(password_user), "--", "sh", str(script), str(tmp_path), env=secrets.env()
    )
    assert result.code == 0, result.output
    assert (tmp_path / "psql.txt").read_text().strip() == password_user.name  # PGPASSWORD worked
    assert (tmp_path / "url.txt").read_text().strip() == "1"  # and so did DATABASE_URL
    for name in ("ps.txt", "cmdline.txt", "parent-cmdline.txt"):
        assert FIRST not in (tmp_path / name).read_text(), name
    assert FIRST not in result.output


def test_under_actions_the_password_is_masked_before_anything_else_is_written(
    password_user: PasswordUser, migrations: Migrations, secrets: Secrets
):
    password_user.set_password(FIRST)
    arn = secrets.create("orders", password_user.secret_json(FIRST))
    migrations.write("0001_a.sql", "CREATE TABLE a (x int);\n")
    env = secrets.env(GITHUB_ACTIONS="true")
    result = run_cli("up", "--dir", str(migrations.path), "--secret", arn, *_tls(password_user), env=env)
    assert result.code == 0, result.output
    first_lines = result.err.splitlines()[:2]
    assert first_lines[0].startswith("::add-mask::") and first_lines[1].startswith("::add-mask::")
    leaks = [line for line in result.output.splitlines() if FIRST in line and not line.startswith("::add-mask::")]
    assert leaks == []


def test_doctor_checks_the_secret_link(password_user: PasswordUser, secrets: Secrets):
    password_user.set_password(FIRST)
    arn = secrets.create("orders", password_user.secret_json(FIRST))
    result = run_cli("doctor", "--json", "--secret", arn, *_tls(password_user), env=secrets.env())
    checks = {c["name"]: c for c in json.loads(result.out)}
    assert result.code == 0, result.output
    assert {n: checks[n]["status"] for n in ("settings", "AWS credentials", "IAM token", "secret", "login")} == {
        "settings": "ok",
        "AWS credentials": "ok",
        "IAM token": "n/a",
        "secret": "ok",
        "login": "ok",
    }
    assert "fields: dbname, engine, host, password, port, username" in checks["secret"]["detail"]
    assert FIRST not in result.output

    missing = run_cli("doctor", "--json", "--secret", "absent", *_tls(password_user), env=secrets.env())
    checks = {c["name"]: c for c in json.loads(missing.out)}
    assert missing.code == ExitCode.BAD_INPUT and checks["settings"]["status"] == "failed"
    assert "secret absent does not exist" in checks["settings"]["detail"] and checks["login"]["status"] == "skipped"

    password_user.set_password(SECOND)  # the secret is stale and no rotation is under way
    stale = run_cli("doctor", "--json", "--secret", arn, *_tls(password_user), env=secrets.env())
    checks = {c["name"]: c for c in json.loads(stale.out)}
    assert stale.code == ExitCode.CONNECTION_FAILED and checks["secret"]["status"] == "ok"
    assert checks["login"]["status"] == "failed" and "password authentication failed" in checks["login"]["detail"]


def _keys() -> dict[str, str]:
    env = aws_env()
    return {"aws_access_key_id": env["AWS_ACCESS_KEY_ID"], "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"]}


def test_the_test_server_refuses_a_password_role_without_tls(password_user: PasswordUser, database: Database):
    """The fixture is RDS-like: a password user cannot log in over plain TCP, so TLS above is real."""
    import psycopg

    password_user.set_password(FIRST)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(
            host="127.0.0.1",
            port=database.server.port,
            user=password_user.name,
            dbname=database.name,
            password=FIRST,
            sslmode="disable",
        ).close()
