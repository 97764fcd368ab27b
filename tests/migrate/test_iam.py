"""IAM database authentication against a server that checks tokens like RDS (PAM + SigV4 verifier)."""

from __future__ import annotations

import re

import boto3
import psycopg
import pytest

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import AWS_REGION, IamUser, aws_env

TOKEN_SIGNATURE = re.compile(r"X-Amz-Signature=[0-9a-f]{64}")
TOKEN_CREDENTIAL = re.compile(r"X-Amz-Credential=")


def login(iam_user: IamUser, password: str, *, sslmode: str) -> psycopg.Connection:
    """Log in as the IAM user directly, as any client would (verify-* against the test CA)."""
    return psycopg.connect(
        host="127.0.0.1",
        port=iam_user.database.server.port,
        user=iam_user.name,
        dbname=iam_user.database.name,
        sslmode=sslmode,
        sslrootcert=str(iam_user.database.server.ca_file),
        password=password,
    )


def _write_basic(migrations: Migrations) -> None:
    migrations.write("0001_users.sql", "CREATE TABLE users (id bigint PRIMARY KEY, email text);\n")
    migrations.write("0002_seed.sql", "INSERT INTO users VALUES (1, 'a@example.com');\n")


def test_up_with_iam_over_verified_tls_applies_and_never_prints_the_token(iam_user: IamUser, migrations: Migrations):
    _write_basic(migrations)
    result = run_cli("up", "--dir", str(migrations.path), *iam_user.cli_args(), env=aws_env())
    assert result.code == 0, result.output
    assert iam_user.database.history() == [(1, "users", "applied"), (2, "seed", "applied")]
    assert iam_user.database.scalar("SELECT db_user FROM vpc_migrate.history WHERE version = '1'") == iam_user.name
    assert not TOKEN_SIGNATURE.search(result.output) and not TOKEN_CREDENTIAL.search(result.output)
    # Two connections (lock + migration), each with its own freshly minted, accepted token.
    assert iam_user.database.server.pam_log_text().count(f"accept user={iam_user.name}") >= 2


def test_iam_user_cannot_log_in_without_tls_or_with_a_password(iam_user: IamUser):
    with pytest.raises(psycopg.OperationalError):
        login(iam_user, "whatever", sslmode="disable").close()
    with pytest.raises(psycopg.OperationalError):
        login(iam_user, "not-a-token", sslmode="require").close()
    assert "not an IAM token" in iam_user.database.server.pam_log_text()


def test_token_for_another_user_is_refused(iam_user: IamUser):
    token = boto3.client(
        "rds",
        region_name=AWS_REGION,
        aws_access_key_id=aws_env()["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=aws_env()["AWS_SECRET_ACCESS_KEY"],
    ).generate_db_auth_token(
        DBHostname="127.0.0.1", Port=iam_user.database.server.port, DBUsername="someone_else", Region=AWS_REGION
    )
    with pytest.raises(psycopg.OperationalError):
        login(iam_user, token, sslmode="require").close()
    assert "DBUser 'someone_else' is not the login user" in iam_user.database.server.pam_log_text()


def test_wrong_secret_key_fails_with_exit_3_and_the_iam_checklist(iam_user: IamUser, migrations: Migrations):
    _write_basic(migrations)
    env = {**aws_env(), "AWS_SECRET_ACCESS_KEY": "a-different-secret"}
    result = run_cli("up", "--dir", str(migrations.path), *iam_user.cli_args(), env=env)
    assert result.code == 3, result.output
    assert "rds-db:connect" in result.err and "GRANT rds_iam" in result.err
    assert "signature mismatch" in iam_user.database.server.pam_log_text()
    assert iam_user.database.history() == []


def test_token_signed_for_another_region_is_refused(iam_user: IamUser, migrations: Migrations):
    _write_basic(migrations)
    result = run_cli("up", "--dir", str(migrations.path), *iam_user.cli_args(region="eu-west-1"), env=aws_env())
    assert result.code == 3, result.output
    assert "region mismatch: token for eu-west-1" in iam_user.database.server.pam_log_text()


def test_wrong_database_user_is_refused(iam_user: IamUser, migrations: Migrations):
    _write_basic(migrations)
    args = iam_user.cli_args()
    args[args.index("--user") + 1] = "nobody_here"
    result = run_cli("up", "--dir", str(migrations.path), *args, env=aws_env())
    assert result.code == 3, result.output
    assert "PAM" in result.err or "authentication failed" in result.err


def test_region_that_contradicts_the_rds_host_is_bad_input_before_connecting(migrations: Migrations):
    _write_basic(migrations)
    result = run_cli(
        "up",
        "--dir",
        str(migrations.path),
        "--iam",
        "--host",
        "db.abc123xyz.eu-west-1.rds.amazonaws.com",
        "--user",
        "app",
        "--region",
        "us-east-1",
        env=aws_env(),
    )
    assert result.code == 2, result.output
    assert "does not match the database host" in result.err


def test_missing_ca_bundle_is_a_clear_error_not_a_downgrade(iam_user: IamUser, migrations: Migrations, tmp_path):
    _write_basic(migrations)
    args = iam_user.cli_args()
    args[args.index("--sslrootcert") + 1] = str(tmp_path / "missing-bundle.pem")
    result = run_cli("up", "--dir", str(migrations.path), *args, env=aws_env())
    assert result.code == 3, result.output
    assert "missing-bundle.pem not found" in result.err
    assert iam_user.database.history() == []


def test_under_github_actions_every_token_is_masked_before_anything_else(
    iam_user: IamUser, migrations: Migrations, tmp_path
):
    _write_basic(migrations)
    env = {
        **aws_env(),
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "out"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
    }
    result = run_cli("up", "--dir", str(migrations.path), *iam_user.cli_args(), env=env)
    assert result.code == 0, result.output
    lines = result.err.splitlines()
    mask_lines = [i for i, line in enumerate(lines) if line.startswith("::add-mask::")]
    assert mask_lines and mask_lines[0] == 0, "the first thing printed is a mask"
    for i, line in enumerate(lines):
        if TOKEN_SIGNATURE.search(line):
            assert line.startswith("::add-mask::"), f"token outside a mask command: line {i}"
    assert not TOKEN_SIGNATURE.search(result.out)
    assert not TOKEN_SIGNATURE.search((tmp_path / "summary").read_text() + (tmp_path / "out").read_text())


def test_token_command_prints_a_token_the_server_accepts(iam_user: IamUser):
    result = run_cli("token", *iam_user.cli_args(), env=aws_env())
    assert result.code == 0, result.err
    token = result.out.strip()
    with login(iam_user, token, sslmode="verify-full") as conn:
        assert conn.execute("SELECT current_user").fetchone() == (iam_user.name,)


def test_hostaddr_connects_elsewhere_while_tls_and_the_token_use_the_host_name(
    iam_user: IamUser, migrations: Migrations
):
    """How a laptop connects through `scripts/db-tunnel`: TCP to 127.0.0.1, everything else to the name."""
    _write_basic(migrations)
    args = iam_user.cli_args()
    args[args.index("--host") + 1] = "localhost"  # the name in the server certificate
    result = run_cli("up", "--dir", str(migrations.path), *args, "--hostaddr", "127.0.0.1", env=aws_env())
    assert result.code == 0, result.output
    assert f"accept user={iam_user.name}" in iam_user.database.server.pam_log_text()


def test_every_iam_login_test_carries_the_iam_marker(request: pytest.FixtureRequest):
    items = request.session.items
    using = [i for i in items if "iam_user" in getattr(i, "fixturenames", ())]
    assert using and all(i.get_closest_marker("iam") for i in using)
    assert not [i for i in items if i.get_closest_marker("iam") and i not in using]
