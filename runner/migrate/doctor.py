"""`vpc-migrate doctor`: check each link from this machine to the database, in order, and say which breaks.

Settings (the SSM parameter and the secret are read here) -> DNS of the host -> TCP to the port
(security groups) -> TLS trust (CA bundle) -> AWS credentials (the instance role) -> IAM token, or the
secret's fields -> login -> history table -> who holds the migration lock.
Each check runs only if the ones it depends on passed; later ones are reported as skipped.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .connection import DEFAULT_PORT, Connector
from .errors import ConnectionFailed, ExitCode, MigrateError


@dataclass
class Check:
    name: str
    status: str  # ok | failed | skipped | n/a
    detail: str
    exit_code: int = ExitCode.OK
    seconds: float = 0.0


CHECKS = (
    "settings",
    "DNS",
    "TCP",
    "TLS trust",
    "AWS credentials",
    "IAM token",
    "secret",
    "login",
    "history table",
    "migration lock",
)


class Doctor:
    def __init__(
        self,
        make_connector: Callable[[], Connector],
        schema: str,
        history_factory: Callable[[], Any],
        lock_key: int,
    ) -> None:
        self.make_connector = make_connector
        self.schema = schema
        self.history_factory = history_factory
        self.lock_key = lock_key
        self.conn: Any = None
        self.connector: Connector

    def run(self) -> list[Check]:
        started = time.perf_counter()
        try:
            self.connector = self.make_connector()
        except MigrateError as err:
            text = err.message + (f"\n{err.hint}" if err.hint else "")
            failed = Check("settings", "failed", text, err.exit_code, time.perf_counter() - started)
            return [failed, *(Check(name, "skipped", "an earlier check failed") for name in CHECKS[1:])]
        target = self.connector.target
        settings = Check("settings", "ok", target.describe(), seconds=time.perf_counter() - started)
        p = target.params
        host, port = p.get("hostaddr") or p.get("host"), int(p.get("port", DEFAULT_PORT))
        network = bool(host) and not str(host).startswith("/")
        steps: dict[str, Callable[[], str] | None] = {
            "DNS": (lambda: self._dns(str(host))) if network else None,
            "TCP": (lambda: self._tcp(str(host), port)) if network else None,
            "TLS trust": self._tls if p.get("sslmode", "").startswith("verify") else None,
            "AWS credentials": self._credentials if target.iam or target.secret else None,
            "IAM token": self._token if target.iam else None,
            "secret": self._secret if target.secret else None,
            "login": self._login,
            "history table": self._history,
            "migration lock": self._lock,
        }
        results = [settings]
        broken = False
        try:
            for name in CHECKS[1:]:
                step = steps[name]
                if step is None:
                    why = "not needed for this connection"
                    if name == "TLS trust":
                        why = f"sslmode={p.get('sslmode', 'prefer')}: no certificate check (login says if TLS was used)"
                    results.append(Check(name, "n/a", why))
                    continue
                if broken:
                    results.append(Check(name, "skipped", "an earlier check failed"))
                    continue
                started = time.perf_counter()
                try:
                    detail = step()
                    results.append(Check(name, "ok", detail, seconds=time.perf_counter() - started))
                except MigrateError as err:
                    text = err.message + (f"\n{err.hint}" if err.hint else "")
                    results.append(Check(name, "failed", text, err.exit_code, time.perf_counter() - started))
                    broken = True
        finally:
            if self.conn is not None:
                self.conn.close()
        return results

    # -- the checks, in order ---------------------------------------------------------------------
    def _dns(self, host: str) -> str:
        try:
            addresses = sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)})
        except socket.gaierror as err:
            raise ConnectionFailed(
                f"{host} does not resolve ({err.strerror})",
                hint="a private RDS name resolves only inside its VPC: run this on a kit runner, "
                "or through scripts/db-tunnel",
            ) from None
        return f"{host} -> {', '.join(addresses)}"

    def _tcp(self, host: str, port: int) -> str:
        started = time.perf_counter()
        try:
            with socket.create_connection((host, port), timeout=5):
                pass
        except ConnectionRefusedError:
            raise ConnectionFailed(
                f"{host}:{port} refused the connection: the host is reachable but nothing listens on that port",
                hint="check the port (RDS PostgreSQL: 5432 unless changed) and that the database is running; "
                "a security group would drop the packets (a timeout), not refuse them",
            ) from None
        except OSError as err:
            raise ConnectionFailed(
                f"cannot open TCP {host}:{port} ({err.strerror or type(err).__name__})",
                hint="the database security group must allow the runner security group on this port "
                "(the stack adds that rule for each configured database)",
            ) from None
        return f"{host}:{port} accepts connections ({(time.perf_counter() - started) * 1000:.0f} ms)"

    def _tls(self) -> str:
        p = self.connector.target.params
        mode, root = p.get("sslmode", "prefer (libpq default)"), p.get("sslrootcert")
        if not str(mode).startswith("verify"):
            return f"sslmode={mode}: the server certificate is not verified"
        if root == "system":
            return f"sslmode={mode} against the system trust store"
        path = Path(str(root or "~/.postgresql/root.crt")).expanduser()
        self.connector._check_ca_bundle()  # the same check (and message) `up` would give
        try:
            count = len(ssl.create_default_context(cafile=str(path)).get_ca_certs())
        except (ssl.SSLError, OSError) as err:
            raise ConnectionFailed(f"CA bundle {path} is not a usable PEM bundle ({err})") from None
        return f"sslmode={mode} with {count} CA certificate(s) from {path}"

    def _credentials(self) -> str:
        import boto3

        credentials = boto3.session.Session().get_credentials()
        if credentials is None:
            raise ConnectionFailed(
                "no AWS credentials found",
                hint="on a kit runner the instance role provides them; check the instance profile",
            )
        return f"found ({credentials.method})"

    def _token(self) -> str:
        self.connector.mint_token()
        return f"minted for {self.connector.target.params['user']} in {self.connector.target.region} (valid 15 min)"

    def _secret(self) -> str:
        secret = self.connector.secret
        if secret is None:  # the step runs only for a target with a secret
            return "no secret"
        return (
            f"read {secret.secret_id} (version {secret.version_id or 'unknown'}); "
            f"fields: {', '.join(secret.fields)}; the password is used, never shown"
        )

    def _login(self) -> str:
        self.conn = self.connector.connect("doctor")
        info = self.conn.info
        tls = "TLS" if self.conn.pgconn.ssl_in_use else "no TLS"
        return f"logged in as {info.user} to {info.dbname}, PostgreSQL {info.server_version // 10000}, {tls}"

    def _history(self) -> str:
        history = self.history_factory()
        records = history.records(self.conn)
        if not records:
            return f"{self.schema}.history not created yet (the first `up` creates it)"
        failed = sum(1 for r in records.values() if r.state in ("failed", "running"))
        latest = max((version for version in records if not version.repeatable), default=None)
        text = f"{len(records)} record(s)" + (f", latest version {latest}" if latest else "")
        return text + (f"; {failed} failed (run `vpc-migrate repair` once fixed)" if failed else "")

    def _lock(self) -> str:
        from .locking import AdvisoryLock

        holders = AdvisoryLock(self.conn, self.lock_key).holders()
        if not holders:
            return "free"
        return "held by " + "; ".join(h.describe() for h in holders)


def as_json(checks: list[Check]) -> list[dict[str, Any]]:
    return [{**asdict(c), "seconds": round(c.seconds, 3)} for c in checks]


def exit_code(checks: list[Check]) -> int:
    return next((c.exit_code for c in checks if c.status == "failed"), ExitCode.OK)
