"""Where the database is and how to log in: flags, the stack's SSM parameter, a secret, env, IAM tokens.

Precedence for each coordinate: command-line flag, then the SSM parameter (when one is named), then
the Secrets Manager secret (``--secret``), then the ``--database-url``/DATABASE_URL, then the libpq
environment (PGHOST...). Two ways to log in to RDS, both over verified TLS by default: IAM, where every
new connection gets a freshly minted token (they live 15 minutes, and a long run that reconnects must
not reuse an old one); or the password in a secret, read again once when a login fails after a
rotation. Tokens and passwords are registered with the reporter before use.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from .errors import BadInput, ConnectionFailed
from .output import Reporter
from .secret import CURRENT, PENDING, DatabaseSecret, SecretReader, secret_region

if TYPE_CHECKING:
    import psycopg

# Where the runner image installs the RDS global CA bundle (see infra's user data).
RDS_CA_BUNDLE = "/etc/vpc-runner-kit/rds-global-bundle.pem"
DEFAULT_PORT = 5432
CONNECT_TIMEOUT_S = 10
# RDS endpoints, proxies and clusters: <id>.<hash>.<region>.rds.amazonaws.com(.cn)
_RDS_HOST = re.compile(r"\.(?P<region>[a-z]{2}(?:-[a-z]+)+-\d+)\.rds\.amazonaws\.com(?:\.cn)?\.?$")
_WEAK_SSLMODES = {"disable", "allow", "prefer"}
# Client-side keepalives (libpq) and, below, server-side ones (per-session GUCs): a runner that
# dies without closing its socket must not keep the advisory lock or a transaction for long.
_CLIENT_KEEPALIVES = {"keepalives": "1", "keepalives_idle": "30", "keepalives_interval": "10", "keepalives_count": "3"}
_SESSION_SETUP = (
    "SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3;"
    " SET idle_in_transaction_session_timeout = '60s'"
)


def session_setup(server_version: int) -> list[str]:
    """The session settings every connection gets (and gets back after a migration, see engine.py)."""
    setup = [part.strip() for part in _SESSION_SETUP.split(";")]
    if server_version >= 140000:  # notices a vanished client even mid-statement
        setup.append("SET client_connection_check_interval = '10s'")
    return setup


@dataclass(frozen=True)
class ConnectionOptions:
    """What the command line said; None means "not given"."""

    database_url: str | None = None
    host: str | None = None
    hostaddr: str | None = None
    port: int | None = None
    user: str | None = None
    dbname: str | None = None
    region: str | None = None
    iam: bool = False
    sslmode: str | None = None
    sslrootcert: str | None = None
    ssm_parameter: str | None = None
    secret: str | None = None


@dataclass(frozen=True)
class Target:
    """A resolved database: libpq parameters (no token, no secret's password) and how to authenticate."""

    params: dict[str, str] = field(default_factory=dict)
    iam: bool = False
    region: str | None = None
    secret: DatabaseSecret | None = None  # as read when resolving; the Connector keeps it fresh
    secret_region: str | None = None

    def describe(self) -> str:
        host = self.params.get("host", "local socket")
        where = f"{host}:{self.params['port']}" if "port" in self.params else host
        dbname, user = self.params.get("dbname", "(default)"), self.params.get("user", "(default user)")
        text = f"database {dbname} on {where} as {user}"
        if self.iam:
            text += f" (IAM, sslmode={self.params.get('sslmode')})"
        elif self.secret:
            text += f" (password from secret {self.secret.secret_id}, sslmode={self.params.get('sslmode')})"
        return text


def infer_region(host: str) -> str | None:
    match = _RDS_HOST.search(host.lower())
    return match["region"] if match else None


def resolve_target(options: ConnectionOptions, environ: Mapping[str, str]) -> Target:
    """Combine flags, SSM parameter, secret, URL and environment into one Target, or raise BadInput."""
    ssm_name = options.ssm_parameter or environ.get("VPC_MIGRATE_SSM_PARAMETER")
    region = options.region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION")
    if ssm_name and options.database_url:
        raise BadInput("give either --database-url or --ssm-parameter, not both")
    from_ssm = read_ssm_parameter(ssm_name, region) if ssm_name else {}
    secret_id = options.secret or environ.get("VPC_MIGRATE_SECRET") or from_ssm.get("secret")
    asked_iam = options.iam or environ.get("VPC_MIGRATE_IAM", "").lower() in ("1", "true", "yes")
    if from_ssm and "secret" in from_ssm:
        if from_ssm.get("iam"):
            raise BadInput(f"SSM parameter {ssm_name} names both iam and secret: the stack writes one of them")
    else:  # the stack's parameter means IAM unless it names a secret
        asked_iam = asked_iam or bool(from_ssm.get("iam", bool(from_ssm)))
    if secret_id and asked_iam:
        raise BadInput("IAM and a secret are two ways to log in: give --iam or --secret, not both")
    secret, secret_at = None, None
    if secret_id:
        secret_at = secret_region(str(secret_id), options.region or from_ssm.get("region") or region)
        secret = SecretReader(str(secret_id), secret_at).read()  # AWSCURRENT: found, or read() raised
    url = options.database_url or (None if ssm_name else environ.get("DATABASE_URL"))
    from_url = _parse_url(url) if url else {}
    from_secret = secret.coordinates if secret else {}

    params: dict[str, str] = {}
    for key, flag, env in (
        ("host", options.host, "PGHOST"),
        ("port", options.port, "PGPORT"),
        ("user", options.user, "PGUSER"),
        ("dbname", options.dbname, "PGDATABASE"),
    ):
        value = flag if flag is not None else (from_ssm.get(key) or from_secret.get(key) or from_url.get(key))
        value = value if value not in (None, "") else environ.get(env)
        if value not in (None, ""):
            params[key] = str(value)
    if not params and not url and not secret and not from_ssm and not environ.get("PGSERVICE"):
        raise BadInput(
            "no database given: --database-url (DATABASE_URL), --host/--user/--dbname (PGHOST...), "
            "--ssm-parameter (VPC_MIGRATE_SSM_PARAMETER) or --secret (VPC_MIGRATE_SECRET)"
        )
    hostaddr = options.hostaddr or environ.get("PGHOSTADDR")
    if hostaddr:  # TCP goes here; TLS verification and the IAM token keep using the host name
        params["hostaddr"] = hostaddr
    for key, value in from_url.items():  # keep any other URL parameters (options, sslcert...)
        params.setdefault(key, value)
    if "port" in params and not params["port"].isdigit():
        raise BadInput(f"port {params['port']!r} is not a number")

    region = options.region or from_ssm.get("region") or region
    sslmode = options.sslmode or from_ssm.get("sslmode") or from_url.get("sslmode") or environ.get("PGSSLMODE")
    sslrootcert = options.sslrootcert or from_url.get("sslrootcert") or environ.get("PGSSLROOTCERT")
    if not asked_iam and secret is None:
        if sslmode:
            params["sslmode"] = sslmode
        if sslrootcert:
            params["sslrootcert"] = sslrootcert
        return Target(params=params, iam=False, region=region)

    how = "IAM authentication" if asked_iam else f"logging in with secret {secret_id}"
    host = params.get("host")
    if not host or host.startswith("/"):
        raise BadInput(f"{how} needs the database host name (--host, PGHOST, the SSM parameter or the secret's host)")
    if not params.get("user"):
        raise BadInput(f"{how} needs the database user (--user, PGUSER, the SSM parameter or the secret's username)")
    if "password" in params:
        raise BadInput(f"the database URL has a password, but {how} supplies one: remove one of them")
    params.setdefault("port", str(DEFAULT_PORT))
    sslmode = sslmode or "verify-full"
    if sslmode in _WEAK_SSLMODES:
        raise BadInput(
            f"sslmode={sslmode} would send the {'IAM token' if asked_iam else 'password'} without TLS; "
            "use verify-full (default), verify-ca or require"
        )
    params["sslmode"] = sslmode
    if sslmode.startswith("verify"):
        params["sslrootcert"] = sslrootcert or RDS_CA_BUNDLE
    if secret is not None:
        return Target(params=params, region=region, secret=secret, secret_region=secret_at)

    inferred = infer_region(host)
    if inferred and region and inferred != region:
        raise BadInput(
            f"region {region} does not match the database host {host} (region {inferred}); "
            "a token signed for the wrong region is refused as 'PAM authentication failed'"
        )
    region = region or inferred
    if not region:
        raise BadInput("IAM authentication needs a region: --region, AWS_REGION, or an *.REGION.rds.amazonaws.com host")
    return Target(params=params, iam=True, region=region)


def _parse_url(url: str) -> dict[str, str]:
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
    except Exception as err:  # psycopg.ProgrammingError; its text never includes the password
        raise BadInput(f"the database URL is not valid: {str(err).splitlines()[0]}") from None


def read_ssm_parameter(name: str, region: str | None) -> dict[str, Any]:
    """The stack's connection JSON: {"host", "port", "dbname", "user", "region"} and "iam" or "secret".

    With a "secret", host, user and dbname may come from the secret instead."""
    if not region:
        raise BadInput(f"reading SSM parameter {name} needs a region: --region or AWS_REGION")
    import boto3
    import botocore.exceptions

    try:
        value = boto3.client("ssm", region_name=region).get_parameter(Name=name, WithDecryption=True)["Parameter"][
            "Value"
        ]
    except botocore.exceptions.NoCredentialsError:
        raise ConnectionFailed(
            f"no AWS credentials to read SSM parameter {name}", hint="on a kit runner the instance role provides them"
        ) from None
    except botocore.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "ParameterNotFound":
            raise BadInput(f"SSM parameter {name} does not exist in {region}") from None
        raise ConnectionFailed(f"cannot read SSM parameter {name}: {code}") from None
    except botocore.exceptions.BotoCoreError as err:
        raise ConnectionFailed(f"cannot read SSM parameter {name}: {err}") from None
    try:
        data = json.loads(value)
    except ValueError:
        raise BadInput(f"SSM parameter {name} is not JSON") from None
    if not isinstance(data, dict):
        raise BadInput(f"SSM parameter {name} must hold a JSON object")
    missing = [key for key in ("host", "user", "dbname") if not data.get(key) and not data.get("secret")]
    if missing:
        raise BadInput(f"SSM parameter {name} lacks {', '.join(missing)}")
    return data


class Connector:
    """Opens connections to one Target; mints and masks an IAM token for each."""

    def __init__(self, target: Target, reporter: Reporter, environ: Mapping[str, str]) -> None:
        self.target = target
        self.reporter = reporter
        self.environ = environ
        self._rds: Any = None
        self.secret = target.secret
        if self.secret is not None:
            self._mask_password(self.secret.password)

    def _mask_password(self, password: str) -> None:
        # Both forms a child may print: as given (PGPASSWORD) and URL-encoded (DATABASE_URL).
        self.reporter.mask(password)
        self.reporter.mask(quote(password, safe=""))

    def password(self) -> str | None:
        """What this connection logs in with: a fresh IAM token, the secret's password, or the URL's."""
        if self.target.iam:
            return self.mint_token()
        if self.secret is not None:
            return self.secret.password
        return self.target.params.get("password")

    def reread_secret(self) -> bool:
        """After a failed login: has the secret changed since it was read? Adopt the new password if so.

        AWSCURRENT first; if unchanged, AWSPENDING, which a rotation has already set on the database
        before it becomes current. Either way one read per stage, so a wrong password fails fast.
        """
        if self.secret is None or self.target.secret_region is None:
            return False
        reader = SecretReader(self.secret.secret_id, self.target.secret_region)
        for stage in (CURRENT, PENDING):
            fresh = reader.read(stage)
            if fresh is not None and fresh.password != self.secret.password:
                self._mask_password(fresh.password)
                self.reporter.info(f"secret {self.secret.secret_id} has a new password ({stage}): logging in again")
                self.secret = fresh
                return True
        return False

    def mint_token(self) -> str:
        import botocore.exceptions

        if self._rds is None:
            import boto3

            self._rds = boto3.client("rds", region_name=self.target.region)
        p = self.target.params
        try:
            token: str = self._rds.generate_db_auth_token(
                DBHostname=p["host"], Port=int(p["port"]), DBUsername=p["user"], Region=self.target.region
            )
        except botocore.exceptions.NoCredentialsError:
            raise ConnectionFailed(
                "no AWS credentials to sign an IAM database token",
                hint="on a kit runner the instance role provides them; "
                "locally, log in with `aws sso login` or set AWS_PROFILE",
            ) from None
        self.reporter.mask(token)
        return token

    def connect(self, purpose: str) -> psycopg.Connection[Any]:
        """An autocommit connection with keepalives and session timeouts set."""
        import psycopg
        from psycopg.conninfo import make_conninfo

        self._check_ca_bundle()
        kwargs = {
            **{k: v for k, v in self.target.params.items() if k != "password"},
            **_CLIENT_KEEPALIVES,
            "connect_timeout": str(CONNECT_TIMEOUT_S),
            "application_name": self.application_name(purpose),
        }

        def attempt() -> psycopg.Connection[Any]:
            password = self.password()
            return psycopg.connect(
                make_conninfo("", **kwargs, **({"password": password} if password else {})), autocommit=True
            )

        try:
            try:
                conn = attempt()
            except psycopg.OperationalError:
                # libpq gives no SQLSTATE for a refused login, so a changed secret is the signal to retry.
                if not self.reread_secret():
                    raise
                conn = attempt()
        except psycopg.OperationalError as err:
            detail = self.reporter.redact(str(err)).strip()
            raise ConnectionFailed(
                f"cannot connect to {self.target.describe()}: {detail}", hint=self._failure_hint()
            ) from None
        conn.execute("; ".join(session_setup(conn.info.server_version)))
        return conn

    def application_name(self, purpose: str) -> str:
        name = f"vpc-migrate {purpose}"
        repo, run = self.environ.get("GITHUB_REPOSITORY"), self.environ.get("GITHUB_RUN_ID")
        if repo and run:
            name += f" {repo}#{run}"
        return name[:63]

    def _check_ca_bundle(self) -> None:
        root = self.target.params.get("sslrootcert")
        if (
            self.target.params.get("sslmode", "").startswith("verify")
            and root
            and root != "system"
            and not Path(root).is_file()
        ):
            raise ConnectionFailed(
                f"CA bundle {root} not found; sslmode={self.target.params['sslmode']} cannot verify the server",
                hint="kit runners install the RDS bundle there; elsewhere download "
                "https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem and pass --sslrootcert",
            )

    def _failure_hint(self) -> str | None:
        host = self.target.params.get("hostaddr") or self.target.params.get("host")
        port = self.target.params.get("port", str(DEFAULT_PORT))
        if not host or host.startswith("/"):
            return None
        try:
            with socket.create_connection((host, int(port)), timeout=3):
                reachable = True
        except OSError:
            reachable = False
        if not reachable:
            return (
                f"{host}:{port} is not reachable: check DNS, that this runner is in the VPC, and that the "
                "database security group allows the runner security group on that port"
            )
        if self.secret is not None:
            return (
                f"the server answered but refused the login; check that secret {self.secret.secret_id} holds the "
                "current password of that database user (read again once already), and that the user may "
                "log in to that database"
            )
        if not self.target.iam:
            return None
        p = self.target.params
        return (
            "the server answered but refused the login; RDS says only 'PAM authentication failed', so check:\n"
            "  1. IAM database authentication is enabled on the instance or cluster\n"
            "  2. the runner's role allows rds-db:connect on "
            f"arn:aws:rds-db:{self.target.region}:ACCOUNT:dbuser:RESOURCE_ID/{p['user']}\n"
            "     (RESOURCE_ID is the DbiResourceId, or the cluster resource id cluster-... for Aurora)\n"
            f"  3. the database role exists and was granted: GRANT rds_iam TO {p['user']};\n"
            f"  4. the region the token is signed for ({self.target.region}) is the database's region\n"
            "  5. the runner's clock is right (tokens carry their signing time and live 15 minutes)"
        )

    def child_environment(self) -> dict[str, str]:
        """Environment for `exec` and `psql`: PG* variables and DATABASE_URL with a fresh token or the
        secret's password. Never an argument: a command line is visible to every user in `ps`."""
        env = dict(os.environ)
        p = self.target.params
        password = self.password()
        if password:
            self._mask_password(password)
        for key, var in (
            ("host", "PGHOST"),
            ("hostaddr", "PGHOSTADDR"),
            ("port", "PGPORT"),
            ("user", "PGUSER"),
            ("dbname", "PGDATABASE"),
            ("sslmode", "PGSSLMODE"),
            ("sslrootcert", "PGSSLROOTCERT"),
        ):
            if key in p:
                env[var] = p[key]
        if password:
            env["PGPASSWORD"] = password
        env["DATABASE_URL"] = self._url(password)
        return env

    def _url(self, password: str | None) -> str:
        p = self.target.params
        host = p.get("host", "")
        query: dict[str, str] = {k: p[k] for k in ("sslmode", "sslrootcert") if k in p}
        if host.startswith("/"):
            query["host"], host = host, ""
        elif ":" in host:
            host = f"[{host}]"
        auth = quote(p.get("user", ""), safe="")
        if password:
            auth += ":" + quote(password, safe="")
        netloc = f"{auth}@{host}" if auth else host
        if host and "port" in p:
            netloc += f":{p['port']}"
        url = f"postgresql://{netloc}/{quote(p.get('dbname', ''), safe='')}"
        return url + ("?" + urlencode(query) if query else "")
