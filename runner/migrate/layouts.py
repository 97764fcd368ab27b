"""Other tools' migration folders, read as each tool reads them: which files are migrations, in what order,
and what in them runs (README: "Coming from another tool").

``load_migrations`` walks the folder and hands each migration file to ``files.read_migration`` with the
version and name its tool gives it. Nothing is skipped in silence: a down or undo migration, another
database's file or a folder with nothing to run is noted, and a folder with files but no migration, or a
file no layout explains, is refused (exit 2), naming what it holds.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from .errors import BadInput
from .files import (
    FLYWAY_PLACEHOLDER,
    MIGRATION_NAME,
    REPEATABLE_PREFIX,
    Migration,
    Version,
    parse_directives,
    read_migration,
    validate_one,
)

# golang-migrate, sqlx and pop: <version>_<title>.up.sql / .down.sql, optionally with a dialect.
UP_DOWN_NAME = re.compile(r"^(?P<version>\d+)_(?P<name>.+?)\.(?P<way>up|down)(?:\.(?P<dialect>\w+))?\.sql$")
POSTGRES_DIALECTS = {None, "postgres", "postgresql", "pg", "pgsql"}
# Flyway: V<version>__<description>.sql, the version's parts separated by dots or underscores (V1_2 is 1.2);
# R__<description>.sql repeatables; undo files (U<version>__, a paid edition's) are down migrations.
FLYWAY_NAME = re.compile(r"^V(?P<version>\d+(?:[._]\d+)*)__(?P<name>.+)\.sql$")
FLYWAY_REPEATABLE = re.compile(r"^R__(?P<name>.+)\.sql$")
FLYWAY_UNDO = re.compile(r"^U\d+(?:[._]\d+)*__.+\.sql$")
FLYWAY_BASELINE = re.compile(r"^B(?P<version>\d+(?:[._]\d+)*)__.+\.sql$")  # a paid edition's baseline migrations
# Flyway reads the subfolders of its location too; callbacks (afterMigrate.sql...) run on events, not once.
FLYWAY_CALLBACK = re.compile(r"^(?P<event>(?:before|after)[A-Z][A-Za-z]*|createSchema)(?:__.*)?\.sql$")
# Prisma: <digits>_<name>/migration.sql (a 14-digit timestamp by default; Prisma applies folders in name
# order); Diesel: <YYYY-MM-DD-HHMMSS>_<name>/up.sql (+ down.sql; the version is the part before the first
# underscore, dashes dropped).
PRISMA_FOLDER = re.compile(r"^(?P<version>\d+)_(?P<name>.*)$")
DIESEL_FOLDER = re.compile(r"^(?P<version>\d[\d-]*)_(?P<name>.*)$")
GO_MIGRATION = re.compile(r"^\d+_\w+\.go$")  # goose's Go migrations: refused, never skipped in silence
SQLX_NO_TRANSACTION = "-- no-transaction"  # sqlx: the first line of a file that runs outside a transaction
_PLACEHOLDER_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
IGNORED_NAMES = {"__init__.py"}  # beside migrations in Python packages


FORMATS = ("auto", "vpc-migrate", "golang-migrate", "flyway", "dbmate", "goose", "prisma", "diesel")


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
            hint="point --dir at the folder holding the migrations; Prisma (<digits>_<name>/migration.sql), "
            "Diesel (<date>_<name>/up.sql) and Flyway subfolders are read as they are",
        )
    if fmt != "auto":  # --format: every migration must be that tool's, so nothing is read by mistake
        problems += [f"{m.path}: a {m.tool} migration, and --format is {fmt}" for m in migrations if m.tool != fmt]
    by_version: dict[Version, Migration] = {}
    for migration in migrations:
        other = by_version.setdefault(migration.version, migration)
        if other is not migration:
            problems.append(f"{migration.path}: version {migration.version} is also used by {other.path}")
    if problems:  # failing anyway: report the problems parsing would find too, all at once
        for migration in migrations:
            try:
                validate_one(migration)
            except BadInput as err:
                problems.append(err.message)
        raise BadInput(
            "bad migration files, nothing was run:\n  " + "\n  ".join(problems),
            hint="file names are <digits>_<name>.sql or .py, e.g. 0004_add_orders_index.sql" if misnamed else None,
        )
    return sorted(migrations, key=lambda m: m.version)


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
            return _sqlx_marker(read_migration(path, up_down["version"], up_down["name"], tool="golang-migrate"))
    elif flyway := FLYWAY_NAME.match(name):
        migration = read_migration(path, flyway["version"], flyway["name"], label=label, tool="flyway")
        return _flyway_script_config(_replace_placeholders(migration, placeholders))
    elif repeatable := FLYWAY_REPEATABLE.match(name):
        version = REPEATABLE_PREFIX + repeatable["name"]
        migration = read_migration(path, version, repeatable["name"], label=label, tool="flyway")
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
        migration = read_migration(path, label=label)
        return _sqlx_marker(migration) if label is None and migration.tool == "vpc-migrate" else migration
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
        label = f"{relative}/migration.sql"
        return [read_migration(inside, prisma["version"], prisma["name"], label=label, tool="prisma")]
    if diesel and names.get("up.sql") is False:
        version = diesel["version"].replace("-", "")
        return [read_migration(folder / "up.sql", version, diesel["name"], label=f"{relative}/up.sql", tool="diesel")]
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


def _sqlx_marker(migration: Migration) -> Migration:
    """sqlx names its files <version>_<name>.sql or .up.sql, and runs one whose first line is
    ``-- no-transaction`` outside a transaction (the whole line: a comment that starts so is a comment)."""
    if migration.source.split("\n", 1)[0].rstrip() != SQLX_NO_TRANSACTION:
        return migration
    return replace(migration, settings=replace(migration.settings, transactional=False))


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
    for tool, key in (("prisma", lambda m: m.path.parent.name), ("diesel", lambda m: m.version_text)):
        folders = [m for m in migrations if m.tool == tool]
        for named, numbered in zip(sorted(folders, key=key), sorted(folders, key=lambda m: m.version), strict=True):
            if named is not numbered:
                first, then = named.path.parent.name, numbered.path.parent.name
                problems.append(
                    f"{tool.capitalize()} applies migration folders in name order ({first} before {then}) and "
                    f"vpc-migrate in version order ({then} before {first}): give the versions one width"
                )
                break
    return problems


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
    for found in FLYWAY_PLACEHOLDER.finditer(migration.source):
        if found[0][2:-1] not in given:
            raise BadInput(
                f"{migration.path}:{migration.line_of(found.start())}: {found[0]} is a Flyway placeholder with no "
                f"value: give it with --placeholder {found[0][2:-1]}=VALUE (what Flyway's configuration held)"
            )
    source = FLYWAY_PLACEHOLDER.sub(lambda found: given[found[0][2:-1]], migration.source)
    if source == migration.source:
        return migration
    checksum = hashlib.sha256(source.encode()).hexdigest() if migration.version.repeatable else migration.checksum
    settings = parse_directives(migration.path, source, migration.kind)
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


# -- `vpc-migrate new`: the next file, in the folder's own layout ---------------------------------------
_TEMPLATES = {
    "vpc-migrate": (
        "-- {title}\n-- Runs in one transaction with its history row. First-line directives:\n"
        "--   -- vpc-migrate: no-transaction, lock-timeout=500ms, statement-timeout=5min\n"
    ),
    "golang-migrate": "-- {title}\n",
    "flyway": "-- {title}\n",
    "dbmate": "-- migrate:up\n-- {title}\n\n-- migrate:down\n",
    "goose": "-- +goose Up\n-- {title}\n\n-- +goose Down\n",
    "prisma": "-- {title}\n",
    "diesel": "-- {title}\n",
}
PYTHON_TEMPLATE = (
    '"""{title}"""\n\n\ndef migrate(conn):\n'
    "    # conn: a psycopg connection inside this migration's transaction; do not commit.\n"
    '    raise RuntimeError("write this migration")\n'
)


def new_migration(directory: Path, title: str, *, python: bool, use_timestamp: bool, now: datetime) -> tuple[str, str]:
    """What ``vpc-migrate new`` creates: the path in ``directory`` and the template, in the layout of the
    folder's newest migration (Flyway's V<next>__name.sql, a dbmate file with its markers, a Prisma
    folder...; vpc-migrate's own naming in a new folder). Templates are refused by `check` until written."""
    slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    if not slug:
        raise BadInput(f"migration name {title!r} has no letters or digits")
    found = [m for m in load_migrations(directory) if not m.version.repeatable] if directory.is_dir() else []
    tool = found[-1].tool if found else "vpc-migrate"
    if python and tool != "vpc-migrate":
        raise BadInput(f"{directory} holds {tool} migrations: Python migrations are vpc-migrate's own (name.py)")
    same = [m for m in found if m.tool == tool]
    taken = {m.version for m in found}
    latest = same[-1].version_text if same else None
    if tool == "flyway" and latest and not use_timestamp and len(str(same[-1].version.parts[0])) < 12:
        *head, last = re.split(r"([._])", latest)  # 1.9 -> 1.10, 1_2 -> 1_3, 7 -> 8
        version = "".join(head) + str(int(last) + 1)
    elif tool in ("dbmate", "prisma", "diesel") or use_timestamp or (latest is not None and len(latest) >= 12):
        version = _free_timestamp(now, taken)
    else:
        version = "0001" if latest is None else str(int(latest) + 1).zfill(len(latest))
    path = {
        "flyway": f"V{version}__{slug}.sql",
        "golang-migrate": f"{version}_{slug}.up.sql",
        "prisma": f"{version}_{slug}/migration.sql",
        "diesel": f"{version[:4]}-{version[4:6]}-{version[6:8]}-{version[8:]}_{slug}/up.sql",
    }.get(tool, f"{version}_{slug}.{'py' if python else 'sql'}")
    return path, (PYTHON_TEMPLATE if python else _TEMPLATES[tool]).format(title=title)


def _free_timestamp(now: datetime, taken: set[Version]) -> str:
    """The current UTC second as a version; two files in one second, or a clock behind the newest file:
    the next free second after it."""
    newest = max((v for v in taken if not v.repeatable), default=None)
    while Version.parse(version := now.astimezone(UTC).strftime("%Y%m%d%H%M%S")) in taken or (
        newest is not None and Version.parse(version) <= newest
    ):
        now += timedelta(seconds=1)
    return version
