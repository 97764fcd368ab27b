"""The vpc-migrate commands: one function per subcommand, whose docstring is its help.

Argument parsing, signals and the error edge (where MigrateError becomes a message and an exit code)
live in cli.py; everything here raises, and never prints a traceback's worth of anything itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .connection import ConnectionOptions, Connector, resolve_target
from .durations import format_ms, parse_duration_ms
from .errors import BadInput, DriftDetected, ExitCode, Interrupted, MigrateError
from .files import Migration, Version, validate
from .layouts import load_migrations, new_migration, parse_placeholders
from .output import RELAY_GRACE_S, Reporter, markdown_cell

DEFAULT_DIR = "migrations"
DEFAULT_SCHEMA = "vpc_migrate"


class Context:
    """What every command gets: parsed arguments, environment and the reporter."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str], reporter: Reporter) -> None:
        self.args = args
        self.environ = environ
        self.reporter = reporter

    def connector(self, *, iam: bool = False) -> Connector:
        a = self.args
        options = ConnectionOptions(
            database_url=a.database_url,
            host=a.host,
            hostaddr=a.hostaddr,
            port=a.port,
            user=a.user,
            dbname=a.dbname,
            region=a.region,
            iam=a.iam or iam,
            sslmode=a.sslmode,
            sslrootcert=a.sslrootcert,
            ssm_parameter=a.ssm_parameter,
            secret=a.secret,
        )
        return Connector(resolve_target(options, self.environ), self.reporter, self.environ)

    def migrations(self) -> list[Migration]:
        items = getattr(self.args, "placeholder", None)
        if items is None:  # VPC_MIGRATE_PLACEHOLDERS: one NAME=VALUE per line
            items = [line for line in self.environ.get("VPC_MIGRATE_PLACEHOLDERS", "").splitlines() if line.strip()]
        return load_migrations(Path(self.args.dir), getattr(self.args, "format", "auto"), parse_placeholders(items))

    def history(self) -> Any:
        from .history import History

        return History(self.args.schema, self.environ)

    def read_plan(self, connector: Connector, migrations: list[Migration], purpose: str) -> Any:
        """Files vs history, read on a short-lived connection without taking the lock."""
        from .plan import build_plan

        conn = connector.connect(purpose)
        try:
            return build_plan(migrations, self.history().records(conn))
        finally:
            conn.close()

    def lock_wait_s(self) -> float:
        return parse_duration_ms(self.args.lock_wait, what="--lock-wait") / 1000

    @contextmanager
    def locked(self, connector: Connector, lock_conn: Any = None) -> Iterator[Any]:
        """Hold the migration lock (on its own connection, opened here unless given) for the block."""
        from .locking import AdvisoryLock, lock_key

        lock_conn = lock_conn or connector.connect("lock")
        lock = AdvisoryLock(lock_conn, lock_key(self.args.schema))
        try:
            waited = lock.acquire(self.lock_wait_s(), self.reporter.info)
            if waited >= 0.5:
                self.reporter.info(f"migration lock acquired after {waited:.1f} s")
            yield lock_conn
        finally:
            try:
                lock.release()
            finally:
                lock_conn.close()


# -- commands ------------------------------------------------------------------------------------
def cmd_up(ctx: Context) -> int:
    """Apply pending migrations in version order.

    Each transactional migration commits together with its history row; a lock it cannot get
    within --lock-timeout is retried with backoff. With --dry-run: connect, check drift and
    print the plan, changing nothing. With --rehearse: run the pending transactional migrations
    in one transaction, under the migration lock and the timeouts, then roll it back.
    """
    from .plan import build_plan, describe_drift

    a, rep = ctx.args, ctx.reporter
    target = _parse_version(a.target) if a.target else None
    migrations = ctx.migrations()
    policy_args = (
        parse_duration_ms(a.lock_timeout, what="--lock-timeout"),
        parse_duration_ms(a.statement_timeout, what="--statement-timeout"),
    )
    connector, history = ctx.connector(), ctx.history()

    def check(plan: Any) -> list[Any]:
        drift = [e for e in plan.drift if not (a.allow_out_of_order and e.out_of_order)]
        if drift:
            raise DriftDetected(
                "refusing to migrate: the database and the migration files disagree:\n  " + describe_drift(drift),
                hint="`vpc-migrate status` shows every migration; `repair` clears failed records "
                "(--accept-checksums re-records edited files); --allow-out-of-order applies late branches",
            )
        # --target stops the versioned migrations; repeatables have no version and run after them (as Flyway's)
        return [e for e in plan.pending if target is None or e.version <= target or e.version.repeatable]

    # First a look without the lock, on the connection that will hold it: a run with nothing to do ends
    # here (one connection, no file parsed), and a bad pending file is refused before anything is written.
    # Drift seen now is judged again under the lock: another run may be applying these very files.
    first = connector.connect("lock")
    try:
        plan = build_plan(migrations, history.records(first))
        pending = [] if plan.drift and not a.dry_run else check(plan)
        if not plan.drift and not pending:
            version = plan.applied_version.version_text if plan.applied_version else ""
            first.close()
            already = sum(1 for e in plan.entries if e.record is not None)
            rep.summary(_summary_markdown("vpc-migrate up", connector, [], already))
            rep.set_outputs({"applied-count": "0", "version": version, **({"pending-count": "0"} if a.dry_run else {})})
            rep.info(f"nothing to apply: the database is up to date{f' at version {version}' if version else ''}")
            return ExitCode.OK
        validated = {m.version: m for m in validate([e.migration for e in pending])}
        _note_grammar(rep, first.info.server_version, validated.values())
        if a.dry_run:
            first.close()
            return _dry_run(ctx, connector, [validated[e.version] for e in pending])
        if a.rehearse:
            check(plan)  # drift refuses a rehearsal as it refuses a run
            return _rehearse(ctx, connector, first, [validated[e.version] for e in pending], policy_args)
    except BaseException:
        first.close()
        raise
    return _apply(ctx, connector, first, check, migrations, validated, policy_args)


def _rehearse(
    ctx: Context, connector: Connector, lock_conn: Any, pending: list[Migration], policy_args: tuple[int, int]
) -> int:
    """Under the lock, on a second connection: the pending migrations in one transaction, rolled back."""
    from .engine import Engine, Policy, collect_notices

    rep = ctx.reporter
    policy = Policy(lock_timeout_ms=policy_args[0], statement_timeout_ms=policy_args[1], lock_retries=0)
    with ctx.locked(connector, lock_conn) as lock_conn, ExitStack() as stack:
        conn = connector.connect("migrate")
        stack.callback(conn.close)
        collect_notices(conn)
        engine = Engine(conn, lock_conn, ctx.history(), policy, rep)
        stack.callback(engine.close)
        rep.info(
            f"rehearsal against {connector.target.describe()}: {len(pending)} pending, run in one transaction "
            "that is rolled back; their table locks are held until it ends"
        )
        rehearsed, stopped = engine.rehearse(pending)
    for m in rehearsed:
        rep.info(f"rehearsed {m.filename}")
    if stopped is not None:
        why = "a Python migration (it could commit)" if stopped.kind == "python" else "it runs outside a transaction"
        rep.info(
            f"stopped before {stopped.filename}: {why}; it and the {len(pending) - len(rehearsed) - 1} after it "
            "were not rehearsed (they may depend on it)"
        )
    rep.info(f"rehearsal done: {len(rehearsed)} of {len(pending)} ran and were rolled back; nothing changed")
    rep.set_outputs({"applied-count": "0", "pending-count": str(len(pending)), "rehearsed-count": str(len(rehearsed))})
    return ExitCode.OK


def _note_grammar(rep: Reporter, server_version: int, migrations: Any) -> None:
    """Files are parsed with the grammar pglast bundles; an older server may reject what it accepted."""
    if not any(m.kind == "sql" for m in migrations):
        return
    from pglast.parser import get_postgresql_version

    grammar, server = get_postgresql_version()[0], server_version // 10000
    if server < grammar:
        rep.info(
            f"note: files are checked with PostgreSQL {grammar}'s grammar and this server runs {server}: "
            f"syntax newer than {server} passes the check and fails when it runs (and is rolled back)"
        )


def _dry_run(ctx: Context, connector: Connector, pending: list[Migration]) -> int:
    rep = ctx.reporter
    rep.info(
        f"dry run against {connector.target.describe()}: {len(pending)} pending, nothing changed. Checked: "
        "the history against the files (drift) and each pending file's syntax and directives; not run, so "
        "errors only the server finds (a missing column, a lock) show up when `up` runs them"
    )
    for m in pending:
        how = "in one transaction" if m.settings.transactional else "outside a transaction"
        title = f"would apply {m.filename} ({how})"
        with rep.group(title):
            if not rep.actions:
                rep.info(f"-- {title}")
            rep.info(m.runs.rstrip())
    rep.summary(_summary_markdown("vpc-migrate up --dry-run", connector, [(m, "pending", None) for m in pending], 0))
    rep.set_outputs({"applied-count": "0", "pending-count": str(len(pending))})
    return ExitCode.OK


def _apply(
    ctx: Context,
    connector: Connector,
    lock_conn: Any,
    check: Callable[[Any], list[Any]],
    migrations: list[Migration],
    validated: dict[Version, Migration],
    policy_args: tuple[int, int],
) -> int:
    """Under the lock, on a second connection: the plan again, then each pending migration."""
    from .engine import Engine, Policy, collect_notices
    from .plan import build_plan

    a, rep, history = ctx.args, ctx.reporter, ctx.history()
    policy = Policy(lock_timeout_ms=policy_args[0], statement_timeout_ms=policy_args[1], lock_retries=a.lock_retries)
    rows: list[tuple[Migration, str, float | None]] = []
    already, version = 0, ""
    newest: Version | None = None  # the newest versioned migration applied, for the `version` output
    failure: BaseException | None = None
    with ctx.locked(connector, lock_conn) as lock_conn, ExitStack() as stack:
        conn = connector.connect("migrate")
        try:
            collect_notices(conn)
            plan = build_plan(migrations, history.records(conn))
            if plan.applied_version:
                newest, version = plan.applied_version.version, plan.applied_version.version_text
            # Pending now and before the lock: validated then (a record cleared meanwhile is validated now).
            pending = [
                replace(e, migration=validated.get(e.version) or validate([e.migration])[0]) for e in check(plan)
            ]
            # After the drift check: a run that refuses writes nothing, not even the table.
            history.ensure(conn, [e.version for e in pending], policy.lock_timeout_ms)
            already = sum(1 for e in plan.entries if e.record is not None)
            rep.info(f"{connector.target.describe()}: {already} applied, {len(pending)} to apply")
            engine = Engine(conn, lock_conn, history, policy, rep)
            stack.callback(engine.close)
            for index, entry in enumerate(pending):
                m = entry.migration
                how = "" if m.settings.transactional else " (no transaction)"
                try:
                    with rep.group(f"{m.filename}{how}"):
                        if rep.actions:
                            rep.info(m.runs.rstrip())
                        outcome = engine.apply(m)
                except BaseException:
                    rows.append((m, "failed", None))
                    rows.extend((e.migration, "skipped", None) for e in pending[index + 1 :])
                    raise
                retried = f", {outcome.attempts} attempts" if outcome.attempts > 1 else ""
                rep.info(f"applied {m.filename}{how} in {format_ms(outcome.duration_ms)}{retried}")
                rows.append((m, "applied", outcome.duration_ms))
                if not m.version.repeatable and (newest is None or m.version > newest):
                    newest, version = m.version, m.version_text  # out of order: the newest stays the newest
        except BaseException as err:
            failure = err
            raise
        finally:
            conn.close()
            applied_count = sum(1 for _, state, _ in rows if state == "applied")
            rep.summary(_summary_markdown("vpc-migrate up", connector, rows, already, failure))
            rep.set_outputs({"applied-count": str(applied_count), "version": version})
    if not rows:
        rep.info(f"nothing to apply: the database is up to date{f' at version {version}' if version else ''}")
    else:
        rep.info(f"{len(rows)} applied" + (f", now at version {version}" if version else ""))
    return ExitCode.OK


def cmd_status(ctx: Context) -> int:
    """Show each migration's state: applied, pending, changed, missing or failed.

    --json prints a list of objects with version, name, state, checksum, applied_at (and more).
    """
    plan = ctx.read_plan(ctx.connector(), ctx.migrations(), "status")
    if ctx.args.json:
        ctx.reporter.data_json([e.as_json() for e in plan.entries])
        return ExitCode.OK
    width = max((len(e.migration.version_text) for e in plan.entries if e.migration), default=4)
    lines = [f"{'VERSION':<16} {'STATE':<9} {'APPLIED AT (UTC)':<20} NAME"]
    for e in plan.entries:
        rec = e.record
        when = rec.finished_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if rec and rec.finished_at else ""
        shown = "baseline" if e.state.value == "applied" and rec and rec.state == "baseline" else e.state.value
        state = shown + ("*" if e.out_of_order else "")
        missing_number = e.migration is None and e.version_text.isdigit()  # padded like the files beside it
        version = e.version_text.zfill(width) if missing_number else e.version_text
        again = " (changed: runs again)" if e.again else ""
        lines.append(f"{version:<16} {state:<9} {when:<20} {e.name}{again}")
    if any(e.out_of_order for e in plan.entries):
        lines.append("* pending but older than the newest applied version (out of order)")
    ctx.reporter.data("\n".join(lines))
    return ExitCode.OK


def cmd_verify(ctx: Context) -> int:
    """Check for drift and exit 5 if there is any; change nothing.

    Drift: a changed, missing or failed migration, or a pending one older than the newest applied.
    A pending file that `up` would refuse (syntax, directives) exits 2.
    """
    from .plan import describe_drift

    plan = ctx.read_plan(ctx.connector(), ctx.migrations(), "verify")
    if plan.drift:
        raise DriftDetected("drift between the database and the migration files:\n  " + describe_drift(plan.drift))
    validate([e.migration for e in plan.pending])  # a pending file that would be refused fails verify too
    ctx.reporter.info(f"no drift: {len(plan.entries) - len(plan.pending)} applied, {len(plan.pending)} pending")
    return ExitCode.OK


def cmd_check(ctx: Context) -> int:
    """Validate every migration file without a database: names, directives, SQL syntax, Python.

    `up` validates the files it is about to apply; this checks them all, e.g. in a pull request's CI.
    """
    migrations = validate(ctx.migrations())
    statements = sum(len(m.statements) for m in migrations)
    ctx.reporter.info(f"{len(migrations)} migration file(s) valid ({statements} SQL statement(s))")
    return ExitCode.OK


def cmd_baseline(ctx: Context) -> int:
    """Record migrations as applied without running them, to adopt an existing database.

    VERSION: every file up to that file's version. --from TOOL (flyway, golang-migrate, dbmate, goose):
    the files the previous tool's own history table says it applied, refused naming the first file or
    version they disagree on. Refused when vpc-migrate's history already has records.
    """
    every = ctx.migrations()
    if ctx.args.version is None and ctx.args.from_tool is None:
        raise BadInput("baseline needs VERSION (the last file to record) or --from TOOL")
    if ctx.args.version is not None and ctx.args.from_tool is not None:
        raise BadInput("give VERSION or --from TOOL, not both")
    if ctx.args.version is not None:
        version = _parse_version(ctx.args.version)
        if not any(m.version == version for m in every):
            newest = f"; the files go up to {every[-1].filename}" if every else ""
            raise BadInput(f"no migration file has version {ctx.args.version}{newest}: name the last file to record")
    connector, history = ctx.connector(), ctx.history()
    with ctx.locked(connector):
        conn = connector.connect("baseline")
        try:
            existing = history.records(conn)
            if existing:
                raise BadInput(
                    f"the history already has {len(existing)} record(s); baseline is for a database with none"
                )
            if ctx.args.from_tool is not None:
                from .adopt import match, read_history

                applied = read_history(conn, ctx.args.from_tool)
                versioned = [m for m in every if not m.version.repeatable]  # Flyway's repeatables: the next `up`
                chosen = set(match(applied, {m.version_text: m.filename for m in versioned}, ctx.args.from_tool))
                migrations = [m for m in versioned if m.version_text in chosen]
            else:
                migrations = [m for m in every if m.version <= version]
            if not migrations:
                raise BadInput(f"{ctx.args.from_tool} recorded nothing as applied: nothing to baseline")
            history.ensure(conn, [m.version for m in migrations])
            now = datetime.now(UTC)
            with conn.transaction():
                for m in migrations:
                    history.record_applied(conn, m, now, state="baseline")
        finally:
            conn.close()
    ctx.reporter.info(f"baselined {len(migrations)} migration(s) up to {migrations[-1].filename}")
    return ExitCode.OK


def cmd_repair(ctx: Context) -> int:
    """Clear failed records, after a failed non-transactional migration was fixed by hand.

    The cleared migrations are pending again and run on the next `up`. With --accept-checksums,
    also re-record the checksums of applied files that were edited since; with --forget-missing,
    delete the records of applied migrations whose file was deleted (squashed, or renamed).
    """
    from .plan import State, build_plan

    migrations = ctx.migrations()
    connector, history = ctx.connector(), ctx.history()
    with ctx.locked(connector):
        conn = connector.connect("repair")
        try:
            plan = build_plan(migrations, history.records(conn))
            failed = [e for e in plan.entries if e.state == State.FAILED]
            changed = [e for e in plan.entries if e.state == State.CHANGED] if ctx.args.accept_checksums else []
            missing = [e for e in plan.entries if e.state == State.MISSING] if ctx.args.forget_missing else []
            with conn.transaction():
                if failed or missing:
                    history.delete(conn, [e.version for e in failed + missing])
                for e in changed:
                    history.update_checksum(conn, e.migration)
        finally:
            conn.close()
    for e in failed:
        ctx.reporter.info(f"cleared failed record of {e.label}: it is pending again")
    for e in changed:
        ctx.reporter.info(f"re-recorded the checksum of {e.label}")
    for e in missing:
        ctx.reporter.info(f"forgot {e.label}: its record is gone (what it did to the schema stays)")
    if not failed and not changed and not missing:
        ctx.reporter.info("nothing to repair")
    return ExitCode.OK


def cmd_exec(ctx: Context) -> int:
    """Run any migration tool (alembic, flyway, prisma, dbmate...) while holding the migration lock.

    The command gets PGHOST, PGPORT, PGUSER, PGPASSWORD (a fresh IAM token with --iam, the secret's
    password with --secret), PGDATABASE, PGSSLMODE, PGSSLROOTCERT and DATABASE_URL, in its environment
    only; vpc-migrate exits with the command's exit code.
    """
    command = ctx.args.command
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise BadInput("exec needs a command: vpc-migrate exec -- alembic upgrade head")
    if shutil.which(command[0]) is None:
        raise BadInput(f"command not found: {command[0]}")
    connector = ctx.connector()
    with ctx.locked(connector):
        env = connector.child_environment()
        ctx.reporter.info(f"running {' '.join(command)} against {connector.target.describe()}")
        return _run_child(command, env, ctx.reporter)


def cmd_psql(ctx: Context) -> int:
    """Open psql on the database the same way (for a developer in an SSM session on a runner).

    Arguments after -- go to psql, e.g. vpc-migrate psql -- -c 'select 1'.
    """
    psql = shutil.which("psql")
    if psql is None:
        raise BadInput("psql not found: install the PostgreSQL client (apt-get install postgresql-client)")
    env = ctx.connector().child_environment()
    args = [a for a in ctx.args.psql_args if a != "--"]
    if ctx.reporter.actions:  # in a workflow psql prints database content into the log: relay it through the gate
        return _run_child([psql, *args], env, ctx.reporter)
    sys.stdout.flush()
    os.execve(psql, ["psql", *args], env)  # replaces this process


def cmd_new(ctx: Context) -> int:
    """Create the next migration file in --dir, in the folder's own layout, and print its path.

    vpc-migrate's numbering in a new folder; in another tool's folder, that tool's next file (Flyway's
    V<next>__name.sql, dbmate and goose files with their up and down markers, a Prisma or Diesel folder).
    """
    directory = Path(ctx.args.dir)
    relative, body = new_migration(
        directory, ctx.args.name, python=ctx.args.python, use_timestamp=ctx.args.timestamp, now=datetime.now(UTC)
    )
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "x", encoding="utf-8") as fh:
        fh.write(body)
    ctx.reporter.data(str(path))
    return ExitCode.OK


def cmd_doctor(ctx: Context) -> int:
    """Check each link to the database in order and say which one breaks.

    Settings (SSM parameter, secret), DNS, TCP (security groups), TLS trust (CA bundle), AWS
    credentials, IAM token or the secret's fields, login (with the IAM checklist), the history table,
    and who holds the migration lock. --json for machines. Exits with the code of the first failing
    check (2 for bad settings; 3 for network, TLS, credentials and login problems).
    """
    from .doctor import Doctor, as_json, exit_code
    from .locking import lock_key

    checks = Doctor(ctx.connector, ctx.args.schema, ctx.history, lock_key(ctx.args.schema)).run()
    if ctx.args.json:
        ctx.reporter.data_json(as_json(checks))
    else:
        marks = {"ok": "✓", "failed": "✗", "skipped": "·", "n/a": "-"}
        for check in checks:
            first, *rest = check.detail.splitlines() or [""]
            ctx.reporter.data(f"{marks[check.status]} {check.name:<16} {first}")
            for line in rest:
                ctx.reporter.data(f"  {'':<16} {line}")
    return exit_code(checks)


def cmd_token(ctx: Context) -> int:
    """Print a fresh RDS IAM authentication token (like `aws rds generate-db-auth-token`)."""
    ctx.reporter.secret_data(ctx.connector(iam=True).mint_token())
    return ExitCode.OK


# -- helpers -------------------------------------------------------------------------------------
def _parse_version(text: str) -> Version:
    version = Version.parse(text)
    if version.repeatable:
        raise BadInput(f"version {text!r}: a repeatable migration has no version; name a versioned file's")
    return version


def _run_child(command: Sequence[str], env: dict[str, str], reporter: Reporter) -> int:
    """Run the child in the foreground; pass SIGINT/SIGTERM on and wait for it to finish.

    Under Actions its output (SQL, server messages, database content) is relayed through the reporter's
    gate, so that none of it can become a workflow command; elsewhere the child writes to our terminal.
    """
    pipe = subprocess.PIPE if reporter.actions else None
    child = subprocess.Popen(list(command), env=env, stdout=pipe, stderr=pipe)
    relays = []
    if child.stdout and child.stderr:
        relays = [reporter.relay(child.stdout, stderr=False), reporter.relay(child.stderr, stderr=True)]
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        received.append(signum)
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for relay in relays:
            relay.join(RELAY_GRACE_S)
    if received:
        raise Interrupted(received[0])
    return 128 - code if code < 0 else code


def _summary_markdown(
    title: str,
    connector: Connector,
    rows: list[tuple[Migration, str, float | None]],
    already: int,
    failure: BaseException | None = None,
) -> str:
    icons = {"applied": "✅ applied", "failed": "❌ failed", "skipped": "⏭️ skipped", "pending": "pending"}
    out = [f"### {title}", "", f"{markdown_cell(connector.target.describe())}", ""]
    if rows:
        out += ["| Version | Migration | Result | Duration |", "| --- | --- | --- | --- |"]
        for m, state, ms in rows:
            out.append(
                f"| {m.version_text} | {markdown_cell(m.filename)} | {icons[state]} "
                f"| {format_ms(ms) if ms is not None else ''} |"
            )
        out.append("")
    else:
        out.append("Nothing to apply: the database is up to date.")
    out.append(f"{already} migration(s) were already applied.")
    if isinstance(failure, MigrateError):
        out += ["", f"**{markdown_cell(failure.message.splitlines()[0])}**"]
    elif isinstance(failure, Interrupted):
        out += ["", "**Interrupted: the running migration was rolled back.**"]
    return "\n".join(out)
