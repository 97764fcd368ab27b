"""Scenario 4: the control plane under a burst: API calls per launched runner and handler time per job,
through the local harness (moto for AWS, the fake GitHub API on loopback)."""

from __future__ import annotations

import json
import statistics
from typing import Any

from tools import REPO

from simulator.harness import replay

EVENT = REPO / "tests" / "control_plane" / "events" / "workflow_job_queued.json"


def control_plane(*, jobs: int, runs: int) -> dict[str, Any]:
    payload = json.loads(EVENT.read_text())
    rows = [
        replay(
            payload,
            jobs=jobs,
            max_runners=min(jobs, 10),
            spot=False,
            labels=["self-hosted", "linux", "x64", "vpc"],
            pool_label="vpc",
            instance_types=["t3.small", "t3a.small"],
            boot=False,  # the burst itself: what the receiver and scale-up cost per job
        )
        for _ in range(max(1, min(runs, 3)))
    ]

    def med(path: tuple[str, str]) -> float:
        return statistics.median(r[path[0]][path[1]] for r in rows)

    return {
        "jobs": jobs,
        "max_runners": min(jobs, 10),
        "launched": len(rows[0]["launched"]),
        "back_to_queue": len(rows[0]["back_to_queue"]),
        "calls_per_runner": {k: med(("calls_per_runner", k)) for k in ("ec2", "github", "ssm")},
        "ms_per_job": {k: med(("seconds_per_job", k)) * 1000 for k in ("receiver", "scale_up")},
    }
