"""Text vpc-migrate did not write can never become a GitHub Actions workflow command.

Attackers here: any database login (application_name and query of a session holding a lock, server
errors and NOTICEs raised from its functions), the author of a migration file, a file name, a child
process. Each test runs vpc-migrate under ``GITHUB_ACTIONS=true`` and reads its output with a model
of the runner's command parser (``workflow_commands``): every command the runner would process must be
one vpc-migrate wrote itself, and its own ``::add-mask::`` must still be processed after the attack.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.migrate.locking import lock_key
from runner.migrate.output import WORD_JOINER, Reporter, disarm_workflow_commands, guard_untrusted
from tests.fix_cli import Migrations, Result, finish, run_cli, start_cli
from tests.fix_pg import Database, IamUser, aws_env
from tests.migrate.test_github_actions import actions_env
from tests.migrate.workflow_commands import Command, Parsed, parse_line, processed_commands

FENCE_TOKEN = re.compile(r"[0-9a-f]{32}")
IAM_TOKEN = re.compile(r"X-Amz-Signature=[0-9a-f]{64}")
LINE_BREAK = re.compile(r"\r\n|\r|\n")
LOCK_HOLDER_NAMES = ["##[stop-commands]x", "::stop-commands::x"]
PASSWORD = "hunter2-not-a-real-password"


# -- the parser port itself ------------------------------------------------------------------------
def summary(parsed: Parsed) -> list[tuple[str, str, str]]:
    return [(c.name, c.data, c.form) for c in parsed.commands]


def test_port_reads_v2_only_at_the_start_of_a_line_after_white_space():
    parsed = processed_commands("  \t::add-mask::s3cr3t\nsay ::add-mask::no\n::nosuch::x\n::debug no end\n")
    assert summary(parsed) == [("add-mask", "s3cr3t", "v2")]
    assert parse_line("::ADD-MASK::upper") == Command("add-mask", "upper")


def test_port_reads_legacy_anywhere_but_only_when_v2_does_not_parse():
    parsed = processed_commands(
        "log ##[set-output name=x;other=y]value\n"
        "::nosuch::x ##[debug]legacy\n"
        "::debug::v2 wins ##[warning]not this\n"
        "##[nosuch]a ##[debug]only the first opener counts\n"
        "##[debug no closing bracket\n"
    )
    assert summary(parsed) == [
        ("set-output", "value", "legacy"),
        ("debug", "legacy", "legacy"),
        ("debug", "v2 wins ##[warning]not this", "v2"),
    ]
    assert parsed.commands[0].properties == {"name": "x", "other": "y"}


def test_port_unescapes_data_and_properties():
    command = parse_line("::error file=a%3Ab.sql,line=3,title=x%2Cy::50%25%0Anext%0D%2C")
    assert command == Command("error", "50%\nnext\r%2C", {"file": "a:b.sql", "line": "3", "title": "x,y"})
    assert parse_line("##[debug]a%3Bb%5Dc%0A") == Command("debug", "a;b]c\n", form="legacy")


def test_port_splits_lines_at_cr_and_lf():
    parsed = processed_commands("progress 50%\r::add-mask::a\r\n##[debug]b\n")
    assert summary(parsed) == [("add-mask", "a", "v2"), ("debug", "b", "legacy")]
    assert [c.line for c in parsed.commands] == [1, 2]


def test_port_models_stop_commands_and_only_the_token_resumes():
    parsed = processed_commands(
        "::stop-commands::t0k\n::add-mask::ignored\n##[set-env name=A]ignored\n::stop-commands::other\n"
        "::other::\n::t0k::\n::add-mask::seen\n"
    )
    assert summary(parsed) == [("stop-commands", "t0k", "v2"), ("t0k", "", "v2"), ("add-mask", "seen", "v2")]
    assert parsed.commands[1].resume and parsed.stopped_by is None
    legacy = processed_commands("SELECT 1 -- ##[stop-commands]x\n::add-mask::lost\n::X::\n")
    assert summary(legacy) == [("stop-commands", "x", "legacy"), ("x", "", "v2")]
    forever = processed_commands("::stop-commands::\n::add-mask::lost\n::::\n")
    assert forever.names() == ["stop-commands"] and forever.stopped_by == ""


def test_port_ignores_disarmed_lines():
    assert parse_line(f"##{WORD_JOINER}[debug]x") is None
    assert parse_line(f"  {WORD_JOINER}::debug::x") is None
    assert parse_line(disarm_workflow_commands("  ::debug::x ##[debug]y")) is None


# -- what a command of vpc-migrate's own looks like ----------------------------------------------------
def attack_line(output: str, payload: str) -> int:
    """The first line of ``output`` (as the runner splits it) holding the attacker's ``payload``."""
    lines = LINE_BREAK.split(output)
    found = [i for i, line in enumerate(lines) if payload in line]
    assert found, f"the attack never reached the log: {payload!r}"
    return found[0]


def assert_only_ours(
    err: str,
    out: str = "",
    *,
    mask: Callable[[str], bool] = lambda data: False,
    groups: Iterable[str] = (),
) -> Parsed:
    """Every command the runner would process was written by vpc-migrate: add-mask of a secret it
    registered, group/endgroup of a migration, an error or warning whose untrusted parts are disarmed,
    and stop-commands fences with its own random tokens, each resumed. Stdout carries no command."""
    assert processed_commands(out).commands == [], "stdout must never carry a command"
    parsed = processed_commands(err)
    assert parsed.stopped_by is None, "a stop-commands fence was never resumed"
    fence: str | None = None
    groups = set(groups)
    for command in parsed.commands:
        if fence is not None:
            assert command.resume and command.name == fence, command
            fence = None
            continue
        assert command.form == "v2", f"vpc-migrate writes no legacy command: {command}"
        if command.name == "stop-commands":
            assert FENCE_TOKEN.fullmatch(command.data), command
            fence = command.data
        elif command.name == "add-mask":
            assert mask(command.data), f"a mask vpc-migrate did not register: {command}"
        elif command.name == "group":
            assert command.data in groups, command
        elif command.name == "endgroup":
            assert command.data == "" and not command.properties, command
        elif command.name in ("error", "warning"):
            for text in (command.data, *command.properties.values()):
                assert "##[" not in text, f"a live legacy command inside an annotation: {command}"
        else:
            raise AssertionError(f"not a command vpc-migrate writes: {command}")
    return parsed


def masks_after(parsed: Parsed, line: int) -> list[Command]:
    return [c for c in parsed.commands if c.name == "add-mask" and c.line > line]


def annotations(parsed: Parsed, name: str = "error") -> list[Command]:
    return [c for c in parsed.commands if c.name == name]


def is_iam_token(data: str) -> bool:
    return bool(IAM_TOKEN.search(data))


# -- the reporter, on any text -----------------------------------------------------------------------
PIECES = st.sampled_from(
    [
        "::",
        "##[",
        "]",
        "#",
        "[",
        ":",
        " ",
        "\t",
        "\n",
        "\r",
        "%",
        "%0A",
        "%25",
        ",",
        "=",
        "add-mask",
        "stop-commands",
        "set-output name=x",
        "debug",
        "x",
        "##[add-mask]",
        "##[stop-commands]",
        "##[set-output name=x;y=z]",
        "::add-mask::",
        "::stop-commands::",
        "::error file=a,line=1::",
        WORD_JOINER,
        "\x1c",
        "\x85",
        "\u2028",
        "\u3000",
    ]
)
UNTRUSTED = st.lists(PIECES | st.text(max_size=3), max_size=24).map("".join)


def actions_reporter() -> tuple[Reporter, io.StringIO, io.StringIO]:
    err, out = io.StringIO(), io.StringIO()
    return Reporter({"GITHUB_ACTIONS": "true"}, err=err, out=out), err, out


@given(UNTRUSTED)
def test_info_is_fenced_byte_for_byte_and_our_next_mask_still_works(text: str):
    reporter, err, out = actions_reporter()
    reporter.info(text)
    reporter.mask("next-token")
    parsed = assert_only_ours(err.getvalue(), out.getvalue(), mask=lambda data: data == "next-token")
    assert parsed.names()[-1] == "add-mask"
    assert text + "\n" in err.getvalue()


@given(UNTRUSTED, UNTRUSTED, UNTRUSTED)
def test_annotations_and_group_titles_carry_exactly_one_command(message: str, file: str, title: str):
    reporter, err, out = actions_reporter()
    reporter.error(message, file=file, line=3, title=title)
    reporter.warning(message)
    with reporter.group(title):
        pass
    parsed = assert_only_ours(err.getvalue(), out.getvalue(), groups={disarm_workflow_commands(title)})
    assert parsed.names() == ["error", "warning", "group", "endgroup"]
    assert parsed.commands[0].data.replace(WORD_JOINER, "") == message.replace(WORD_JOINER, "")


@given(UNTRUSTED)
def test_data_on_stdout_never_carries_a_command_and_json_keeps_its_value(text: str):
    reporter, err, out = actions_reporter()
    reporter.data(text)
    assert_only_ours(err.getvalue(), out.getvalue())
    value = {"name": text, "list": [text, f"##[{text}]"]}
    reporter, err, out = actions_reporter()
    reporter.data_json(value)
    assert_only_ours(err.getvalue(), out.getvalue())
    assert json.loads(out.getvalue()) == value


@given(st.lists(UNTRUSTED, max_size=6))
def test_prints_of_in_process_code_pass_the_gate_even_split_into_pieces(pieces: list[str]):
    reporter, err, out = actions_reporter()
    with reporter.gate_stdio():
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
            sys.stderr.write(piece)
    reporter.mask("after")
    parsed = assert_only_ours(err.getvalue(), out.getvalue(), mask=lambda data: data == "after")
    assert parsed.names()[-1] == "add-mask"


def test_guard_leaves_harmless_text_alone_and_fences_the_rest():
    assert guard_untrusted("CREATE TABLE a (b text DEFAULT 'x::y');\n") == "CREATE TABLE a (b text DEFAULT 'x::y');\n"
    for text in ("a ##[debug]b", "ok\n  ::warning::x", "progress\r::add-mask::y"):
        fenced = guard_untrusted(text)
        assert fenced.startswith("::stop-commands::") and text in fenced and not fenced.endswith("\n")
    assert guard_untrusted("##[debug]b\n").endswith("::\n")


def test_without_actions_output_is_unchanged():
    err, out = io.StringIO(), io.StringIO()
    reporter = Reporter({}, err=err, out=out)
    reporter.info("##[stop-commands]x")
    reporter.data("::add-mask::y")
    reporter.data_json(["##[debug]z"])
    reporter.error("##[error]e")
    assert err.getvalue() == "##[stop-commands]x\nerror: ##[error]e\n"
    assert out.getvalue() == '::add-mask::y\n[\n  "##[debug]z"\n]\n'


# -- attacks through a real database -------------------------------------------------------------------
def env_for(tmp_path: Path, migrations: Migrations, **extra: str) -> dict[str, str]:
    return {**actions_env(tmp_path, migrations.path.parent), **extra}


@pytest.fixture
def hold_migration_lock(database: Database) -> Iterator[Callable[[Database, str], psycopg.Connection]]:
    """A login with no business here takes the migration lock, with an application_name of its choice."""
    held: list[psycopg.Connection] = []

    def hold(db: Database, application_name: str) -> psycopg.Connection:
        conn = psycopg.connect(db.url, application_name=application_name, autocommit=True)
        conn.execute("SELECT pg_advisory_lock(%s)", [lock_key("vpc_migrate")])
        held.append(conn)
        return conn

    yield hold
    for conn in held:
        conn.close()


def wait_until_the_holder_was_named(db: Database) -> None:
    """vpc-migrate's lock session has asked who holds the lock (and so reports it)."""
    db.wait_until(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'vpc-migrate lock%'"
        " AND state = 'idle' AND query LIKE '%pg_locks%'"
    )


@pytest.mark.parametrize("holder", LOCK_HOLDER_NAMES)
def test_a_lock_holder_cannot_stop_the_mask_of_the_next_iam_token(
    iam_user: IamUser, migrations: Migrations, tmp_path: Path, hold_migration_lock, holder: str
):
    db = iam_user.database
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    blocker = hold_migration_lock(db, holder)
    run = start_cli(
        "up",
        "--dir",
        str(migrations.path),
        *iam_user.cli_args(),
        "--lock-wait",
        "60s",
        env=env_for(tmp_path, migrations, **aws_env()),
    )
    wait_until_the_holder_was_named(db)
    time.sleep(1.1)  # tokens are signed to the second: the next one will differ and be announced again
    blocker.close()
    result = finish(run)
    assert result.code == 0, result.output
    assert "waiting for the migration lock, held by pid" in result.err
    parsed = assert_only_ours(result.err, result.out, mask=is_iam_token, groups={"0001_users.sql"})
    # The migrate connection's token is minted after the holder's name was printed, and still masked.
    assert masks_after(parsed, attack_line(result.err, holder))
    for number, line in enumerate(LINE_BREAK.split(result.err)):
        if IAM_TOKEN.search(line):
            assert parsed.commands and any(c.line == number and c.name == "add-mask" for c in parsed.commands)


@pytest.mark.parametrize("holder", LOCK_HOLDER_NAMES)
def test_a_lock_holder_name_in_the_lock_wait_error_is_no_command(
    database: Database, migrations: Migrations, tmp_path: Path, hold_migration_lock, holder: str
):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    hold_migration_lock(database, holder)
    result = run_cli(
        "up",
        "--dir",
        str(migrations.path),
        "--database-url",
        database.url,
        "--lock-wait",
        "0.5s",
        env=env_for(tmp_path, migrations),
    )
    assert result.code == 4, result.output
    attack_line(result.err, holder)
    parsed = assert_only_ours(result.err, result.out)
    [error] = annotations(parsed)
    assert "held the lock for all of --lock-wait" in error.data
    assert disarm_workflow_commands(holder) in error.data or holder in error.data


def test_a_lock_holder_cannot_stop_the_mask_of_the_exec_password(
    database: Database, migrations: Migrations, tmp_path: Path, hold_migration_lock
):
    child = tmp_path / "framework.py"
    child.write_text(
        "import sys\n"
        "print('##[add-mask]child-stdout')\n"
        "print('::set-output name=x::child', file=sys.stderr)\n"
        "print('  ##[stop-commands]child', file=sys.stderr)\n"
        "sys.stdout.write('##'); sys.stdout.flush(); sys.stdout.write('[debug]split\\n')\n"
        "sys.stderr.write('no newline at the end ##[debug]tail')\n"
    )
    blocker = hold_migration_lock(database, "##[stop-commands]x")
    run = start_cli(
        "exec",
        "--database-url",
        f"{database.url}?password={PASSWORD}",
        "--lock-wait",
        "60s",
        "--",
        sys.executable,
        str(child),
        env=env_for(tmp_path, migrations),
    )
    wait_until_the_holder_was_named(database)
    blocker.close()
    result = finish(run)
    assert result.code == 0, result.output
    parsed = assert_only_ours(result.err, result.out, mask=lambda data: data == PASSWORD)
    assert [c.data for c in masks_after(parsed, attack_line(result.err, "##[stop-commands]x"))] == [PASSWORD]
    assert "::set-output name=x::child" in result.err and "##[debug]tail" in result.err  # relayed as is
    assert f"##{WORD_JOINER}[add-mask]child-stdout" in result.out  # stdout is data: disarmed, not fenced
    assert f"##{WORD_JOINER}[debug]split" in result.out


SNEAKY_SQL = {
    "legacy-only": "CREATE TABLE notes (body text); -- ##[add-mask]\n"
    "INSERT INTO notes VALUES ('##[set-output name=x]y'), ('##[stop-commands]x');\n",
    "both": """\
-- ##[add-mask]
-- ##[set-output name=x]y
CREATE TABLE notes (body text);
/*
::warning::pwned
*/
INSERT INTO notes VALUES ('##[set-output name=x]y'), ('
::warning::pwned
  ::add-mask::everything');
""",
}


@pytest.mark.parametrize("dry_run", [False, True], ids=["up", "dry-run"])
@pytest.mark.parametrize("sql", SNEAKY_SQL.values(), ids=SNEAKY_SQL.keys())
def test_sql_of_a_migration_file_is_no_command(
    database: Database, migrations: Migrations, tmp_path: Path, sql: str, dry_run: bool
):
    migrations.write("0001_sneaky.sql", sql)
    extra = ["--dry-run"] if dry_run else []
    result = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, *extra, env=env_for(tmp_path, migrations)
    )
    assert result.code == 0, result.output
    attack_line(result.err, "##[set-output name=x]y")
    title = "would apply 0001_sneaky.sql (in one transaction)" if dry_run else "0001_sneaky.sql"
    parsed = assert_only_ours(result.err, result.out, groups={title})
    assert sql.rstrip() in result.err  # the reader sees the file as written
    assert "stop-commands" in parsed.names()


def test_a_server_error_is_no_command(database: Database, migrations: Migrations, tmp_path: Path):
    migrations.write(
        "0001_raise.sql",
        "DO $$ BEGIN RAISE EXCEPTION '##[stop-commands]x'"
        " USING DETAIL = E'::add-mask::detail\\n##[set-output name=x]y', HINT = '##[debug]hint'; END $$;\n",
    )
    result = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, env=env_for(tmp_path, migrations)
    )
    assert result.code == 1, result.output
    parsed = assert_only_ours(result.err, result.out, groups={"0001_raise.sql"})
    [error] = annotations(parsed)
    assert error.properties["file"] == "migrations/0001_raise.sql"
    assert f"##{WORD_JOINER}[stop-commands]x" in error.data and f"##{WORD_JOINER}[debug]hint" in error.data
    # A failed no-transaction file keeps the message in the history; the next run reports it as drift.
    migrations.write(
        "0001_raise.sql", "-- vpc-migrate: no-transaction\n" + (migrations.path / "0001_raise.sql").read_text()
    )
    assert run_cli("up", "--dir", str(migrations.path), "--database-url", database.url).code == 1
    again = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, env=env_for(tmp_path, migrations)
    )
    assert again.code == 5, again.output
    [drift] = annotations(assert_only_ours(again.err, again.out))
    assert f"##{WORD_JOINER}[stop-commands]x" in drift.data


def test_a_notice_is_no_command(database: Database, migrations: Migrations, tmp_path: Path):
    migrations.write(
        "0001_notice.sql",
        "DO $$ BEGIN RAISE NOTICE '##[debug]x'; RAISE NOTICE E'line\\n::add-mask::notice'; END $$;\n",
    )
    result = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, env=env_for(tmp_path, migrations)
    )
    assert result.code == 0, result.output
    assert "NOTICE: ##[debug]x" in result.err
    assert_only_ours(result.err, result.out, groups={"0001_notice.sql"})


def test_file_names_are_no_command(migrations: Migrations, tmp_path: Path):
    try:
        migrations.write("0001_##[set-output name=x]y.sql", "SELECT 1;\n")
        migrations.write("::stop-commands::x.sql", "SELECT 1;\n")
    except OSError:
        pytest.skip("this filesystem refuses such names")
    result = run_cli(
        "up",
        "--dir",
        str(migrations.path),
        "--database-url",
        "postgresql://nowhere.invalid/x",
        env=env_for(tmp_path, migrations),
    )
    assert result.code == 2, result.output
    [error] = annotations(assert_only_ours(result.err, result.out))
    assert f"0001_##{WORD_JOINER}[set-output name=x]y.sql" in error.data and "::stop-commands::x.sql" in error.data


@pytest.fixture
def hot_table(database: Database) -> Database:
    database.query("CREATE TABLE hot (id int PRIMARY KEY)")
    return database


def test_a_table_lock_blocker_and_its_query_are_no_command(hot_table: Database, migrations: Migrations, tmp_path: Path):
    migrations.write("0001_alter.sql", "ALTER TABLE hot ADD COLUMN added int;\n")
    blocker = psycopg.connect(hot_table.url, application_name="##[stop-commands]x")
    try:
        blocker.execute("SELECT count(*) FROM hot /* ##[set-output name=x]y */")
        result = run_cli(
            "up",
            "--dir",
            str(migrations.path),
            "--database-url",
            hot_table.url,
            "--lock-timeout",
            "100ms",
            "--lock-retries",
            "1",
            env=env_for(tmp_path, migrations),
        )
    finally:
        blocker.close()
    assert result.code == 4, result.output
    attack_line(result.err, "blocked by pid")
    attack_line(result.err, "##[set-output name=x]y")
    [error] = annotations(assert_only_ours(result.err, result.out, groups={"0001_alter.sql"}))
    assert f"##{WORD_JOINER}[stop-commands]x" in error.data


def test_status_and_doctor_data_is_no_command(
    database: Database, migrations: Migrations, tmp_path: Path, hold_migration_lock
):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    assert run_cli("up", "--dir", str(migrations.path), "--database-url", database.url).code == 0
    database.query(
        "INSERT INTO vpc_migrate.history (version, name, checksum, kind, transactional, state, error)"
        " VALUES (2, '##[set-output name=x]y', 'c', 'sql', true, 'failed', E'##[add-mask]e\\n::warning::w')"
    )
    hold_migration_lock(database, "##[stop-commands]x")
    env = env_for(tmp_path, migrations)
    common = ("--dir", str(migrations.path), "--database-url", database.url)
    table = run_cli("status", *common, env=env)
    as_json = run_cli("status", "--json", *common, env=env)
    doctor = run_cli("doctor", "--database-url", database.url, env=env)
    doctor_json = run_cli("doctor", "--json", "--database-url", database.url, env=env)
    for result in (table, as_json, doctor, doctor_json):
        assert_only_ours(result.err, result.out)
    assert f"##{WORD_JOINER}[set-output name=x]y" in table.out
    assert f"##{WORD_JOINER}[stop-commands]x" in doctor.out
    assert json.loads(as_json.out)[1]["error"] == "##[add-mask]e\n::warning::w"  # same value, no command
    assert "##[stop-commands]x" in json.loads(doctor_json.out)[-1]["detail"]


def test_a_python_migration_and_its_exception_are_no_command(
    database: Database, migrations: Migrations, tmp_path: Path
):
    migrations.write(
        "0001_prints.py",
        "import sys\n\n\ndef migrate(conn):\n"
        "    print('##[add-mask]py')\n"
        "    print('::set-output name=x::py', file=sys.stderr)\n"
        "    sys.stdout.write('##'); sys.stdout.flush(); sys.stdout.write('[debug]split')\n"
        "    print(conn.execute(\"SELECT '##[stop-commands]from-db'\").fetchone()[0], file=sys.stderr)\n",
    )
    migrations.write("0002_fails.py", "def migrate(conn):\n    raise RuntimeError('##[stop-commands]x')\n")
    result = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, env=env_for(tmp_path, migrations)
    )
    assert result.code == 1, result.output
    parsed = assert_only_ours(result.err, result.out, groups={"0001_prints.py", "0002_fails.py"})
    assert "##[stop-commands]from-db" in result.err and f"##{WORD_JOINER}[debug]split" in result.out
    [error] = annotations(parsed)
    assert f"RuntimeError: ##{WORD_JOINER}[stop-commands]x" in error.data


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql not installed")
def test_psql_output_is_no_command(database: Database, migrations: Migrations, tmp_path: Path):
    result = run_cli(
        "psql",
        "--database-url",
        database.url,
        "--",
        "-tAc",
        "SELECT '##[add-mask]x' UNION ALL SELECT '::warning::y'",
        "-c",
        "DO $$ BEGIN RAISE NOTICE '##[debug]n'; END $$",
        env=env_for(tmp_path, migrations),
    )
    assert result.code == 0, result.output
    attack_line(result.err, "##[debug]n")
    assert_only_ours(result.err, result.out)
    assert f"##{WORD_JOINER}[add-mask]x" in result.out and f"{WORD_JOINER}::warning::y" in result.out


def test_an_unexpected_server_error_is_no_command(database: Database, migrations: Migrations, tmp_path: Path):
    """A server error outside a migration is reported (its message is the attacker's text), through the gate."""
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    database.query(
        "CREATE SCHEMA vpc_migrate;"
        " CREATE FUNCTION vpc_migrate.boom() RETURNS SETOF record LANGUAGE plpgsql"
        " AS $$ BEGIN RAISE EXCEPTION '##[stop-commands]x'; END $$;"
        " CREATE VIEW vpc_migrate.history AS SELECT * FROM vpc_migrate.boom() AS t(version bigint, name text,"
        " checksum text, kind text, transactional boolean, state text, started_at timestamptz,"
        " finished_at timestamptz, duration_ms bigint, error text)"
    )
    result: Result = run_cli(
        "up", "--dir", str(migrations.path), "--database-url", database.url, env=env_for(tmp_path, migrations)
    )
    assert result.code == 1 and "the database refused:" in result.err and "Traceback" not in result.err, result.output
    attack_line(result.err, "stop-commands]x")  # inside the annotation, its ##[ disarmed
    assert_only_ours(result.err, result.out)


def test_exec_masks_a_password_both_as_given_and_url_encoded(
    tmp_path: Path, migrations: Migrations, database: Database
):
    """PGPASSWORD carries it as given, DATABASE_URL URL-encoded: a child may print either."""
    special = "p@ss:w/rd%-not-real"
    child = tmp_path / "framework.py"
    child.write_text("import os\nprint(os.environ['PGPASSWORD'])\nprint(os.environ['DATABASE_URL'])\n")
    url = f"{database.url}?password=p%40ss%3Aw%2Frd%25-not-real"
    result = run_cli("exec", "--database-url", url, "--", sys.executable, str(child), env=env_for(tmp_path, migrations))
    assert result.code == 0, result.output
    parsed = processed_commands(result.err)
    masked = {c.data for c in parsed.commands if c.name == "add-mask"}
    assert {special, "p%40ss%3Aw%2Frd%25-not-real"} <= masked
