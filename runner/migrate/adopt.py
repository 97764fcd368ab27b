"""Adopting a database from another migration tool: read its history table, match it to the files.

``read_history`` reads what the previous tool recorded as applied, from its own table in the same
database; ``match`` turns that into the file versions to record as applied, or refuses naming the
first disagreement. Neither writes anything.

The tables, as each tool creates and fills them in PostgreSQL (from each tool's source):

- Flyway (``createMetaDataTable.sql``): ``flyway_schema_history`` (``schema_version`` before Flyway 5) in
  the default schema; ``installed_rank`` orders it, ``version`` is NULL for repeatable migrations and for
  the ``<< Flyway Schema Creation >>`` marker, ``success`` is false for a failed migration. ``type``
  ``BASELINE`` (``<< Flyway Baseline >>``) and the ``*_BASELINE`` types stand for every version up to and
  including theirs; ``repair`` marks a missing migration with a later ``DELETE`` row and an undo adds an
  ``UNDO_*`` row, after which that version is no longer applied.
- golang-migrate (``database/postgres``): ``schema_migrations (version bigint not null primary key,
  dirty boolean not null)`` in ``current_schema()``, truncated and rewritten on every step: one row, the
  current version, ``dirty`` while a migration is under way or failed; no row when nothing is applied.
- dbmate (``pkg/driver/postgres``; 2.36 checked by running it): ``schema_migrations (version varchar primary
  key)`` (varchar(255) or (128) in older releases), one row per applied version as written in the file name
  ("0003" stays "0003"); a rollback deletes the row.
- goose (``dialectquery/postgres.go``): ``goose_db_version (id serial, version_id bigint, is_applied
  boolean, tstamp timestamp default now())`` with a ``(0, true)`` row of its own; current goose deletes
  the row on down, older goose inserted an ``is_applied = false`` row: the latest row of a version decides.
- sqitch (``Engine/pg.sql``): registry schema ``sqitch``, table ``changes`` (change_id, change, project,
  note, committed_at, ...): the changes deployed now, in ``committed_at`` order.
- alembic (``runtime/migration.py``): ``alembic_version (version_num varchar(32) not null)``: the head
  revision(s) only, not the path to them.

sqitch and alembic name changes instead of numbering them, and nothing in their tables says which
numbered file a name became, so ``match`` asks for ``baseline VERSION`` and shows what they applied.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import psycopg.errors
from psycopg import sql

from .errors import BadInput, DriftDetected
from .files import Version

TOOLS = ("flyway", "golang-migrate", "dbmate", "goose", "sqitch", "alembic")
_NAMED = ("sqitch", "alembic")  # record names, not numbered versions
_DIGITS = re.compile(r"[0-9]+")
_SHOWN = 10  # names listed in the sqitch/alembic message


@dataclass(frozen=True)
class Applied:
    """One migration the previous tool recorded as applied."""

    version: str  # numbered tools: the digits without leading zeros; sqitch: change name; alembic: revision
    description: str  # what the tool recorded beside it ("" if nothing)
    # Flyway BASELINE (and *_BASELINE) rows: every version up to and including this one counts as applied,
    # and no file need have this version.
    baseline: bool = False


@dataclass(frozen=True)
class _Table:
    schema: str | None  # None: the first schema on the search_path that has it, as the tool resolves it
    name: str
    setting: str  # how the tool is told to keep it elsewhere, for the hint
    # column -> pg_type.typcategory it must have (N numeric, S string, B boolean, D date/time)
    columns: dict[str, str]


_TABLES = {
    "flyway": _Table(
        None,
        "flyway_schema_history",
        "flyway's `table` and `defaultSchema`/`schemas` settings; before Flyway 5 it was `schema_version`",
        {"installed_rank": "N", "version": "S", "description": "S", "type": "S", "success": "B"},
    ),
    "golang-migrate": _Table(
        None, "schema_migrations", "the `x-migrations-table` URL parameter", {"version": "N", "dirty": "B"}
    ),
    "dbmate": _Table(None, "schema_migrations", "`--migrations-table` / DBMATE_MIGRATIONS_TABLE", {"version": "S"}),
    "goose": _Table(
        None, "goose_db_version", "goose's `-table` flag", {"id": "N", "version_id": "N", "is_applied": "B"}
    ),
    "sqitch": _Table(
        "sqitch",
        "changes",
        "sqitch's `registry` setting (the schema)",
        {"change_id": "S", "change": "S", "note": "S", "committed_at": "D"},
    ),
    "alembic": _Table(
        None, "alembic_version", "`version_table` / `version_table_schema` in env.py", {"version_num": "S"}
    ),
}


def read_history(
    conn: psycopg.Connection[Any], tool: str, *, schema: str | None = None, table: str | None = None
) -> list[Applied]:
    """The migrations `tool` recorded as successfully applied, oldest first.

    `schema`/`table` override the tool's default location; a `table` of the form ``schema.name`` is split
    when no `schema` is given (goose and dbmate accept it so). BadInput when the tool is unknown, the table
    is missing, unreadable or shaped like another tool's; DriftDetected when the history records a failed or
    dirty state to resolve with the old tool first.
    """
    spec = _tool(tool)
    if table is not None and schema is None and "." in table:
        schema, table = table.split(".", 1)
    schema = spec.schema if schema is None else schema
    table = spec.name if table is None else table
    if not table or schema == "":
        raise BadInput(f"--from {tool}: the history table's schema and name must not be empty")
    with conn.transaction():  # an error must not leave the caller's session in a failed transaction
        relation, where = _locate(conn, tool, spec, schema, table)
        try:
            return _READERS[tool](conn, relation, where)
        except psycopg.errors.InsufficientPrivilege:
            raise BadInput(
                f"cannot read {tool}'s history table {where}: permission denied",
                hint=f"grant SELECT on {where} to the role vpc-migrate connects as",
            ) from None


def match(applied: list[Applied], file_versions: dict[str, str], tool: str) -> list[str]:
    """The file versions to record as applied, in order (keys of `file_versions`, which maps each file's
    version as written in its name to the file name).

    DriftDetected naming the first disagreement, in version order: a version the history has and no file
    has, or a file older than the newest applied version that the history lacks. Versions compare as
    numbers. golang-migrate's one row means every file up to it; a Flyway baseline row covers every file up
    to it. sqitch and alembic: BadInput showing what they applied, for `baseline VERSION`.
    """
    _tool(tool)
    if tool in _NAMED:
        raise _named(applied, tool)
    files: dict[Version, str] = {}
    for text, filename in file_versions.items():
        version = _version(text, f"{filename}: version {text!r}")
        other = files.setdefault(version, text)
        if other != text:
            raise BadInput(f"{file_versions[other]} and {filename} have the same version {version}")
    recorded: dict[Version, Applied] = {}
    for entry in applied:
        recorded[_version(entry.version, f"{tool} recorded version {entry.version}{_about(entry)}")] = entry
    if not recorded:
        return []
    newest = max(recorded)
    if tool == "golang-migrate":  # one row: the current version, everything up to it applied
        if newest not in files:
            raise DriftDetected(
                f"golang-migrate is at version {newest}, and no migration file has that version",
                hint="restore the file (golang-migrate records no names: a renamed or squashed file has no match)",
            )
        return [files[n] for n in sorted(files) if n <= newest]
    covered = max((n for n, entry in recorded.items() if entry.baseline), default=None)
    chosen: list[str] = []
    problems: list[tuple[str, str]] = []
    for n in sorted(set(files) | set(recorded)):
        if n > newest:
            break
        record = recorded.get(n)
        if n in files and (record is not None or (covered is not None and n <= covered)):
            chosen.append(files[n])
        elif n in files:
            problems.append(
                (
                    f"{file_versions[files[n]]} (version {n}) is older than the newest version {tool} applied "
                    f"({newest}), and {tool} never applied it (numbered below applied ones: added late, or skipped)",
                    f"decide with {tool} first: apply it out of order, or remove the file if it must not run; "
                    "then run this again",
                )
            )
        elif record is not None and not record.baseline:
            problems.append(
                (
                    f"{tool} recorded version {n}{_about(record)} as applied, and no migration file has that version",
                    "restore the file, or undo the record with the old tool first; a renamed or squashed file "
                    "has no match",
                )
            )
    if problems:
        message, hint = problems[0]
        more = f" (first of {len(problems)} disagreements)" if len(problems) > 1 else ""
        raise DriftDetected(message + more, hint=hint)
    return chosen


def _version(text: str, what: str) -> Version:
    try:
        version = Version.parse(text)
    except BadInput:
        version = None
    if version is None or version.repeatable:
        raise BadInput(
            f"{what}, which is not a version vpc-migrate orders by (digits, or dotted digits as Flyway's)",
            hint="record by hand what is applied with `vpc-migrate baseline VERSION`",
        )
    return version


def _tool(tool: str) -> _Table:
    if tool not in _TABLES:
        raise BadInput(f"unknown tool {tool!r}: --from takes one of {', '.join(TOOLS)}")
    return _TABLES[tool]


def _locate(
    conn: psycopg.Connection[Any], tool: str, spec: _Table, schema: str | None, table: str
) -> tuple[sql.Identifier, str]:
    """The table as a qualified identifier and as text for messages; BadInput when absent or misshapen."""
    name = sql.Identifier(table) if schema is None else sql.Identifier(schema, table)
    row = conn.execute(
        "SELECT n.nspname, c.relname, c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.oid = to_regclass(%s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
        [name.as_string(conn)],
    ).fetchone()
    if row is None:
        if schema is None:
            search_path = conn.execute("SELECT current_setting('search_path')").fetchone()
            looked = f"{table} on the search_path ({search_path[0] if search_path else ''})"
        else:
            looked = f"{schema}.{table}"
        raise BadInput(
            f"no {tool} history table in this database: looked for {looked}",
            hint=f"is this the database {tool} migrated? If {tool} kept its table elsewhere ({spec.setting}), "
            "give that schema and table",
        )
    relation = sql.Identifier(row[0], row[1])
    where = f"{row[0]}.{row[1]}"
    columns = {
        str(attname): str(category)
        for attname, category in conn.execute(
            "SELECT a.attname, t.typcategory FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped",
            [row[2]],
        )
    }
    shape = ", ".join(sorted(columns))
    # golang-migrate and dbmate both default to schema_migrations: say which one this is.
    if tool == "dbmate" and "dirty" in columns:
        raise BadInput(
            f"{where} looks like golang-migrate's table (it has a dirty column; columns: {shape}), not dbmate's",
            hint="use --from golang-migrate",
        )
    if tool == "golang-migrate" and "dirty" not in columns and columns.get("version") == "S":
        raise BadInput(
            f"{where} looks like dbmate's table (one text version per row, no dirty column; columns: {shape}),"
            " not golang-migrate's",
            hint="use --from dbmate",
        )
    wrong = [c for c, category in spec.columns.items() if columns.get(c) != category]
    if wrong:
        raise BadInput(
            f"{where} is not shaped like {tool}'s history table: {', '.join(wrong)} missing or of another type"
            f" (columns: {shape})",
            hint=f"is this the database {tool} migrated? If {tool} kept its table elsewhere ({spec.setting}), "
            "give that schema and table",
        )
    return relation, where


def _normal(version: str) -> str:
    """Versions as vpc-migrate keys them (no leading zeros, 1.0 is 1: they compare as numbers); anything else
    as recorded."""
    try:
        return Version.parse(version).key
    except BadInput:
        return version


def _flyway(conn: psycopg.Connection[Any], relation: sql.Identifier, where: str) -> list[Applied]:
    rows = conn.execute(
        sql.SQL("SELECT installed_rank, version, description, type, success FROM {} ORDER BY installed_rank").format(
            relation
        )
    ).fetchall()
    state: dict[str, Applied] = {}  # insertion order: the order flyway applied them in
    for rank, version, description, kind, success in rows:
        if not success:
            what = f"version {version}" if version is not None else "repeatable migration"
            raise DriftDetected(
                f"flyway recorded {what} ({description}) as failed (installed_rank {rank}, success = false)",
                hint="finish or undo that migration by hand, remove the failed row with `flyway repair`, "
                "then run this again",
            )
        if version is None:  # repeatable migrations and the << Flyway Schema Creation >> marker
            continue
        key, kind = _normal(str(version).replace("_", ".")), str(kind).upper()
        state.pop(key, None)
        if kind == "DELETE" or kind.startswith("UNDO_"):  # marked deleted by repair, or undone
            continue
        state[key] = Applied(key, str(description or ""), baseline=kind == "BASELINE" or kind.endswith("_BASELINE"))
    return list(state.values())


def _golang_migrate(conn: psycopg.Connection[Any], relation: sql.Identifier, where: str) -> list[Applied]:
    rows = conn.execute(sql.SQL("SELECT version, dirty FROM {}").format(relation)).fetchall()
    for version, dirty in rows:
        if dirty:
            raise DriftDetected(
                f"golang-migrate marked version {version} dirty: a migration failed or was interrupted part-way",
                hint="fix the database by hand, set the version it is really at with `migrate force VERSION`, "
                "then run this again",
            )
    if len(rows) > 1:
        raise DriftDetected(
            f"{where} holds {len(rows)} rows, and golang-migrate keeps exactly one (its current version)",
            hint="set the version with `migrate force VERSION`, then run this again",
        )
    if not rows or rows[0][0] < 0:  # no row (or -1): nothing applied
        return []
    return [Applied(str(int(rows[0][0])), "")]


def _dbmate(conn: psycopg.Connection[Any], relation: sql.Identifier, where: str) -> list[Applied]:
    versions = [_normal(str(row[0])) for row in conn.execute(sql.SQL("SELECT version FROM {}").format(relation))]
    # No time is recorded: version order is the order dbmate applies in.
    ordered = sorted(versions, key=lambda v: (0, int(v), "") if _DIGITS.fullmatch(v) else (1, 0, v))
    return [Applied(v, "") for v in ordered]


def _goose(conn: psycopg.Connection[Any], relation: sql.Identifier, where: str) -> list[Applied]:
    latest: dict[int, bool] = {}  # insertion order: the row that decided, oldest first
    for version, is_applied in conn.execute(
        sql.SQL("SELECT version_id, is_applied FROM {} ORDER BY id").format(relation)
    ):
        latest.pop(int(version), None)
        latest[int(version)] = bool(is_applied)
    return [Applied(str(v), "") for v, is_applied in latest.items() if is_applied and v != 0]


def _sqitch(conn: psycopg.Connection[Any], relation: sql.Identifier, where: str) -> list[Applied]:
    query = sql.SQL("SELECT change, note FROM {} ORDER BY committed_at, change_id").format(relation)
    return [Applied(str(change), str(note or "")) for change, note in conn.execute(query)]


def _alembic(conn: psycopg.Connection[Any], relation: sql.Identifier, where: str) -> list[Applied]:
    query = sql.SQL("SELECT version_num FROM {} ORDER BY version_num").format(relation)
    return [Applied(str(row[0]), "") for row in conn.execute(query)]


_READERS: dict[str, Callable[[psycopg.Connection[Any], sql.Identifier, str], list[Applied]]] = {
    "flyway": _flyway,
    "golang-migrate": _golang_migrate,
    "dbmate": _dbmate,
    "goose": _goose,
    "sqitch": _sqitch,
    "alembic": _alembic,
}


def _about(entry: Applied) -> str:
    return f" ({entry.description})" if entry.description else ""


def _named(applied: list[Applied], tool: str) -> BadInput:
    names = [entry.version for entry in applied]
    shown = ("..., " if len(names) > _SHOWN else "") + ", ".join(names[-_SHOWN:])
    if tool == "sqitch":
        what = "change names"
        recorded = (
            f"sqitch has deployed {len(names)} change(s), the last {names[-1]} (oldest first: {shown})"
            if names
            else "sqitch has deployed nothing"
        )
    else:
        what = "revision ids"
        recorded = (
            f"alembic's current head revision{'s' if len(names) > 1 else ''}: {shown}"
            if names
            else "alembic has applied nothing"
        )
    return BadInput(
        f"{tool} records {what}, not numbered versions, so nothing tells which file each one is; {recorded}",
        hint="record them by naming the last file they correspond to: `vpc-migrate baseline VERSION` "
        "records every file up to that version",
    )
