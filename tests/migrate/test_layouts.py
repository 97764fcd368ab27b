"""Other tools' migration folders, applied as they are: the same schema as psql running their up migrations,
and never a silent wrong result (down sections never run; a folder not understood is refused, exit 2).

The folders are written here in each tool's layout (its documented file names and markers), not copied."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database

USERS = "CREATE TABLE users (\n  id bigserial PRIMARY KEY,\n  email text NOT NULL UNIQUE\n);\n"
ORDERS = (
    "CREATE TABLE orders (\n  id bigserial PRIMARY KEY,\n  user_id bigint NOT NULL REFERENCES users (id),\n"
    "  total numeric(12, 2) NOT NULL CHECK (total >= 0)\n);\nCREATE INDEX orders_user_id ON orders (user_id);\n"
)
TOUCH = (
    "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  NEW.email := lower(NEW.email);\n"
    "  RETURN NEW;\nEND;\n$$;\n"
    "CREATE TRIGGER users_touch BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION touch();\n"
)
DROP_ALL = "DROP TABLE IF EXISTS orders;\nDROP TABLE IF EXISTS users CASCADE;\n"
USER_TOTALS = (
    "CREATE OR REPLACE VIEW user_totals AS\n  SELECT u.id, coalesce(sum(o.total), 0) AS total\n"
    "  FROM users u LEFT JOIN orders o ON o.user_id = u.id GROUP BY u.id;\n"
)

# Each layout: files to write, and the up SQL psql would run, in order.
LAYOUTS: dict[str, tuple[dict[str, str], list[str]]] = {
    "golang-migrate": (
        {
            "000001_create_users.up.sql": USERS,
            "000001_create_users.down.sql": "DROP TABLE users;\n",
            "000002_orders.v2.up.sql": ORDERS,  # dots in the title
            "000002_orders.v2.down.sql": "DROP TABLE orders;\n",
            "000003_touch.up.postgres.sql": TOUCH,  # a dialect suffix
            "000003_touch.up.mysql.sql": "CREATE TABLE `never` (x int);\n",
        },
        [USERS, ORDERS, TOUCH],
    ),
    "flyway": (
        {
            "V1__create_users.sql": USERS,
            "V1_1__Orders_and_index.sql": ORDERS,  # an underscore in the version is a dot: 1.1
            "V1.2__touch_function.sql": TOUCH.split("CREATE TRIGGER")[0],
            "V1.10__touch_trigger.sql": "CREATE TRIGGER" + TOUCH.split("CREATE TRIGGER")[1],  # 1.10 after 1.2
            "R__user_totals.sql": USER_TOTALS,  # a repeatable: after every versioned migration
            "U1.1__Orders_and_index.sql": DROP_ALL,  # an undo migration: never run
        },
        [
            USERS,
            ORDERS,
            TOUCH.split("CREATE TRIGGER")[0],
            "CREATE TRIGGER" + TOUCH.split("CREATE TRIGGER")[1],
            USER_TOTALS,
        ],
    ),
    "dbmate": (
        {
            "20240101120000_create_users.sql": f"-- migrate:up\n{USERS}\n-- migrate:down\nDROP TABLE users;\n",
            "20240102120000_orders.sql": f"-- migrate:up\n{ORDERS}\n-- migrate:down\n{DROP_ALL}",
            "20240103120000_index.sql": (
                "-- migrate:up transaction:false\n"
                "CREATE INDEX CONCURRENTLY users_email_lower ON users (lower(email));\n"
                "\n-- migrate:down\nDROP INDEX users_email_lower;\n"
            ),
        },
        [USERS, ORDERS, "CREATE INDEX CONCURRENTLY users_email_lower ON users (lower(email));\n"],
    ),
    "goose": (
        {
            "20240101120000_create_users.sql": f"-- +goose Up\n{USERS}\n-- +goose Down\nDROP TABLE users;\n",
            "20240102120000_touch.sql": (
                "-- +goose Up\n-- +goose StatementBegin\n"
                + TOUCH.split("CREATE TRIGGER")[0]
                + "-- +goose StatementEnd\n"
                "CREATE TRIGGER" + TOUCH.split("CREATE TRIGGER")[1] + "\n-- +goose Down\nDROP FUNCTION touch CASCADE;\n"
            ),
            "20240103120000_orders.sql": f"-- +goose Up\n{ORDERS}\n-- +goose Down\n{DROP_ALL}",
            "20240104120000_index.sql": (
                "-- +goose NO TRANSACTION\n-- +goose Up\nCREATE INDEX CONCURRENTLY orders_total ON orders (total);\n"
                "-- +goose Down\nDROP INDEX orders_total;\n"
            ),
        },
        [USERS, TOUCH, ORDERS, "CREATE INDEX CONCURRENTLY orders_total ON orders (total);\n"],
    ),
    "prisma": (
        {
            "20240101120000_init/migration.sql": USERS,
            "20240215093000_orders/migration.sql": ORDERS,
            "migration_lock.toml": 'provider = "postgresql"\n',
        },
        [USERS, ORDERS],
    ),
    "diesel": (
        {
            "00000000000000_diesel_initial_setup/up.sql": TOUCH.split("CREATE TRIGGER")[0],
            "00000000000000_diesel_initial_setup/down.sql": "DROP FUNCTION touch;\n",
            "2024-01-01-120000_create_users/up.sql": USERS,
            "2024-01-01-120000_create_users/down.sql": "DROP TABLE users;\n",
            "2024-02-15-093000_orders/up.sql": ORDERS,
            "2024-02-15-093000_orders/down.sql": "DROP TABLE orders;\n",
        },
        [TOUCH.split("CREATE TRIGGER")[0], USERS, ORDERS],
    ),
    "versions without a name": ({"0001.sql": USERS, "0002.sql": ORDERS}, [USERS, ORDERS]),
    "sqlx": (
        {
            "20240101120000_users.sql": USERS,
            "20240102120000_orders.up.sql": ORDERS,
            "20240102120000_orders.down.sql": "DROP TABLE orders;\n",
            # sqlx runs a file whose first bytes are "-- no-transaction" outside a transaction.
            "20240103120000_email_index.sql": (
                "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email_lower ON users (lower(email));\n"
            ),
        },
        [USERS, ORDERS, "CREATE INDEX CONCURRENTLY users_email_lower ON users (lower(email));\n"],
    ),
    # Seen in real folders: Flyway releases in subfolders (Flyway reads its location's subfolders), Prisma
    # folders numbered by hand and one with no name, release numbers inside goose and golang-migrate names.
    "flyway, releases in subfolders": (
        {
            "0.0.1/V0.0.1.1__users.sql": USERS,
            "0.0.1/V0.0.1.2__orders.sql": ORDERS,
            "1.0.0/V1.0.0.1__touch.sql": TOUCH,
            "1.0.0/notes.txt": "released 2024-02-01\n",
        },
        [USERS, ORDERS, TOUCH],
    ),
    "prisma, numbered folders": (
        {
            "0_init/migration.sql": USERS,
            "1_orders/migration.sql": ORDERS,
            "20240301000000_/migration.sql": "CREATE INDEX users_email ON users (email);\n",
            "migration_lock.toml": 'provider = "postgresql"\n',
        },
        [USERS, ORDERS, "CREATE INDEX users_email ON users (email);\n"],
    ),
    "goose, release numbers in names": (
        {
            "20240101120000_0.9.0_users.sql": f"-- +goose Up\n{USERS}-- +goose Down\nDROP TABLE users;\n",
            "20240102120000_v1_0_0_orders.sql": f"-- +goose Up\n{ORDERS}-- +goose Down\nDROP TABLE orders;\n",
        },
        [USERS, ORDERS],
    ),
    "golang-migrate, release numbers in names": (
        {
            "0001_1.7.0_schema.up.sql": USERS,
            "0001_1.7.0_schema.down.sql": DROP_ALL,
            "0002_2.1.0_schema.up.sql": ORDERS,
            "0002_2.1.0_schema.down.sql": "DROP TABLE orders;\n",
        },
        [USERS, ORDERS],
    ),
}


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _schema(database: Database) -> str:
    """The schema as pg_dump prints it, without vpc-migrate's own history schema."""
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "--exclude-schema=vpc_migrate", "-d", database.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return "\n".join(line for line in dump.splitlines() if not line.startswith(("--", "\\restrict", "\\unrestrict")))


@pytest.mark.parametrize("layout", list(LAYOUTS), ids=list(LAYOUTS))
def test_a_folder_applies_as_is_with_the_schema_psql_gives(
    layout: str, migrations: Migrations, database: Database, pg_server
):
    files, ups = LAYOUTS[layout]
    _write(migrations.path, files)
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output
    assert f"{len(ups)} applied" in result.err
    assert len(database.history()) == len(ups)

    name = f"{database.name}_psql"
    with pg_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    by_psql = Database(pg_server, name)
    for up in ups:
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", by_psql.url, "-c", up], check=True)
    assert _schema(database) == _schema(by_psql)
    # Nothing of a down section ran, and a second run has nothing to do.
    again = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert again.code == 0 and "nothing to apply" in again.err


def test_dbmate_and_goose_down_sections_never_run(migrations: Migrations, database: Database):
    migrations.write("20240101120000_a.sql", "-- migrate:up\nCREATE TABLE a (x int);\n-- migrate:down\nDROP TABLE a;\n")
    migrations.write("20240102120000_b.sql", "-- +goose Up\nCREATE TABLE b (x int);\n-- +goose Down\nDROP TABLE b;\n")
    dry = run_cli("up", "--dry-run", "--dir", str(migrations.path), "--database-url", database.url)
    assert "DROP TABLE" not in dry.err
    assert run_cli("up", "--dir", str(migrations.path), "--database-url", database.url).code == 0
    assert database.tables() == {"a", "b"}


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"sub/0001_a.sql": USERS}, "sub: a folder of .sql files that is not a Prisma"),
        ({"0001_a.down.sql": "DROP TABLE a;\n"}, "no migration to run in"),
        ({"U1.1__undo.sql": DROP_ALL}, "no migration to run in"),
        (
            {"V1__a.sql": USERS, "afterMigrate__grants.sql": "GRANT SELECT ON users TO PUBLIC;\n"},
            "afterMigrate__grants.sql: a Flyway callback (afterMigrate), which Flyway runs on an event, not once",
        ),
        (
            {"V1__a.sql": USERS, "sql/beforeMigrate.sql": "SELECT 1;\n"},
            "sql/beforeMigrate.sql: a Flyway callback (beforeMigrate)",
        ),
        (
            {"0.0.1/V0.0.1.1__a.sql": USERS, "0.0.1/V0.0.1.2_b.sql": ORDERS},
            "V0.0.1.2_b.sql: in a subfolder of Flyway migrations, and not named as Flyway names them",
        ),
        (
            {"2_users/migration.sql": USERS, "10_orders/migration.sql": ORDERS},
            "Prisma applies migration folders in name order (10_orders before 2_users) and vpc-migrate in version "
            "order (2_users before 10_orders): give the versions one width",
        ),
        (
            {"2024-01-01-120000_users/up.sql": USERS, "2024-01-02-120000_x/down.sql": DROP_ALL},
            "2024-01-02-120000_x: a Diesel migration folder with a down.sql and no up.sql",
        ),
        (
            {
                "2024-01-01-000000_users/up.sql": USERS,
                "2024-01-01-000000-1_orders/up.sql": ORDERS,
                "2024-02-01-000000_index/up.sql": "CREATE INDEX users_email ON users (email);\n",
            },
            "Diesel applies migration folders in name order (2024-01-01-000000-1_orders before "
            "2024-02-01-000000_index)",
        ),
        ({"V1__a.sql": USERS, "B2__baseline.sql": ORDERS}, "B2__baseline.sql: a Flyway baseline migration (B2)"),
        (
            {"V1__a.sql": USERS, "V1__a.sql.conf": "executeInTransaction=false\nmixed=true\n"},
            "V1__a.sql.conf:2: Flyway script setting 'mixed=true' is not supported",
        ),
        ({"V1__a.sql": USERS, "V1.0__b.sql": ORDERS}, "version 1 is also used by"),
        (
            {"V1__grant.sql": "CREATE TABLE t (x text DEFAULT '${env}');\n"},
            "V1__grant.sql:1: ${env} is a Flyway placeholder with no value: give it with --placeholder env=VALUE",
        ),
        ({"20240101120000_x.sql": "-- migrate:down\nDROP TABLE a;\n"}, "has a down section"),
        (
            {"00002_backfill.go": "package migrations\n", "00001_a.sql": "-- +goose Up\nSELECT 1;\n"},
            "a goose Go migration",
        ),
        ({"20240101120000_x.sql": "-- +goose Up\n\n-- +goose Down\nDROP TABLE a;\n"}, "its up section is empty"),
        ({"20240101120000_init/schema.prisma": "model A {}\n", "notes/readme.txt": "x"}, "no migration to run in"),
    ],
)
def test_a_folder_not_understood_is_refused_naming_what_it_holds(
    migrations: Migrations, database: Database, files: dict[str, str], message: str
):
    _write(migrations.path, files)
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 2, result.output
    assert message in result.err
    assert database.history() == [] and database.tables() == set()


def test_format_holds_every_file_to_one_tools_layout(migrations: Migrations):
    _write(migrations.path, LAYOUTS["dbmate"][0])
    assert run_cli("check", "--format", "dbmate", "--dir", str(migrations.path)).code == 0
    migrations.write("000009_stray.up.sql", "CREATE TABLE stray (x int);\n")
    result = run_cli("check", "--dir", str(migrations.path), env={"VPC_MIGRATE_FORMAT": "dbmate"})
    assert result.code == 2 and "000009_stray.up.sql: a golang-migrate migration, and --format is dbmate" in result.err
    assert run_cli("check", "--dir", str(migrations.path)).code == 0  # auto: each file read as its own tool's


FLYWAY_WITH_PLACEHOLDERS = {
    "V1__create_users.sql": USERS.replace("users", "${prefix}users"),
    "V2__grant.sql": (
        "-- ${flyway:filename}: Flyway replaces placeholders in comments and strings too\n"
        "CREATE TABLE settings (env text NOT NULL DEFAULT '${env}');\n"
        "COMMENT ON TABLE settings IS 'created by ${flyway:filename}';\n"
    ),
}


def test_flyway_placeholders_are_replaced_as_flyway_does(migrations: Migrations, database: Database):
    _write(migrations.path, FLYWAY_WITH_PLACEHOLDERS)
    args = ["--dir", str(migrations.path), "--database-url", database.url]
    dry = run_cli("up", "--dry-run", *args, "--placeholder", "prefix=app_", "--placeholder", "env=prod")
    assert dry.code == 0 and "DEFAULT 'prod'" in dry.output and "${env}" not in dry.output, dry.output
    result = run_cli("up", *args, "--placeholder", "prefix=app_", "--placeholder", "env=prod")
    assert result.code == 0, result.output
    assert database.tables() == {"app_users", "settings"}
    default = database.scalar("SELECT column_default FROM information_schema.columns WHERE table_name = 'settings'")
    assert default == "'prod'::text"
    assert database.scalar("SELECT obj_description('settings'::regclass)") == "created by V2__grant.sql"
    # The checksum is the file's as written, as Flyway's is: another value is not drift.
    env = {"VPC_MIGRATE_PLACEHOLDERS": "prefix=app_\nenv=staging\n"}
    assert run_cli("verify", *args, env=env).code == 0
    assert run_cli("up", *args, env=env).code == 0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--placeholder", "prefix=app_"], "V2__grant.sql:2: ${env} is a Flyway placeholder with no value"),
        (["--placeholder", "env"], "--placeholder 'env': give NAME=VALUE"),
        (["--placeholder", "=x"], "give NAME=VALUE"),
    ],
)
def test_a_placeholder_without_a_value_is_refused_and_nothing_runs(
    migrations: Migrations, database: Database, given: list[str], message: str
):
    _write(migrations.path, FLYWAY_WITH_PLACEHOLDERS)
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, *given)
    assert result.code == 2 and message in result.err, result.output
    assert database.history() == [] and database.tables() == set()


def test_placeholders_are_flyways_only(migrations: Migrations, database: Database):
    """In a vpc-migrate file ${...} is SQL as written (here, inside a string), never replaced."""
    migrations.write("0001_keep.sql", "CREATE TABLE t (x text DEFAULT '${env}');\n")
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url, "--placeholder", "env=prod")
    assert result.code == 0, result.output
    default = database.scalar("SELECT column_default FROM information_schema.columns WHERE table_name = 't'")
    assert default == "'${env}'::text"


def test_a_symbolic_link_to_a_folder_is_followed_as_flyway_follows_it_and_a_loop_refused(
    migrations: Migrations, database: Database
):
    shared = migrations.path.parent / "shared"
    shared.mkdir()
    (shared / "V2__orders.sql").write_text(ORDERS)
    _write(migrations.path, {"core/V1__users.sql": USERS})
    (migrations.path / "core" / "shared").symlink_to(shared, target_is_directory=True)
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output
    assert "applied core/shared/V2__orders.sql" in result.err
    (shared / "back").symlink_to(migrations.path / "core", target_is_directory=True)
    looped = run_cli("check", "--dir", str(migrations.path))
    assert looped.code == 2 and "a symbolic link back into a folder it is inside of" in looped.err


def test_flyway_runs_a_file_of_concurrent_statements_outside_a_transaction(migrations: Migrations, database: Database):
    _write(
        migrations.path,
        {
            "V1__users.sql": USERS,
            # Flyway on PostgreSQL detects these and runs the file outside a transaction.
            "V2__email_index.sql": "CREATE INDEX CONCURRENTLY users_email ON users (email);\n",
            # ... or is told so by the script's configuration file.
            "V3__backfill.sql": "UPDATE users SET email = lower(email);\n",
            "V3__backfill.sql.conf": "# per-script settings\nexecuteInTransaction=false\nencoding=UTF-8\n",
        },
    )
    result = run_cli("up", "--dir", str(migrations.path), "--database-url", database.url)
    assert result.code == 0, result.output
    assert "applied V2__email_index.sql (no transaction)" in result.err
    assert "applied V3__backfill.sql (no transaction)" in result.err
    assert database.query("SELECT version, transactional FROM vpc_migrate.history ORDER BY version") == [
        ("1", True),
        ("2", False),
        ("3", False),
    ]
    mixed = migrations.write("V4__mixed.sql", "CREATE TABLE t (x int);\nCREATE INDEX CONCURRENTLY t_x ON t (x);\n")
    refused = run_cli("check", "--dir", str(migrations.path))
    assert refused.code == 2 and f"{mixed.name}:2: this statement cannot run inside a transaction" in refused.err


def test_sqlx_no_transaction_is_its_own_first_line_on_its_own_names(migrations: Migrations, database: Database):
    _write(
        migrations.path,
        {
            "20240101000000_users.sql": USERS,
            "20240102000000_index.sql": "-- no-transaction\nCREATE INDEX CONCURRENTLY users_email ON users (email);\n",
            # Not the marker: a comment that starts the same way.
            "20240103000000_fill.sql": "-- no-transaction needed here\nUPDATE users SET email = lower(email);\n",
        },
    )
    assert run_cli("up", "--dir", str(migrations.path), "--database-url", database.url).code == 0
    assert database.query("SELECT transactional FROM vpc_migrate.history ORDER BY version") == [
        (True,),
        (False,),
        (True,),
    ]
    # A Prisma migration.sql starting so is Prisma's, and Prisma has no such marker: it runs in a transaction.
    prisma = migrations.path.parent / "prisma"
    _write(
        prisma, {"20240101000000_x/migration.sql": "-- no-transaction\nCREATE INDEX CONCURRENTLY i ON users (id);\n"}
    )
    refused = run_cli("check", "--dir", str(prisma))
    assert refused.code == 2 and "cannot run inside a transaction" in refused.err
