"""Behaviour under GitHub Actions: groups, error annotations, step summary, outputs, untrusted text."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from runner.migrate.output import Reporter, escape_data, escape_property
from tests.fix_cli import Migrations, run_cli
from tests.fix_pg import Database


def actions_env(tmp_path: Path, workspace: Path) -> dict[str, str]:
    return {
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_WORKSPACE": str(workspace),
        "GITHUB_REPOSITORY": "acme/shop",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_SHA": "abc123",
        "GITHUB_ACTOR": "octocat",
        "RUNNER_NAME": "vpc-i-0123456789abcdef0",
    }


def up_in_actions(database: Database, migrations: Migrations, tmp_path: Path):
    return run_cli(
        "up",
        "--dir",
        str(migrations.path),
        "--database-url",
        database.url,
        env=actions_env(tmp_path, migrations.path.parent),
    )


def test_success_writes_groups_summary_outputs_and_ci_context(
    database: Database, migrations: Migrations, tmp_path: Path
):
    migrations.write("0001_users.sql", "CREATE TABLE users (id int);\n")
    migrations.write("0002_more.sql", "CREATE TABLE more (id int);\n")
    result = up_in_actions(database, migrations, tmp_path)
    assert result.code == 0, result.output
    assert "::group::0001_users.sql" in result.err and result.err.count("::endgroup::") == 2
    assert (tmp_path / "output").read_text().splitlines() == ["applied-count=2", "version=0002"]
    summary = (tmp_path / "summary.md").read_text()
    assert "| 0001 | 0001_users.sql | ✅ applied |" in summary and "| 0002 | 0002_more.sql | ✅ applied |" in summary
    assert database.query(
        "SELECT github_repository, github_run_id, github_sha, github_actor, runner_name"
        " FROM vpc_migrate.history WHERE version = '1'"
    ) == [("acme/shop", "4242", "abc123", "octocat", "vpc-i-0123456789abcdef0")]


def test_failure_annotates_file_and_line_and_lists_skipped(database: Database, migrations: Migrations, tmp_path: Path):
    migrations.write("0001_ok.sql", "CREATE TABLE ok (id int);\n")
    migrations.write("0002_bad.sql", "CREATE TABLE bad (id int);\nINSERT INTO bad VALUES ('not a number');\n")
    migrations.write("0003_later.sql", "CREATE TABLE later (id int);\n")
    result = up_in_actions(database, migrations, tmp_path)
    assert result.code == 1
    error_lines = [line for line in result.err.splitlines() if line.startswith("::error ")]
    assert len(error_lines) == 1
    assert error_lines[0].startswith("::error file=migrations/0002_bad.sql,line=2,title=Migration failed::")
    summary = (tmp_path / "summary.md").read_text()
    assert "| 0002 | 0002_bad.sql | ❌ failed |" in summary and "| 0003 | 0003_later.sql | ⏭️ skipped |" in summary
    assert (tmp_path / "output").read_text().splitlines() == ["applied-count=1", "version=0001"]


def test_echoed_sql_cannot_issue_workflow_commands(database: Database, migrations: Migrations, tmp_path: Path):
    migrations.write(
        "0001_sneaky.sql",
        "CREATE TABLE notes (body text);\n"
        "INSERT INTO notes VALUES ('\n::add-mask::hide-everything\n"
        "::set-env name=X::y');\n",
    )
    result = up_in_actions(database, migrations, tmp_path)
    assert result.code == 0, result.output
    assert_commands_are_fenced(result.err, allowed={"group", "endgroup"})


def assert_commands_are_fenced(text: str, allowed: set[str]) -> None:
    """Every line that the runner would read as a command is ours, or inside a stop-commands fence."""
    fence = None
    for line in text.splitlines():
        stripped = line.lstrip()
        if fence:
            if stripped == f"::{fence}::":
                fence = None
            continue
        if stripped.startswith("::stop-commands::"):
            fence = stripped.removeprefix("::stop-commands::")
            continue
        if stripped.startswith("::"):
            name = stripped[2:].split("::")[0].split(" ")[0]
            assert name in allowed, f"unfenced workflow command: {line!r}"


@given(st.text())
def test_reporter_never_lets_untrusted_text_become_a_command(text: str):
    err = io.StringIO()
    Reporter({"GITHUB_ACTIONS": "true"}, err=err, out=io.StringIO()).info(text)
    assert_commands_are_fenced(err.getvalue(), allowed=set())


@given(st.text())
def test_escaped_messages_stay_on_one_line(text: str):
    assert "\n" not in escape_data(text) and "\r" not in escape_data(text)
    assert not {":", ","} & set(escape_property(text))


def test_reporter_redacts_masked_secrets_everywhere(tmp_path: Path):
    err, out = io.StringIO(), io.StringIO()
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(tmp_path / "s"), "GITHUB_OUTPUT": str(tmp_path / "o")}
    reporter = Reporter(env, err=err, out=out)
    reporter.mask("s3cr3t-token")
    reporter.info("connecting with s3cr3t-token")
    reporter.error("failed: s3cr3t-token", file="a.sql", line=1)
    reporter.data("s3cr3t-token")
    reporter.summary("| s3cr3t-token |")
    reporter.set_outputs({"x": "s3cr3t-token"})
    everything = err.getvalue() + out.getvalue() + (tmp_path / "s").read_text() + (tmp_path / "o").read_text()
    assert everything.count("s3cr3t-token") == 1  # only the ::add-mask:: line itself
    assert err.getvalue().startswith("::add-mask::s3cr3t-token\n")
