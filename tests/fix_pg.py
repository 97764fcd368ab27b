"""Pytest plugin: one real PostgreSQL server per session, TLS on, IAM auth through PAM when root.

The server is ``ThrowawayPostgres`` from scripts/. TLS uses a CA and server certificate made here.
When PAM can be configured (root, pam_exec present, a Python the server user may run), roles
granted ``rds_iam`` must log in over ``hostssl`` with an RDS IAM token, checked by
``pam_rds_verifier.py`` — the same contract as RDS; over plain TCP they are rejected.
"""

from __future__ import annotations

import datetime as dt
import glob
import ipaddress
import itertools
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from psycopg import sql
from throwaway_postgres import ThrowawayPostgres

# Test AWS credentials: what the runner signs with and what the verifier checks against.
AWS_ACCESS_KEY = "AKIAVPCMIGRATETEST01"
AWS_SECRET_KEY = "vpc-migrate-test-secret-key-not-a-real-one"
AWS_REGION = "us-east-1"
PAM_SERVICE = f"vpc-migrate-test-{os.getpid()}"


@dataclass
class Server:
    pg: ThrowawayPostgres
    ca_file: Path
    pam_log: Path | None
    iam_skip_reason: str | None

    @property
    def port(self) -> int:
        return self.pg.port

    def admin(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.pg.url(dbname, tcp=False), autocommit=True)

    def pam_log_text(self) -> str:
        return self.pam_log.read_text() if self.pam_log and self.pam_log.exists() else ""


def _make_tls(base: Path) -> tuple[Path, Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vpc-migrate test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file, cert_file, key_file = base / "ca.pem", base / "server.crt", base / "server.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_file, cert_file, key_file


def _pam_skip_reason(run_as: str | None) -> str | None:
    if os.geteuid() != 0 or run_as is None:
        return "IAM-through-PAM tests need root to write /etc/pam.d"
    if not (
        glob.glob("/lib/*/security/pam_exec.so")
        + glob.glob("/usr/lib/*/security/pam_exec.so")
        + glob.glob("/lib/security/pam_exec.so")
    ):
        return "pam_exec.so not installed (libpam-modules)"
    if not Path("/usr/bin/python3").exists():
        return "no /usr/bin/python3 for the PAM verifier"
    pw = pwd.getpwnam(run_as)
    ok = subprocess.run(
        ["/usr/bin/python3", "-c", "import hmac, json"],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        capture_output=True,
        check=False,
    )
    return None if ok.returncode == 0 else "the server user cannot run /usr/bin/python3"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    # Not pytest's tmp_path: its root is private to the test user and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="vpc-migrate-test-pg-"))
    os.chmod(base, 0o755)
    pg = ThrowawayPostgres(base / "server")
    base.joinpath("server").mkdir()
    ca_file, cert_file, key_file = _make_tls(base / "server")
    for path in (cert_file, key_file):
        pg.give_to_server(path)
    os.chmod(ca_file, 0o644)
    pg.settings.update({"ssl": "on", "ssl_cert_file": f"'{cert_file}'", "ssl_key_file": f"'{key_file}'"})

    # Like RDS with a password: members of password_login log in with it over TLS only.
    password_hba = [
        "hostssl all +password_login 127.0.0.1/32 scram-sha-256",
        "host all +password_login 127.0.0.1/32 reject",
    ]
    pg.hba_lines = list(password_hba)
    skip = _pam_skip_reason(pg.run_as)
    pam_file, pam_log = Path("/etc/pam.d") / PAM_SERVICE, None
    if skip is None:
        verifier = base / "server" / "pam_rds_verifier.py"
        shutil.copy(Path(__file__).with_name("pam_rds_verifier.py"), verifier)
        config = base / "server" / "verifier.json"
        config.write_text(
            json.dumps(
                {
                    "hosts": ["127.0.0.1", "localhost"],
                    "port": pg.port,
                    "region": AWS_REGION,
                    "access_key": AWS_ACCESS_KEY,
                    "secret_key": AWS_SECRET_KEY,
                }
            )
        )
        pam_log = base / "server" / "pam.log"
        pam_log.touch()
        for path in (verifier, config, pam_log):
            pg.give_to_server(path, 0o600)
        pam_file.write_text(
            f"auth required pam_exec.so expose_authtok quiet log={pam_log} /usr/bin/python3 {verifier} {config}\n"
            "account required pam_permit.so\n"
        )
        # Like RDS: rds_iam members log in with a token over TLS only, never with anything else.
        pg.hba_lines = [
            *password_hba,
            f"hostssl all +rds_iam 127.0.0.1/32 pam pamservice={PAM_SERVICE}",
            "host all +rds_iam 127.0.0.1/32 reject",
        ]
    try:
        pg.start()
    except subprocess.CalledProcessError as err:
        pytest.fail(f"PostgreSQL did not start: {err.stderr}\n{pg.log()}")
    with psycopg.connect(pg.url(tcp=False), autocommit=True) as conn:
        conn.execute("CREATE ROLE rds_iam NOLOGIN")
        conn.execute("CREATE ROLE password_login NOLOGIN")
    try:
        yield Server(pg=pg, ca_file=ca_file, pam_log=pam_log, iam_skip_reason=skip)
    finally:
        pg.stop()
        pam_file.unlink(missing_ok=True)
        shutil.rmtree(base, ignore_errors=True)


_counter = itertools.count()


@dataclass
class Database:
    server: Server
    name: str

    @property
    def url(self) -> str:
        return self.server.pg.url(self.name)

    def query(self, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
        with self.server.admin(self.name) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def scalar(self, sql: str, params: Any = None) -> Any:
        rows = self.query(sql, params)
        return rows[0][0] if rows else None

    def tables(self, schema: str = "public") -> set[str]:
        return {r[0] for r in self.query("SELECT tablename FROM pg_tables WHERE schemaname = %s", [schema])}

    def wait_until(self, query: str, params: Any = None, timeout: float = 30.0) -> None:
        """Poll until ``query`` returns a true first value (e.g. a session reached a statement)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.scalar(query, params):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for: {query}")

    def running(self, fragment: str) -> int:
        """How many other sessions are running a query whose text contains ``fragment``."""
        return int(
            self.scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE strpos(query, %s) > 0 AND pid <> pg_backend_pid()",
                [fragment],
            )
        )

    def wait_until_running(self, fragment: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.running(fragment):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for a session running {fragment!r}")
            time.sleep(0.02)

    def history(self) -> list[tuple[Any, ...]]:
        if not self.scalar("SELECT to_regclass('vpc_migrate.history') IS NOT NULL"):
            return []
        from runner.migrate.files import Version

        rows = self.query("SELECT version::text, name, state FROM vpc_migrate.history")
        rows.sort(key=lambda row: Version.parse(row[0]))  # the order vpc-migrate applies them in
        # Whole-number versions as numbers, the rest (Flyway's 1.2, R__views) as text.
        return [(int(row[0]) if row[0].isdigit() else row[0], *row[1:]) for row in rows]


@pytest.fixture
def database(pg_server: Server) -> Database:
    """A fresh, empty database on the session server."""
    name = f"t{os.getpid()}_{next(_counter)}"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database(pg_server, name)


@dataclass
class IamUser:
    name: str
    database: Database

    def cli_args(self, region: str = AWS_REGION) -> list[str]:
        return [
            "--iam",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.database.server.port),
            "--user",
            self.name,
            "--dbname",
            self.database.name,
            "--region",
            region,
            "--sslrootcert",
            str(self.database.server.ca_file),
        ]


def aws_env() -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": AWS_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": AWS_SECRET_KEY,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def iam_user(database: Database) -> IamUser:
    """A login role that, like on RDS, can only authenticate with an IAM token; owns the database."""
    if database.server.iam_skip_reason:
        pytest.skip(database.server.iam_skip_reason)
    name = f"app_{database.name}"
    with database.server.admin() as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN')
        conn.execute(f'GRANT rds_iam TO "{name}"')
        conn.execute(f'ALTER DATABASE "{database.name}" OWNER TO "{name}"')
    with database.server.admin(database.name) as conn:
        conn.execute(f'ALTER SCHEMA public OWNER TO "{name}"')
    return IamUser(name, database)


@dataclass
class PasswordUser:
    """A login role that, like an RDS user whose password Secrets Manager keeps, logs in with it over TLS."""

    name: str
    database: Database

    def set_password(self, password: str) -> None:
        with self.database.server.admin() as conn:
            conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(self.name), sql.Literal(password)))

    def secret_json(self, password: str, **extra: Any) -> str:
        """The JSON a rotation template writes for this user (RDS-managed secrets hold only the first two)."""
        return json.dumps(
            {
                "username": self.name,
                "password": password,
                "engine": "postgres",
                "host": "127.0.0.1",
                "port": self.database.server.port,
                "dbname": self.database.name,
                **extra,
            }
        )


@pytest.fixture
def password_user(database: Database) -> PasswordUser:
    name = f"pw_{database.name}"
    with database.server.admin() as conn:
        conn.execute(f'CREATE ROLE "{name}" LOGIN IN ROLE password_login')
        conn.execute(f'ALTER DATABASE "{database.name}" OWNER TO "{name}"')
    with database.server.admin(database.name) as conn:
        conn.execute(f'ALTER SCHEMA public OWNER TO "{name}"')
    return PasswordUser(name, database)


class Secrets:
    """Secrets Manager on the loopback moto server that the vpc-migrate subprocess talks to."""

    def __init__(self, endpoint: str) -> None:
        keys = aws_env()
        self.endpoint = endpoint
        self.client = boto3.client(
            "secretsmanager",
            region_name=AWS_REGION,
            endpoint_url=endpoint,
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )

    def create(self, name: str, value: str) -> str:
        return str(self.client.create_secret(Name=name, SecretString=value)["ARN"])

    def env(self, **extra: str) -> dict[str, str]:
        return {**aws_env(), "AWS_REGION": AWS_REGION, "AWS_ENDPOINT_URL": self.endpoint, **extra}


@pytest.fixture
def secrets(moto_server: str) -> Secrets:
    """Secrets Manager on the loopback moto server (tests.fix_control_plane's moto_server)."""
    return Secrets(moto_server)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that logs in with IAM carries the `iam` marker (`pytest -m iam`, `-m 'not iam'`)."""
    for item in items:
        if "iam_user" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.iam)
