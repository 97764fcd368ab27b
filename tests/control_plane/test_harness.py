"""The local harness replays a recorded webhook through the real control-plane code."""

from __future__ import annotations

import importlib.util
import json

import pytest

from runner.control_plane import trace
from runner.control_plane.github import AppAuth
from simulator import harness
from tests.fix_control_plane import EVENTS


def test_replay_shows_what_would_be_launched_and_what_waits(capsys: pytest.CaptureFixture[str]):
    code = harness.main(
        [str(EVENTS / "workflow_job_queued.json"), "--jobs", "12", "--max-runners", "10", "--no-boot", "--json"]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert [a["status"] for a in result["receiver"]] == [202] * 12
    assert len(result["launched"]) == 10 and len(result["back_to_queue"]) == 2
    assert len({row["job_id"] for row in result["launched"]}) == 10
    assert all(row["runner_name"] == f"vpc-{row['instance_id']}" for row in result["launched"])
    assert result["calls_per_runner"]["github"] > 0


@pytest.mark.parametrize("baked", [False, True], ids=["cold", "baked"])
def test_every_simulated_job_gets_a_complete_trace(capsys: pytest.CaptureFixture[str], baked: bool):
    """Instances boot (the real user data), run their job and terminate; the two jobs that waited for
    capacity then launch too. Each job's trace holds every milestone, in order, on one instance."""
    argv = [str(EVENTS / "workflow_job_queued.json"), "--jobs", "6", "--max-runners", "4", "--json"]
    assert harness.main(argv + (["--baked"] if baked else [])) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["launched"]) == 6 and len(result["back_to_queue"]) == 2
    for job in result["traces"]:
        assert job["missing"] == [], job["text"]
        assert [m["milestone"] for m in job["marks"]] == list(trace.MILESTONES)
        at = {m["milestone"]: trace.epoch(m["at"]) for m in job["marks"]}
        # One writer's milestones are in order; across writers (the instance seeing its runner online, the
        # runner's own start of the job) two clocks read the same moment, a few milliseconds apart.
        for writer in (trace.MILESTONES[:6], trace.MILESTONES[6:10], trace.MILESTONES[10:12]):
            assert [at[m] for m in writer] == sorted(at[m] for m in writer), job["text"]
        assert at["registered"] <= at["boot_started"] and at["finished"] <= at["instance_gone"], job["text"]
        assert len(job["instance_ids"]) == 1
    waited = {t["job_id"]: t["intervals"]["QueueWait"] for t in result["traces"]}
    ran_first = {t["job_id"]: t["intervals"]["QueueToStart"] for t in result["traces"]}
    for job_id in result["back_to_queue"]:  # a job that waited was picked after an earlier job finished
        earlier_finish = min(
            trace.epoch(m["at"]) for t in result["traces"] for m in t["marks"] if m["milestone"] == "finished"
        )
        picked = next(
            trace.epoch(m["at"])
            for t in result["traces"]
            if t["job_id"] == job_id
            for m in t["marks"]
            if m["milestone"] == "picked"
        )
        assert picked > earlier_finish and waited[job_id] > 0 and ran_first[job_id] > 0
    assert set(result["latency"]) >= {"QueueToStart", "BootTime"}


def test_the_printed_trace_names_each_milestone(capsys: pytest.CaptureFixture[str]):
    assert harness.main([str(EVENTS / "workflow_job_queued.json"), "--jobs", "1"]) == 0
    out = capsys.readouterr().out
    assert "job traces" in out and "QueueToStart: p50" in out
    for milestone in trace.MILESTONES:
        assert f"  {milestone}" in out
    assert "missing:" not in out


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
