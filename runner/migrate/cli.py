"""vpc-migrate: apply PostgreSQL migrations from a runner inside the VPC, with IAM auth and TLS.

Exit codes: 0 ok; 1 a migration failed; 2 bad input or usage (nothing touched); 3 cannot connect
or authenticate; 4 lock not obtained in time; 5 drift, or a failed migration needs `repair`;
130/143 interrupted by SIGINT/SIGTERM (rolled back, lock released).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import __version__
from .command import (
    DEFAULT_DIR,
    DEFAULT_SCHEMA,
    Context,
    cmd_baseline,
    cmd_check,
    cmd_doctor,
    cmd_exec,
    cmd_new,
    cmd_psql,
    cmd_repair,
    cmd_status,
    cmd_token,
    cmd_up,
    cmd_verify,
)
from .durations import parse_duration_ms
from .errors import BadInput, ExitCode, Interrupted, MigrateError, MigrationFailed
from .layouts import FORMATS
from .output import Reporter


# -- argument parsing ----------------------------------------------------------------------------
def _env_help(text: str, var: str) -> str:
    return f"{text} [env {var}]"


def build_parser() -> argparse.ArgumentParser:
    conn = argparse.ArgumentParser(add_help=False)
    g = conn.add_argument_group("connection")
    g.add_argument(
        "--database-url", help=_env_help("libpq URL, password or trust auth (local development)", "DATABASE_URL")
    )
    g.add_argument("--host", help=_env_help("database host", "PGHOST"))
    g.add_argument(
        "--hostaddr",
        help=_env_help(
            "IP address to connect to instead of resolving --host (through an "
            "SSM tunnel: 127.0.0.1); TLS and IAM still use --host",
            "PGHOSTADDR",
        ),
    )
    g.add_argument("--port", type=int, help=_env_help("database port (default 5432)", "PGPORT"))
    g.add_argument("--user", help=_env_help("database user", "PGUSER"))
    g.add_argument("--dbname", help=_env_help("database name", "PGDATABASE"))
    g.add_argument(
        "--region",
        help=_env_help("AWS region; inferred from *.REGION.rds.amazonaws.com hosts", "AWS_REGION, AWS_DEFAULT_REGION"),
    )
    g.add_argument(
        "--iam",
        action="store_true",
        help=_env_help("log in with a fresh RDS IAM token per connection", "VPC_MIGRATE_IAM=1"),
    )
    g.add_argument(
        "--ssm-parameter",
        help=_env_help(
            "SSM parameter holding the connection JSON the stack writes (IAM, or the secret it names)",
            "VPC_MIGRATE_SSM_PARAMETER",
        ),
    )
    g.add_argument(
        "--secret",
        metavar="ARN_OR_NAME",
        help=_env_help(
            "Secrets Manager secret with the password (and username, host, port, dbname), as RDS "
            "and the rotation templates write it; instead of --iam",
            "VPC_MIGRATE_SECRET",
        ),
    )
    g.add_argument(
        "--sslmode", help=_env_help("libpq sslmode; verify-full by default with --iam or --secret", "PGSSLMODE")
    )
    g.add_argument(
        "--sslrootcert",
        help=_env_help(
            "CA bundle; with --iam or --secret defaults to the RDS bundle the runner image installs", "PGSSLROOTCERT"
        ),
    )
    schema = argparse.ArgumentParser(add_help=False)
    schema.add_argument(
        "--schema",
        default=os.environ.get("VPC_MIGRATE_SCHEMA", DEFAULT_SCHEMA),
        help=_env_help(
            f"schema of the history table (default {DEFAULT_SCHEMA}); also names the lock", "VPC_MIGRATE_SCHEMA"
        ),
    )
    directory = argparse.ArgumentParser(add_help=False)
    directory.add_argument(
        "--dir",
        default=os.environ.get("VPC_MIGRATE_DIR", DEFAULT_DIR),
        help=_env_help(f"migrations directory (default {DEFAULT_DIR})", "VPC_MIGRATE_DIR"),
    )
    directory.add_argument(
        "--format",
        choices=FORMATS,
        default=os.environ.get("VPC_MIGRATE_FORMAT", "auto"),
        help=_env_help(
            "the folder's layout: auto (recognised file by file), or one tool's, which every file must follow",
            "VPC_MIGRATE_FORMAT",
        ),
    )
    directory.add_argument(
        "--placeholder",
        action="append",
        metavar="NAME=VALUE",
        help=_env_help(
            "the value of a Flyway ${NAME} placeholder, replaced in Flyway files (repeat it per placeholder)",
            "VPC_MIGRATE_PLACEHOLDERS, one NAME=VALUE per line",
        ),
    )
    lock = argparse.ArgumentParser(add_help=False)
    lock.add_argument(
        "--lock-wait", default="5min", help="how long to wait for another run's migration lock (default 5min)"
    )

    hold_args: tuple[tuple[str, ...], dict[str, Any]] = (
        ("--hold-on-failure",),
        {
            "metavar": "DURATION",
            "default": os.environ.get("VPC_MIGRATE_HOLD_ON_FAILURE") or None,
            "help": _env_help(
                "on failure, keep this kit runner alive this long (e.g. 30min) for an SSM session",
                "VPC_MIGRATE_HOLD_ON_FAILURE",
            ),
        },
    )
    parser = argparse.ArgumentParser(
        prog="vpc-migrate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vpc-migrate {__version__}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)

    def add(
        name: str, func: Callable[[Context], int], parents: list[argparse.ArgumentParser]
    ) -> argparse.ArgumentParser:
        doc = (func.__doc__ or "").strip()
        p = sub.add_parser(
            name,
            parents=parents,
            help=doc.splitlines()[0],
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, [conn, schema, directory, lock])
    p.add_argument("--target", help="apply up to and including this version")
    ahead = p.add_mutually_exclusive_group()
    ahead.add_argument("--dry-run", action="store_true", help="connect, check drift, print the plan; change nothing")
    ahead.add_argument(
        "--rehearse",
        action="store_true",
        help="run the pending transactional migrations in one transaction under the lock and the timeouts, then "
        "roll it back: the server's own errors, nothing changed (their table locks are held until the end)",
    )
    p.add_argument(
        "--lock-timeout", default="1s", help="per-statement wait for a table lock before retrying (default 1s)"
    )
    p.add_argument(
        "--lock-retries",
        type=int,
        default=8,
        help="retries after a lock timeout, with growing jittered pauses (default 8)",
    )
    p.add_argument(
        "--statement-timeout",
        default="60s",
        help="statement_timeout for transactional migrations (default 60s; no-transaction files: none)",
    )
    p.add_argument(
        "--allow-out-of-order", action="store_true", help="apply pending migrations older than the newest applied"
    )
    p.add_argument(*hold_args[0], **hold_args[1])
    p = add("status", cmd_status, [conn, schema, directory])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add("verify", cmd_verify, [conn, schema, directory])
    add("check", cmd_check, [directory])
    p = add("baseline", cmd_baseline, [conn, schema, directory, lock])
    p.add_argument("version", metavar="VERSION", nargs="?")
    p.add_argument(
        "--from",
        dest="from_tool",
        metavar="TOOL",
        choices=["flyway", "golang-migrate", "dbmate", "goose", "sqitch", "alembic"],
        help="record what this tool's own history table says it applied",
    )
    p = add("repair", cmd_repair, [conn, schema, directory, lock])
    p.add_argument("--accept-checksums", action="store_true", help="re-record checksums of edited applied files")
    p.add_argument(
        "--forget-missing", action="store_true", help="delete the records of applied migrations whose file is gone"
    )
    p = add("exec", cmd_exec, [conn, schema, lock])
    p.add_argument(*hold_args[0], **hold_args[1])
    p.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD ARGS...")
    p = add("psql", cmd_psql, [conn])
    p.add_argument("psql_args", nargs=argparse.REMAINDER, metavar="-- PSQL ARGS...")
    p = add("new", cmd_new, [directory])
    p.add_argument("name", metavar="NAME")
    p.add_argument("--python", action="store_true", help="create a .py migration defining migrate(conn)")
    p.add_argument("--timestamp", action="store_true", help="use a UTC timestamp version instead of the next number")
    add("token", cmd_token, [conn])
    p = add("doctor", cmd_doctor, [conn, schema])
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    return parser


def _on_signal(signum: int, _frame: object) -> None:
    # One stop request is enough: ignore repeats so rollback and lock release can finish.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Interrupted(signum)


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    reporter = Reporter(environ)
    reporter.gate_python_output()
    args = build_parser().parse_args(argv)
    ctx = Context(args, environ, reporter)
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _on_signal)
    hold_s = None
    if hold := getattr(args, "hold_on_failure", None):
        try:  # a bad value is bad input now, not a surprise after a failed migration
            hold_s = parse_duration_ms(hold, what="--hold-on-failure") / 1000
        except BadInput as err:
            reporter.error(err.message)
            return ExitCode.BAD_INPUT
    code = _run(ctx)
    if hold_s and code not in (ExitCode.OK, ExitCode.BAD_INPUT, ExitCode.INTERRUPTED, ExitCode.TERMINATED):
        from .hold import hold_runner

        hold_runner(hold_s, environ, reporter)
    return code


def _run(ctx: Context) -> int:
    reporter, environ = ctx.reporter, ctx.environ
    try:
        return int(ctx.args.func(ctx))
    except Interrupted as stop:
        reporter.info(
            f"interrupted by {signal.Signals(stop.signum).name}: the running migration was cancelled "
            "and rolled back, the lock released"
        )
        return stop.exit_code
    except MigrationFailed as err:
        file = os.path.relpath(err.path, environ.get("GITHUB_WORKSPACE") or os.getcwd())
        reporter.error(err.message, file=file, line=err.line, title="Migration failed")
        if err.hint:
            reporter.info(f"hint: {err.hint}")
        return err.exit_code
    except MigrateError as err:
        reporter.error(err.message)
        if err.hint:
            reporter.info(f"hint: {err.hint}")
        return err.exit_code
    except Exception as err:
        # A database error outside a migration (the history table, a permission): a message, not a traceback.
        import psycopg

        if not isinstance(err, psycopg.Error):
            raise
        message = reporter.redact(err.diag.message_primary or str(err).strip())
        reporter.error(f"the database refused: {message} (SQLSTATE {err.sqlstate})")
        if err.sqlstate == "42501":
            reporter.info("hint: the migration user needs USAGE and CREATE on the history schema (--schema)")
        return ExitCode.MIGRATION_FAILED


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
