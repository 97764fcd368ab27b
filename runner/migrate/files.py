"""One migration file: reading it, its directives, and validating it (statement splitting included).

Two steps, so that a run with nothing to do parses nothing. ``read_migration`` reads a file: its bytes,
checksum and directives (``layouts.load_migrations`` finds the files, in any tool's layout). ``validate``
parses the ones about to run (SQL with PostgreSQL's own parser, Python with ``ast``); an applied file whose
checksum matches its history row was validated when it ran. Either step reports a bad file (exit 2) before
the database is changed, and reports every problem at once, not just the first.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NamedTuple

from .durations import parse_duration_ms
from .errors import BadInput

MIGRATION_NAME = re.compile(r"^(?P<version>\d+)(?:_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*))?\.(?P<ext>sql|py)$")
REPEATABLE_PREFIX = "R__"  # a Flyway repeatable's key in the history table: R__<description>
# dbmate (-- migrate:up / -- migrate:down) and goose (-- +goose Up / Down) keep both ways in one file.
_UP_MARK = re.compile(r"^--\s*(?:migrate:up\b(?P<dbmate>.*)|\+goose\s+Up\b.*)$", re.MULTILINE | re.IGNORECASE)
_DOWN_MARK = re.compile(r"^--\s*(?:migrate:down\b|\+goose\s+Down\b).*$", re.MULTILINE | re.IGNORECASE)
_ANY_MARK = re.compile(r"migrate:|\+goose", re.IGNORECASE)
_GOOSE_NO_TX = re.compile(r"^--\s*\+goose\s+NO\s+TRANSACTION\b", re.MULTILINE | re.IGNORECASE)
MAX_VERSION_DIGITS = 18  # per part: what the tools that number files fit in a bigint
# Files a migrations folder commonly holds beside migrations; everything else ending in
# .sql/.py must be a well-named migration.
PYTHON_TEMPLATE_MARK = 'raise RuntimeError("write this migration")'  # what `new --python` writes

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


class Version(NamedTuple):
    """A migration's place in the order, and its key in the history table.

    Versions compare part by part as numbers (Flyway's 1.2 < 1.10 < 2; 0003 is 3; trailing zero parts do not
    count, 1.0 is 1). Flyway's repeatables have no version: they come after every versioned migration,
    ordered by description, and are keyed ``R__<description>``. A tuple, so that comparing and hashing
    thousands of them on every run costs next to nothing.
    """

    repeatable: bool
    parts: tuple[int, ...]
    order: str = ""  # repeatables: the description as Flyway compares it, underscores as spaces
    description: str = ""  # repeatables: as written in the file name

    @classmethod
    def parse(cls, text: str) -> Version:
        """A version as written in a file name, given on the command line or kept in the history table."""
        if text.isdigit() and text.isascii():  # the common case, first
            return cls(False, (int(text),))
        if text.startswith(REPEATABLE_PREFIX) and len(text) > len(REPEATABLE_PREFIX):
            description = text[len(REPEATABLE_PREFIX) :]
            return cls(True, (), description.replace("_", " "), description)
        if not _VERSION_TEXT.fullmatch(text):
            raise BadInput(f"version {text!r} must be digits (0004, 20261121093000) or dotted digits (1.2.3)")
        parts = [int(part) for part in re.split(r"[._]", text)]
        while len(parts) > 1 and parts[-1] == 0:
            parts.pop()
        return cls(False, tuple(parts))

    @property
    def key(self) -> str:
        """The history table's version: 12, 1.2, R__views."""
        if self.repeatable:
            return REPEATABLE_PREFIX + self.description
        return ".".join(map(str, self.parts))

    def __str__(self) -> str:
        return self.key


_VERSION_TEXT = re.compile(r"\d+(?:[._]\d+)*")


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


_NO_DIRECTIVES = Settings()


@dataclass(frozen=True)
class Migration:
    version: Version
    version_text: str  # as written in the file name, e.g. "0003", "1.2", or "R" for a repeatable
    name: str
    path: Path
    kind: Literal["sql", "python"]
    checksum: str  # sha256 of the file's bytes
    source: str
    settings: Settings
    statements: tuple[Statement, ...] = ()  # SQL files, once validated
    validated: bool = False
    up: tuple[int, int] | None = None  # dbmate/goose: the up section's span in source; None: the whole file
    label: str | None = None  # how to name it when the file name alone does not (Prisma: <folder>/migration.sql)
    tool: str = "vpc-migrate"  # whose layout it follows (runner/migrate/layouts.py)

    @property
    def filename(self) -> str:
        return self.label or self.path.name

    @property
    def runs(self) -> str:
        """The text that runs: the whole file, or its up section."""
        return self.source if self.up is None else self.source[self.up[0] : self.up[1]]

    def line_of(self, offset: int) -> int:
        return self.source.count("\n", 0, offset) + 1


def validate(migrations: list[Migration]) -> list[Migration]:
    """Parse and check the given migrations (SQL split into statements); every problem at once."""
    problems: list[str] = []
    checked: list[Migration] = []
    for m in migrations:
        try:
            checked.append(m if m.validated else validate_one(m))
        except BadInput as err:
            problems.append(err.message)
    if problems:
        raise BadInput("bad migration files, nothing was run:\n  " + "\n  ".join(problems))
    return checked


def validate_one(m: Migration) -> Migration:
    """Parse and check one migration: SQL split into statements, or Python's ``migrate(conn)``."""
    if m.kind == "sql":
        start, end = m.up or (0, len(m.source))
        statements = _unwrap(m.path, split_sql(m.path, m.source, start, end), m.settings)
        settings = m.settings
        if m.settings.transactional and m.tool == "flyway" and _flyway_runs_outside(statements):
            settings = replace(settings, transactional=False)
        _check_statements(m.path, statements, settings)
        return replace(m, statements=statements, settings=settings, validated=True)
    _check_python(m.path, m.source)
    return replace(m, validated=True)


def read_migration(
    path: Path,
    version: str | None = None,
    name: str | None = None,
    *,
    label: str | None = None,
    tool: str | None = None,
) -> Migration:
    """One migration file: its bytes, checksum, directives and, for dbmate and goose, its up section.
    ``version``/``name``: as the layout that found it reads its name (None: vpc-migrate's own naming);
    ``tool``: that layout (None: vpc-migrate, or dbmate or goose by the file's markers)."""
    match = MIGRATION_NAME.match(path.name) if version is None else None
    if version is None and not match:
        raise BadInput(
            f"{path}: name must be <digits>_<name>{path.suffix} or <digits>{path.suffix} (letters, digits, ., _ and - "
            "in <name>), or another tool's: <digits>_<title>.up.sql, V<digits>__<title>.sql"
        )
    version_text = version if version is not None else match["version"] if match else ""
    parsed = Version.parse(version_text)
    if any(len(str(part)) > MAX_VERSION_DIGITS for part in parsed.parts):
        raise BadInput(f"{path}: version has more than {MAX_VERSION_DIGITS} digits")
    if parsed.repeatable:
        version_text = "R"
    try:
        raw = _read(path)
    except OSError as err:
        raise BadInput(f"{path}: cannot be read ({err.strerror})") from None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not valid UTF-8 (byte {err.start})") from None
    if not source.strip():
        raise BadInput(f"{path}: file is empty")
    kind: Literal["sql", "python"] = "python" if path.suffix == ".py" else "sql"
    settings = parse_directives(path, source, kind)
    up = _up_section(path, source) if kind == "sql" else None
    if up is not None and up[2] is False:
        settings = replace(settings, transactional=False)
    if tool is None:
        tool = "vpc-migrate" if up is None else "goose" if "+goose" in source[: up[0]] else "dbmate"
    return Migration(
        version=parsed,
        version_text=version_text,
        name=name if name is not None else (match["name"] or "") if match else "",
        path=path,
        kind=kind,
        checksum=hashlib.sha256(raw).hexdigest(),
        source=source,
        settings=settings,
        up=(up[0], up[1]) if up is not None else None,
        label=label,
        tool=tool,
    )


def _read(path: Path) -> bytes:
    """A file's bytes with plain system calls: a no-op run reads every file, and open() builds a buffered
    reader per file (about twice the cost for thousands of small files)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        chunks = []
        while chunk := os.read(fd, _READ_SIZE):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_READ_SIZE = 1 << 16


def _up_section(path: Path, source: str) -> tuple[int, int, bool | None] | None:
    """dbmate and goose files: the up section's span and its transaction option; None for a plain file."""
    if not _ANY_MARK.search(source):  # most files: one scan, not two
        return None
    up, down = _UP_MARK.search(source), _DOWN_MARK.search(source)
    if up is None and down is None:
        return None
    if up is None:
        raise BadInput(f"{path}: has a down section (-- migrate:down / -- +goose Down) but no up section")
    start = up.end()
    end = down.start() if down is not None and down.start() > start else len(source)
    if not source[start:end].strip():
        raise BadInput(f"{path}: its up section is empty")
    dbmate_options = up["dbmate"] or ""
    no_transaction = "transaction:false" in dbmate_options.replace(" ", "") or bool(_GOOSE_NO_TX.search(source))
    return start, end, False if no_transaction else None


def parse_directives(path: Path, source: str, kind: Literal["sql", "python"]) -> Settings:
    """Read ``vpc-migrate:`` directives from the comment lines at the top of the file."""
    if "vpc-migrate:" not in source:  # most files: one scan in C, no line split
        return _NO_DIRECTIVES
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


def split_sql(path: Path, source: str, start: int = 0, end: int | None = None) -> tuple[Statement, ...]:
    """Split a SQL file into statements with PostgreSQL's own parser (libpg_query via pglast).

    The real grammar gets dollar quotes, nested comments and ``BEGIN ATOMIC`` bodies right, reports
    syntax errors before anything runs, and gives each statement's offset for error line numbers.
    """
    from pglast import parser  # deferred: only SQL migrations need it

    end = len(source) if end is None else end
    try:
        slices = parser.split(source[start:end], with_parser=True, only_slices=True)
    except parser.ParseError as err:
        message, location = err.args[0], err.args[1] if len(err.args) > 1 else None
        location = location + start if isinstance(location, int) else None
        line = source.count("\n", 0, location) + 1 if isinstance(location, int) else None
        where = f"{path}:{line or 1}"
        if isinstance(location, int) and (psql_only := _psql_only(source, location)):
            raise BadInput(f"{where}: {psql_only}") from None
        raise BadInput(f"{where}: SQL syntax error: {message}") from None
    found, line, counted = [], 1, 0
    for piece in slices:  # line numbers counted once through the file, not from its start for each statement
        first, stop = piece.start + start, piece.stop + start
        line += source.count("\n", counted, first)
        counted = first
        found.append(Statement(text=source[first:stop], line=line, offset=first))
    statements = tuple(found)
    if not statements:
        raise BadInput(f"{path}: contains no SQL statement (only comments)")
    return statements


_COPY_STDIO = re.compile(r"^\s*COPY\b.*\b(?:FROM\s+STDIN|TO\s+STDOUT)\b", re.IGNORECASE | re.DOTALL)
_COPY_FROM_STDIN_LINE = re.compile(r"^\s*COPY\b[^;]*\bFROM\s+STDIN\b", re.IGNORECASE | re.MULTILINE)
FLYWAY_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][\w.:-]*\}")
_PSQL_VARIABLE = re.compile(r":(?:'[A-Za-z_]\w*'|\"[A-Za-z_]\w*\"|[A-Za-z_]\w*)")
PSQL_WAY_OUT = "or run it with psql itself: vpc-migrate exec -- psql -v ON_ERROR_STOP=1 -f FILE (under the lock)"


def _psql_only(source: str, location: int) -> str | None:
    """Name the psql-only construct a syntax error stopped at: a meta-command, a variable, COPY's data."""
    here = min(max(location, 0), len(source))  # pglast reports a 0-based offset
    line_start = source.rfind("\n", 0, here) + 1
    line = source[line_start : source.find("\n", here) if "\n" in source[here:] else len(source)]
    if line.lstrip().startswith("\\"):
        command = line.split()[0]
        return (
            f"{command} is a psql meta-command, not SQL: vpc-migrate sends the file to the server, so delete "
            f"it (pg_dump writes \\restrict and \\unrestrict lines for psql), {PSQL_WAY_OUT}"
        )
    if placeholder := FLYWAY_PLACEHOLDER.search(line):
        return (
            f"{placeholder[0]} looks like a Flyway placeholder: vpc-migrate replaces them in Flyway's "
            "V<version>__<name>.sql and R__<name>.sql files only (--placeholder NAME=VALUE); here, write the value"
        )
    if _PSQL_VARIABLE.match(source, here):
        return f"a psql variable (:name) is not SQL: write the value in the file, {PSQL_WAY_OUT}"
    if _COPY_FROM_STDIN_LINE.search(source, 0, line_start):
        return (
            "the data after COPY ... FROM stdin is read by psql, not sent as SQL: write it as INSERTs "
            f"(pg_dump --inserts), {PSQL_WAY_OUT}"
        )
    return None


_SETS_A_TIMEOUT = re.compile(r"^\s*(?:SET|RESET)\b|set_config", re.IGNORECASE)
_SET_CONFIG_OFF = re.compile(
    r"set_config\s*\(\s*'(?P<name>lock_timeout|statement_timeout)'\s*,\s*'(?P<value>[^']*)'", re.IGNORECASE
)
TIMEOUTS = ("lock_timeout", "statement_timeout")


def _turns_off_a_timeout(text: str) -> str | None:
    """The timeout a statement turns off (SET ... = 0, DEFAULT, RESET, RESET ALL, set_config), if any."""
    if not _SETS_A_TIMEOUT.search(text):
        return None
    for match in _SET_CONFIG_OFF.finditer(text):
        if _is_zero(match["value"]):
            return match["name"].lower()
    from pglast import ast, parse_sql
    from pglast.enums import VariableSetKind

    try:
        (raw,) = parse_sql(text)
    except Exception:  # split_sql parsed it already: anything odd here is not a SET
        return None
    node = raw.stmt
    if not isinstance(node, ast.VariableSetStmt):
        return None
    if node.kind == VariableSetKind.VAR_RESET_ALL:  # every setting back to the server's default
        return "lock_timeout and statement_timeout"
    if node.name not in TIMEOUTS:
        return None
    if node.kind in (VariableSetKind.VAR_SET_DEFAULT, VariableSetKind.VAR_RESET):  # 0 unless configured
        return str(node.name)
    values = [getattr(arg, "val", None) for arg in node.args or ()]
    value = values[0] if len(values) == 1 else None
    literal = getattr(value, "ival", None) if hasattr(value, "ival") else getattr(value, "sval", None)
    return str(node.name) if literal is not None and _is_zero(str(literal)) else None


def _is_zero(value: str) -> bool:
    try:
        return parse_duration_ms(value.strip(), what="timeout") == 0
    except BadInput:
        return False


def _flyway_runs_outside(statements: tuple[Statement, ...]) -> bool:
    """Flyway on PostgreSQL runs a file of statements that cannot run in a transaction (CREATE INDEX
    CONCURRENTLY...) outside one; a file mixing both kinds is refused (as Flyway refuses it by default)."""
    return all(_NEEDS_NO_TRANSACTION.match(statement.text) for statement in statements)


def _unwrap(path: Path, statements: tuple[Statement, ...], settings: Settings) -> tuple[Statement, ...]:
    """A file wrapped whole in BEGIN; ... COMMIT; (as many tools write them) asks for one transaction:
    vpc-migrate's own, with the history row. The wrapper is dropped; anything else is refused."""
    first, last = statements[0].text, statements[-1].text
    if len(statements) < 3 or not (_WRAPPER_BEGIN.match(first) and _WRAPPER_END.match(last)):
        return statements
    if not settings.transactional:
        raise BadInput(f"{path}:{statements[0].line}: a no-transaction file cannot be wrapped in BEGIN ... COMMIT")
    return statements[1:-1]


_WRAPPER_BEGIN = re.compile(r"^\s*(?:BEGIN(?:\s+(?:WORK|TRANSACTION))?|START\s+TRANSACTION)\s*$", re.IGNORECASE)
_WRAPPER_END = re.compile(r"^\s*(?:COMMIT|END)(?:\s+(?:WORK|TRANSACTION))?\s*$", re.IGNORECASE)


def _check_statements(path: Path, statements: tuple[Statement, ...], settings: Settings) -> None:
    for statement in statements:
        if _COPY_STDIO.match(statement.text):
            raise BadInput(
                f"{path}:{statement.line}: COPY ... FROM STDIN / TO STDOUT streams data through psql: write the "
                f"data as INSERTs (pg_dump --inserts), {PSQL_WAY_OUT}"
            )
        if turned_off := _turns_off_a_timeout(statement.text):
            raise BadInput(
                f"{path}:{statement.line}: this statement turns off {turned_off}; vpc-migrate gives every "
                "migration a lock and statement timeout so that no statement can wait forever or make the "
                "application queue behind it. Delete it (pg_dump writes such lines in its header); for one long "
                "statement give the file its own limit: '-- vpc-migrate: statement-timeout=30min'"
            )
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
    if PYTHON_TEMPLATE_MARK in source:
        raise BadInput(f"{path}: still the template `vpc-migrate new --python` wrote: write the migration")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "migrate":
            if not node.args.args and not node.args.posonlyargs:
                raise BadInput(f"{path}:{node.lineno}: migrate() must take the connection as its argument")
            return
    raise BadInput(f"{path}: defines no top-level function migrate(conn)")
