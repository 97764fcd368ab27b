"""The local harness replays a recorded webhook through the real control-plane code."""

from __future__ import annotations

import importlib.util
import json

import pytest

from runner.control_plane.github import AppAuth
from simulator import harness
from tests.fix_control_plane import EVENTS


def test_replay_shows_what_would_be_launched_and_what_waits(capsys: pytest.CaptureFixture[str]):
    code = harness.main([str(EVENTS / "workflow_job_queued.json"), "--jobs", "12", "--max-runners", "10", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [a["status"] for a in result["receiver"]] == [202] * 12
    assert len(result["launched"]) == 10 and len(result["back_to_queue"]) == 2
    assert len({row["job_id"] for row in result["launched"]}) == 10
    assert all(row["runner_name"] == f"vpc-{row['instance_id']}" for row in result["launched"])
    assert result["calls_per_runner"]["github"] > 0


def test_labels_of_no_pool_launch_nothing(capsys: pytest.CaptureFixture[str]):
    assert (
        harness.main([str(EVENTS / "workflow_job_queued.json"), "--pool-label", "gpu", "--labels", "self-hosted,gpu"])
        == 0
    )
    out = capsys.readouterr().out
    assert "launched 0 runner(s)" in out and "match no pool" in out


def test_unreadable_event_is_exit_2(tmp_path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "event.json"
    bad.write_text("{not json")
    assert harness.main([str(bad)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_errored_jobs_are_listed_and_exit_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    """The defect this guards: PyJWT missing made every job error, yet the harness printed 'launched 0' and exited 0."""

    def no_jwt(self: object) -> str:
        raise ModuleNotFoundError("No module named 'jwt'")

    monkeypatch.setattr(AppAuth, "jwt", no_jwt)
    assert harness.main([str(EVENTS / "workflow_job_queued.json"), "--jobs", "3"]) == 1
    captured = capsys.readouterr()
    assert "errored: 3 job(s)" in captured.out and "No module named 'jwt'" in captured.out
    assert "Traceback" not in captured.out + captured.err


def test_a_missing_dev_group_is_named_and_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "jwt" else real_find_spec(name))
    assert harness.main([str(EVENTS / "workflow_job_queued.json")]) == 2
    err = capsys.readouterr().err
    assert "needs the `dev` dependency group (PyJWT missing)" in err
