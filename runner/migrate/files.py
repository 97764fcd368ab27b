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
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, NamedTuple

from .durations import parse_duration_ms
from .errors import BadInput

MIGRATION_NAME = re.compile(r"^(?P<version>\d+)(?:_(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*))?\.(?P<ext>sql|py)$")
# Other tools' layouts, understood as they are (README: "Coming from another tool"):
# golang-migrate, sqlx and pop: <version>_<title>.up.sql / .down.sql, optionally with a dialect.
UP_DOWN_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+?)\.(?P<way>up|down)(?:\.(?P<dialect>\w+))?\.sql$")
POSTGRES_DIALECTS = {None, "postgres", "postgresql", "pg", "pgsql"}
# Flyway: V<version>__<description>.sql, the version's parts separated by dots or underscores (V1_2 is 1.2);
# R__<description>.sql repeatables; undo files (U<version>__, a paid edition's) are down migrations.
FLYWAY_NAME = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<name>.+)\.sql$")
FLYWAY_REPEATABLE = re.compile(r"^R__(?P<name>.+)\.sql$")
FLYWAY_UNDO = re.compile(r"^U\d+(?:[._]\d+)*__.+\.sql$")
FLYWAY_BASELINE = re.compile(r"^B(?P<version>\d+(?:[._]\d+)*)__.+\.sql$")  # a paid edition's baseline migrations
REPEATABLE_PREFIX = "R__"  # a repeatable's key in the history table: R__<description>
# Flyway reads the subfolders of its location too; callbacks (afterMigrate.sql...) run on events, not once.
FLYWAY_CALLBACK = re.compile(r"^(?P<event>(?:before|after)[A-Z][A-Za-z]*|createSchema)(?:__.*)?\.sql$")
# Prisma: <digits>_<name>/migration.sql (a 14-digit timestamp by default; Prisma applies folders in name
# order); Diesel: <YYYY-MM-DD-HHMMSS>_<name>/up.sql (+ down.sql; the version is the part before the first
# underscore, dashes dropped).
PRISMA_FOLDER = re.compile(r"^(?P<version>\d+)_(?P<name>.*)$")
DIESEL_FOLDER = re.compile(r"^(?P<version>\d[\d-]*)_(?P<name>.*)$")
GO_MIGRATION = re.compile(r"^\d+_\w+\.go$")  # goose's Go migrations: refused, never skipped in silence
# dbmate (-- migrate:up / -- migrate:down) and goose (-- +goose Up / Down) keep both ways in one file.
_UP_MARK = re.compile(r"^--\s*(?:migrate:up\b(?P<dbmate>.*)|\+goose\s+Up\b.*)$", re.MULTILINE | re.IGNORECASE)
_DOWN_MARK = re.compile(r"^--\s*(?:migrate:down\b|\+goose\s+Down\b).*$", re.MULTILINE | re.IGNORECASE)
SQLX_NO_TRANSACTION = "-- no-transaction"  # sqlx: a file whose first bytes are this runs outside a transaction
_ANY_MARK = re.compile(r"migrate:|\+goose", re.IGNORECASE)
_GOOSE_NO_TX = re.compile(r"^--\s*\+goose\s+NO\s+TRANSACTION\b", re.MULTILINE | re.IGNORECASE)
MAX_VERSION_DIGITS = 18  # per part: what the tools that number files fit in a bigint
# Files a migrations folder commonly holds beside migrations; everything else ending in
# .sql/.py must be a well-named migration.
IGNORED_NAMES = {"__init__.py"}
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

    @property
    def filename(self) -> str:
        return self.label or self.path.name

    @property
    def runs(self) -> str:
        """The text that runs: the whole file, or its up section."""
        return self.source if self.up is None else self.source[self.up[0] : self.up[1]]

    def line_of(self, offset: int) -> int:
        return self.source.count("\n", 0, offset) + 1


FORMATS = ("auto", "vpc-migrate", "golang-migrate", "flyway", "dbmate", "goose", "prisma", "diesel")


def format_of(m: Migration) -> str:
    """The tool whose layout a loaded migration follows."""
    if FLYWAY_NAME.match(m.path.name) or m.version.repeatable:
        return "flyway"
    if m.label is not None:
        return "prisma" if m.path.name == "migration.sql" else "diesel"
    if UP_DOWN_NAME.match(m.path.name):
        return "golang-migrate"
    if m.up is not None:
        return "goose" if "+goose" in m.source[: m.up[0]] else "dbmate"
    return "vpc-migrate"


def load_migrations(
    directory: Path, fmt: str = "auto", placeholders: Mapping[str, str] | None = None
) -> list[Migration]:
    """Read every migration in ``directory``, ordered by version; files of other tools are understood
    (golang-migrate, Flyway with its repeatables, dbmate, goose, Prisma and Diesel folders). A folder with
    files but no migration is refused, naming what it holds: never "nothing to apply" by mistake.
    ``placeholders``: the values of Flyway's ``${name}`` placeholders, replaced in Flyway files."""
    if not directory.is_dir():
        raise BadInput(f"migrations directory {directory} does not exist (set it with --dir)")
    problems: list[str] = []
    migrations: list[Migration] = []
    skipped: list[str] = []  # what was seen and deliberately not run, for the refusal of an empty result
    misnamed = False
    with os.scandir(directory) as found:  # DirEntry knows its type: no stat per file
        entries = sorted(found, key=lambda entry: entry.name)
    for entry in entries:
        name = entry.name
        if name.startswith(".") or name in IGNORED_NAMES or name == "__pycache__":
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir():
                nested = _load_folder(path, Path(name), placeholders or {}, skipped)
                migrations += nested
                if not nested:
                    skipped.append(f"{name}/ (a folder)")
                continue
            migration = _load_file(path, placeholders or {}, skipped)
            if migration is not None:
                migrations.append(migration)
        except BadInput as err:
            problems.append(err.message)
            misnamed = misnamed or not (MIGRATION_NAME.match(name) or entry.is_dir())
    problems += _folder_order_problems(migrations)
    if not migrations and not problems and skipped:
        raise BadInput(
            f"no migration to run in {directory}, but it holds: {', '.join(skipped[:6])}"
            + (f" and {len(skipped) - 6} more" if len(skipped) > 6 else ""),
            hint="point --dir at the folder holding the migrations; Prisma (<timestamp>_<name>/migration.sql) "
            "and Diesel (<date>_<name>/up.sql) folders are read as they are",
        )
    if fmt != "auto":  # --format: every migration must be that tool's, so nothing is read by mistake
        problems += [
            f"{m.path}: a {format_of(m)} migration, and --format is {fmt}" for m in migrations if format_of(m) != fmt
        ]
    by_version: dict[Version, Migration] = {}
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
        start, end = m.up or (0, len(m.source))
        statements = _unwrap(m.path, split_sql(m.path, m.source, start, end), m.settings)
        settings = m.settings
        if m.settings.transactional and format_of(m) == "flyway" and _flyway_runs_outside(statements):
            settings = replace(settings, transactional=False)
        _check_statements(m.path, statements, settings)
        return replace(m, statements=statements, settings=settings, validated=True)
    _check_python(m.path, m.source)
    return replace(m, validated=True)


def _load_file(
    path: Path, placeholders: Mapping[str, str], skipped: list[str], label: str | None = None
) -> Migration | None:
    """One file of the folder, read the way the tool that wrote it reads it; None for what never runs (a down
    migration, another database's, not .sql or .py), noted in ``skipped``. ``label``: its path in the folder."""
    name = path.name
    if GO_MIGRATION.match(name):
        raise BadInput(f"{path}: a goose Go migration; vpc-migrate runs SQL and Python migrations only")
    if not name.endswith((".sql", ".py")):
        return None
    if up_down := UP_DOWN_NAME.match(name):  # before plain names: 0001_x.down.sql must never run
        if up_down["way"] == "down":
            skipped.append(f"{name} (a down migration: never run)")
        elif up_down["dialect"] not in POSTGRES_DIALECTS:
            skipped.append(f"{name} (for {up_down['dialect']}, not PostgreSQL)")
        else:
            return _load_one(path, up_down["version"], up_down["name"], label=label)
    elif flyway := FLYWAY_NAME.match(name):
        migration = _load_one(path, flyway["version"], flyway["name"], label=label)
        return _flyway_script_config(_replace_placeholders(migration, placeholders))
    elif repeatable := FLYWAY_REPEATABLE.match(name):
        version = REPEATABLE_PREFIX + repeatable["name"]
        migration = _load_one(path, version, repeatable["name"], label=label)
        return _flyway_script_config(_replace_placeholders(migration, placeholders))
    elif FLYWAY_UNDO.match(name):
        skipped.append(f"{name} (a Flyway undo migration: never run)")
    elif baseline := FLYWAY_BASELINE.match(name):
        raise BadInput(
            f"{path}: a Flyway baseline migration (B{baseline['version']}): Flyway runs it instead of the versions "
            "up to it on an empty database; vpc-migrate runs every version. Keep the V files, and remove it from "
            "the folder or run it by hand on a new database, then `vpc-migrate baseline` its version"
        )
    elif callback := FLYWAY_CALLBACK.match(name):
        raise BadInput(
            f"{path}: a Flyway callback ({callback['event']}), which Flyway runs on an event, not once: vpc-migrate "
            "has no callbacks. Run it as its own workflow step (vpc-migrate exec -- psql -v ON_ERROR_STOP=1 -f "
            "FILE) and move it out of the migrations folder"
        )
    else:
        return _load_one(path, label=label)
    return None


def _load_folder(
    folder: Path,
    relative: Path,
    placeholders: Mapping[str, str],
    skipped: list[str],
    seen: frozenset[str] = frozenset(),
) -> list[Migration]:
    """A subfolder: one Prisma or Diesel migration, or (as Flyway reads its location's subfolders) Flyway
    migrations at any depth; nothing for a folder with no .sql in it. Anything else holding .sql files is
    refused: vpc-migrate never leaves migrations unread in silence. Symbolic links to folders are followed,
    as Flyway follows them; one that leads back into a folder being read is refused."""
    real = os.path.realpath(folder)
    if real in seen:
        raise BadInput(f"{folder}: a symbolic link back into a folder it is inside of ({real}): a loop")
    seen = seen | {real}
    with os.scandir(folder) as listing:
        names = {entry.name: entry.is_dir() for entry in listing}
    prisma, diesel = PRISMA_FOLDER.match(folder.name), DIESEL_FOLDER.match(folder.name)
    if prisma and names.get("migration.sql") is False:
        inside = folder / "migration.sql"
        return [_load_one(inside, prisma["version"], prisma["name"], label=f"{relative}/migration.sql")]
    if diesel and names.get("up.sql") is False:
        version = diesel["version"].replace("-", "")
        return [_load_one(folder / "up.sql", version, diesel["name"], label=f"{relative}/up.sql")]
    if diesel and names.get("down.sql") is False:
        raise BadInput(f"{folder}: a Diesel migration folder with a down.sql and no up.sql: nothing in it can run")
    if any(_flyway_file(name) for name, is_dir in names.items() if not is_dir) or (
        any(is_dir for is_dir in names.values()) and not any(name.endswith(".sql") for name in names)
    ):
        found: list[Migration] = []
        for name, is_dir in sorted(names.items()):
            if name.startswith("."):
                continue
            if is_dir:
                found += _load_folder(folder / name, relative / name, placeholders, skipped, seen)
            elif name.endswith(".sql") and not (_flyway_file(name) or FLYWAY_CALLBACK.match(name)):
                raise BadInput(
                    f"{folder / name}: in a subfolder of Flyway migrations, and not named as Flyway names them "
                    "(V<version>__<description>.sql, R__<description>.sql); a single _ after the version is not "
                    "enough"
                )
            elif name.endswith(".sql"):
                migration = _load_file(folder / name, placeholders, skipped, label=str(relative / name))
                found += [migration] if migration is not None else []
        return found
    for name in sorted(names):
        if FLYWAY_CALLBACK.match(name):
            _load_file(folder / name, placeholders, skipped)  # refused, naming the callback
    if any(name.endswith(".sql") for name in names):
        raise BadInput(
            f"{folder}: a folder of .sql files that is not a Prisma (<digits>_<name>/migration.sql), Diesel "
            "(<YYYY-MM-DD-HHMMSS>_<name>/up.sql) or Flyway (V<version>__<name>.sql) migration folder: vpc-migrate "
            "does not look inside it"
        )
    return []


def _flyway_file(name: str) -> bool:
    return any(pattern.match(name) for pattern in (FLYWAY_NAME, FLYWAY_REPEATABLE, FLYWAY_UNDO, FLYWAY_BASELINE))


def _flyway_script_config(migration: Migration) -> Migration:
    """Flyway's per-script configuration, ``<file>.conf`` beside it: ``executeInTransaction`` is honoured,
    ``encoding`` must be UTF-8, any other setting is refused by name (it would change what runs)."""
    conf = migration.path.with_name(migration.path.name + ".conf")
    if not conf.is_file():
        return migration
    settings = migration.settings
    for number, line in enumerate(conf.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = (part.strip() for part in line.partition("="))
        if key == "executeInTransaction" and value.lower() in ("true", "false"):
            settings = replace(settings, transactional=value.lower() == "true")
        elif key == "encoding" and value.upper().replace("-", "") == "UTF8":
            continue
        else:
            raise BadInput(
                f"{conf}:{number}: Flyway script setting {line!r} is not supported (only executeInTransaction, and "
                "encoding=UTF-8)"
            )
    return replace(migration, settings=settings)


def _folder_order_problems(migrations: list[Migration]) -> list[str]:
    """Prisma applies its folders in name order and Diesel in the order of their version text; vpc-migrate
    in version order. Refused where they differ (10_b comes before 2_c by name; a Diesel version with a
    suffix, 2024-01-01-000000-1, after 2024-02-01-000000 by number), never run in an order the tool would
    not use."""
    problems = []
    for tool, file, key in (
        ("Prisma", "migration.sql", lambda m: m.path.parent.name),
        ("Diesel", "up.sql", lambda m: m.version_text),
    ):
        folders = [m for m in migrations if m.label is not None and m.path.name == file]
        for named, numbered in zip(sorted(folders, key=key), sorted(folders, key=lambda m: m.version), strict=True):
            if named is not numbered:
                first, then = named.path.parent.name, numbered.path.parent.name
                problems.append(
                    f"{tool} applies migration folders in name order ({first} before {then}) and vpc-migrate in "
                    f"version order ({then} before {first}): give the versions one width"
                )
                break
    return problems


def _load_one(path: Path, version: str | None = None, name: str | None = None, label: str | None = None) -> Migration:
    match = MIGRATION_NAME.match(path.name) if version is None else None
    # sqlx names its files <version>_<name>.sql or .up.sql, and marks them "-- no-transaction" on the first line.
    sqlx_shaped = label is None and (match is not None or UP_DOWN_NAME.match(path.name) is not None)
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
    settings = _parse_directives(path, source, kind)
    up = _up_section(path, source) if kind == "sql" else None
    if (up is not None and up[2] is False) or (
        sqlx_shaped and source.split("\n", 1)[0].rstrip() == SQLX_NO_TRANSACTION
    ):
        settings = replace(settings, transactional=False)
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


def _replace_placeholders(migration: Migration, values: Mapping[str, str]) -> Migration:
    """Flyway's ``${name}`` placeholders, replaced as Flyway does: anywhere in the file, strings and comments
    too, before it runs (``${flyway:filename}`` is the file's name, ``${flyway:timestamp}`` the time of the
    run). A versioned file's checksum stays that of the file as written, as Flyway's does: a new value is not
    drift. A repeatable's checksum is that of the text that runs, so it runs again when a value changes
    (``${flyway:timestamp}``: every run), as Flyway re-runs it. A placeholder with no value is refused."""
    given = {
        "flyway:filename": migration.path.name,
        "flyway:timestamp": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        **values,
    }
    for found in _FLYWAY_PLACEHOLDER.finditer(migration.source):
        if found[0][2:-1] not in given:
            raise BadInput(
                f"{migration.path}:{migration.line_of(found.start())}: {found[0]} is a Flyway placeholder with no "
                f"value: give it with --placeholder {found[0][2:-1]}=VALUE (what Flyway's configuration held)"
            )
    source = _FLYWAY_PLACEHOLDER.sub(lambda found: given[found[0][2:-1]], migration.source)
    if source == migration.source:
        return migration
    checksum = hashlib.sha256(source.encode()).hexdigest() if migration.version.repeatable else migration.checksum
    settings = _parse_directives(migration.path, source, migration.kind)
    return replace(migration, source=source, settings=settings, checksum=checksum)


def parse_placeholders(items: list[str]) -> dict[str, str]:
    """``NAME=VALUE`` items (--placeholder, or lines of VPC_MIGRATE_PLACEHOLDERS) as a mapping."""
    values: dict[str, str] = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not _PLACEHOLDER_NAME.fullmatch(name):
            raise BadInput(f"--placeholder {item!r}: give NAME=VALUE, NAME being a Flyway placeholder's name")
        values[name] = value
    return values


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


def _parse_directives(path: Path, source: str, kind: Literal["sql", "python"]) -> Settings:
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
_FLYWAY_PLACEHOLDER = re.compile(r"\$\{[A-Za-z_][\w.:-]*\}")
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
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
    if placeholder := _FLYWAY_PLACEHOLDER.search(line):
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
        taken = {int(v) for v in versions}
        # Two files in one second, or a clock behind the newest file: the next free second after it.
        while int(version := now.strftime("%Y%m%d%H%M%S")) in taken or (latest and int(version) <= int(latest)):
            now += timedelta(seconds=1)
    elif latest is None:
        version = "0001"
    else:
        version = str(int(latest) + 1).zfill(len(latest))
    return f"{version}_{slug}.{'py' if python else 'sql'}"
