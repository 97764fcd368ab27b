"""Migration files: discovery, validation, directives and SQL statement splitting.

Two steps, so that a run with nothing to do parses nothing. ``load_migrations`` reads every file: its
name, bytes, checksum and directives. ``validate`` parses the ones about to run (SQL with PostgreSQL's
own parser, Python with ``ast``); an applied file whose checksum matches its history row was validated
when it ran. Either step reports a bad file (exit 2) before the database is changed, and reports every
problem at once, not just the first.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

from .durations import parse_duration_ms
from .errors import BadInput

MIGRATION_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\.(?P<ext>sql|py)$")
MAX_VERSION_DIGITS = 18  # stored as bigint
# Files a migrations folder commonly holds beside migrations; everything else ending in
# .sql/.py must be a well-named migration.
IGNORED_NAMES = {"__init__.py"}

_DIRECTIVE = {
    "sql": re.compile(r"^\s*--\s*vpc-migrate:(?P<body>.*)$"),
    "python": re.compile(r"^\s*#\s*vpc-migrate:(?P<body>.*)$"),
}
_COMMENT = {"sql": ("--",), "python": ("#",)}

# Statements PostgreSQL refuses inside a transaction block (SQLSTATE 25001). Caught here so the
# author learns about the missing directive before deploy, not from a failed run.
_NEEDS_NO_TRANSACTION = re.compile(
    r"^\s*(?:CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY|DROP\s+INDEX\s+CONCURRENTLY|REINDEX\b.*\bCONCURRENTLY"
    r"|VACUUM\b|CREATE\s+DATABASE|DROP\s+DATABASE|ALTER\s+SYSTEM|CREATE\s+TABLESPACE|DROP\s+TABLESPACE)",
    re.IGNORECASE | re.DOTALL,
)
# Transaction control inside a file would commit behind the runner's back and split the
# migration from its history row.
_TRANSACTION_CONTROL = re.compile(
    r"^\s*(?:BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION|END|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the file where the statement starts
    offset: int  # character offset of the statement in the file


@dataclass(frozen=True)
class Settings:
    """Per-file settings from ``-- vpc-migrate:`` directives; None means "use the run's default"."""

    transactional: bool = True
    lock_timeout_ms: int | None = None
    statement_timeout_ms: int | None = None


@dataclass(frozen=True)
class Migration:
    version: int
    version_text: str  # as written in the file name, e.g. "0003"
    name: str
    path: Path
    kind: Literal["sql", "python"]
    checksum: str  # sha256 of the file's bytes
    source: str
    settings: Settings
    statements: tuple[Statement, ...] = ()  # SQL files, once validated
    validated: bool = False

    @property
    def filename(self) -> str:
        return self.path.name

    def line_of(self, offset: int) -> int:
        return self.source.count("\n", 0, offset) + 1


def load_migrations(directory: Path) -> list[Migration]:
    """Read and validate every migration in ``directory``, ordered by version."""
    if not directory.is_dir():
        raise BadInput(f"migrations directory {directory} does not exist (set it with --dir)")
    problems: list[str] = []
    migrations: list[Migration] = []
    misnamed = False
    with os.scandir(directory) as found:  # DirEntry knows its type: no stat per file
        entries = sorted(found, key=lambda entry: entry.name)
    for entry in entries:
        if not entry.is_file() or entry.name.startswith(".") or entry.name in IGNORED_NAMES:
            continue
        if not entry.name.endswith((".sql", ".py")):
            continue
        path = Path(entry.path)
        try:
            migrations.append(_load_one(path))
        except BadInput as err:
            problems.append(err.message)
            misnamed = misnamed or not MIGRATION_NAME.match(path.name)
    by_version: dict[int, Migration] = {}
    for migration in migrations:
        other = by_version.setdefault(migration.version, migration)
        if other is not migration:
            problems.append(f"{migration.path}: version {migration.version} is also used by {other.path}")
    if problems:  # failing anyway: report the problems parsing would find too, all at once
        for migration in migrations:
            try:
                _validate_one(migration)
            except BadInput as err:
                problems.append(err.message)
        raise BadInput(
            "bad migration files, nothing was run:\n  " + "\n  ".join(problems),
            hint="file names are <digits>_<name>.sql or .py, e.g. 0004_add_orders_index.sql" if misnamed else None,
        )
    return sorted(migrations, key=lambda m: m.version)


def validate(migrations: list[Migration]) -> list[Migration]:
    """Parse and check the given migrations (SQL split into statements); every problem at once."""
    problems: list[str] = []
    checked: list[Migration] = []
    for m in migrations:
        try:
            checked.append(m if m.validated else _validate_one(m))
        except BadInput as err:
            problems.append(err.message)
    if problems:
        raise BadInput("bad migration files, nothing was run:\n  " + "\n  ".join(problems))
    return checked


def _validate_one(m: Migration) -> Migration:
    if m.kind == "sql":
        statements = split_sql(m.path, m.source)
        _check_statements(m.path, statements, m.settings)
        return replace(m, statements=statements, validated=True)
    _check_python(m.path, m.source)
    return replace(m, validated=True)


def _load_one(path: Path) -> Migration:
    match = MIGRATION_NAME.match(path.name)
    if not match:
        raise BadInput(f"{path}: name must be <digits>_<name>{path.suffix} (letters, digits, _ and - in <name>)")
    version_text = match["version"]
    if len(version_text.lstrip("0")) > MAX_VERSION_DIGITS:
        raise BadInput(f"{path}: version has more than {MAX_VERSION_DIGITS} digits")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise BadInput(f"{path}: cannot be read ({err.strerror})") from None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not valid UTF-8 (byte {err.start})") from None
    if not source.strip():
        raise BadInput(f"{path}: file is empty")
    kind: Literal["sql", "python"] = "sql" if match["ext"] == "sql" else "python"
    settings = _parse_directives(path, source, kind)
    return Migration(
        version=int(version_text),
        version_text=version_text,
        name=match["name"],
        path=path,
        kind=kind,
        checksum=hashlib.sha256(raw).hexdigest(),
        source=source,
        settings=settings,
    )


def _parse_directives(path: Path, source: str, kind: Literal["sql", "python"]) -> Settings:
    """Read ``vpc-migrate:`` directives from the comment lines at the top of the file."""
    values: dict[str, object] = {}
    lines = iter(source.splitlines() if len(source) < 65536 else _header_lines(source))
    for number, line in enumerate(lines, start=1):
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith(_COMMENT[kind]):
            break  # directives live in the header only
        match = _DIRECTIVE[kind].match(line)
        if not match:
            continue
        for item in filter(None, (part.strip() for part in re.split(r"[,\s]+", match["body"]))):
            key, _, value = item.partition("=")
            where = f"{path}:{number}"
            if key == "no-transaction" and not value:
                values["transactional"] = False
            elif key in ("lock-timeout", "statement-timeout") and value:
                values[key.replace("-", "_") + "_ms"] = parse_duration_ms(value, what=f"{where}: {key}")
            else:
                raise BadInput(
                    f"{where}: unknown directive {item!r} "
                    "(known: no-transaction, lock-timeout=DURATION, statement-timeout=DURATION)"
                )
    return Settings(**values)  # type: ignore[arg-type]


def _header_lines(source: str) -> list[str]:
    """The lines up to the first one that is neither blank nor a comment: no split of a whole large dump."""
    found: list[str] = []
    start = 0
    while start < len(source):
        end = source.find("\n", start)
        line = source[start : len(source) if end < 0 else end]
        found.append(line)
        if line.strip() and not line.lstrip().startswith(("--", "#")):
            break
        start = len(source) if end < 0 else end + 1
    return found


def split_sql(path: Path, source: str) -> tuple[Statement, ...]:
    """Split a SQL file into statements with PostgreSQL's own parser (libpg_query via pglast).

    The real grammar gets dollar quotes, nested comments and ``BEGIN ATOMIC`` bodies right, reports
    syntax errors before anything runs, and gives each statement's offset for error line numbers.
    """
    from pglast import parser  # deferred: only SQL migrations need it

    try:
        slices = parser.split(source, with_parser=True, only_slices=True)
    except parser.ParseError as err:
        message, location = err.args[0], err.args[1] if len(err.args) > 1 else None
        line = source.count("\n", 0, location) + 1 if isinstance(location, int) else None
        raise BadInput(f"{path}:{line or 1}: SQL syntax error: {message}") from None
    found, line, counted = [], 1, 0
    for s in slices:  # line numbers counted once through the file, not from its start for each statement
        line += source.count("\n", counted, s.start)
        counted = s.start
        found.append(Statement(text=source[s.start : s.stop], line=line, offset=s.start))
    statements = tuple(found)
    if not statements:
        raise BadInput(f"{path}: contains no SQL statement (only comments)")
    return statements


def _check_statements(path: Path, statements: tuple[Statement, ...], settings: Settings) -> None:
    for statement in statements:
        if _TRANSACTION_CONTROL.match(statement.text):
            raise BadInput(
                f"{path}:{statement.line}: transaction control ({statement.text.split()[0].upper()}) is not allowed; "
                "vpc-migrate wraps each file in its own transaction "
                "(use '-- vpc-migrate: no-transaction' for statements that must run outside one)"
            )
        if settings.transactional and _NEEDS_NO_TRANSACTION.match(statement.text):
            raise BadInput(
                f"{path}:{statement.line}: this statement cannot run inside a transaction; "
                "put '-- vpc-migrate: no-transaction' on the first line of the file"
            )


def _check_python(path: Path, source: str) -> None:
    try:
        tree = ast.parse(source, filename=str(path))
    except SyntaxError as err:
        raise BadInput(f"{path}:{err.lineno or 1}: Python syntax error: {err.msg}") from None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "migrate":
            if not node.args.args and not node.args.posonlyargs:
                raise BadInput(f"{path}:{node.lineno}: migrate() must take the connection as its argument")
            return
    raise BadInput(f"{path}: defines no top-level function migrate(conn)")


def next_file_name(directory: Path, name: str, *, python: bool, use_timestamp: bool, now: datetime) -> str:
    """Name for ``vpc-migrate new``: the next version in the folder's own style.

    Zero-padded counters continue (0007 -> 0008); a folder of timestamp versions (12+ digits)
    or ``--timestamp`` gets the current UTC time, which avoids clashes between parallel branches.
    """
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise BadInput(f"migration name {name!r} has no letters or digits")
    versions = []
    if directory.is_dir():
        versions = [m["version"] for p in directory.iterdir() if (m := MIGRATION_NAME.match(p.name))]
    latest = max(versions, key=int) if versions else None
    if use_timestamp or (latest is not None and len(latest) >= 12):
        version = now.strftime("%Y%m%d%H%M%S")
    elif latest is None:
        version = "0001"
    else:
        version = str(int(latest) + 1).zfill(len(latest))
    return f"{version}_{slug}.{'py' if python else 'sql'}"
