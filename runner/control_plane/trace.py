"""One job's timeline, from GitHub's ``created_at`` to the instance gone.

Whoever sees a milestone prints one JSON line for it (``"trace": MILESTONE``) with the job id or
the instance id; where that component also knows the interval's start, the line carries the interval
as an EMF metric in seconds (metrics.py). ``timeline`` assembles one job from such lines, whatever
log group they came from: scripts/job-trace reads them from CloudWatch Logs, the offline harness from
what its simulated control plane and instances printed.

    created        GitHub's workflow_job.created_at      webhook, on "queued"
    received       the delivery reached the receiver      webhook
    enqueued       the job message is in the queue        webhook (scale-up reads SQS's SentTimestamp)
    picked         scale-up took the message              scale-up
    launched       CreateFleet answered with an instance  scale-up (names the instance)
    registered     JIT runner created, its config stored  scale-up
    boot_started   the user data began                    instance
    software_ready runner, kit and CA bundle in place     instance (a baked image skips the installs)
    config_fetched the JIT config read and deleted        instance
    runner_online  the runner listens for its job         instance
    started        GitHub's workflow_job.started_at       webhook, on "in_progress"
    finished       GitHub's workflow_job.completed_at     webhook, on "completed"
    instance_gone  EC2 reports the instance terminated    reaper (EventBridge state change)

Nothing attacker-written goes into a line: ids are numbers or validated instance ids, the rest are
names from this module or fixed words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import metrics

MILESTONES = (
    "created",
    "received",
    "enqueued",
    "picked",
    "launched",
    "registered",
    "boot_started",
    "software_ready",
    "config_fetched",
    "runner_online",
    "started",
    "finished",
    "instance_gone",
)
# Metric name -> (from, to). A line for ``to`` carries the metric when its writer knows ``from``.
INTERVALS: dict[str, tuple[str, str]] = {
    "DeliveryDelay": ("created", "received"),
    "QueueWait": ("enqueued", "picked"),
    "LaunchTime": ("picked", "launched"),
    "RunnerSetup": ("launched", "registered"),
    "InstallTime": ("boot_started", "software_ready"),
    "ConfigWait": ("software_ready", "config_fetched"),
    "RunnerStart": ("config_fetched", "runner_online"),
    "BootTime": ("boot_started", "runner_online"),
    "QueueToStart": ("created", "started"),
    "JobDuration": ("started", "finished"),
    "InstanceLifetime": ("launched", "instance_gone"),
}
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
JOB_CONCLUSIONS = frozenset({"success", "failure", "neutral", "cancelled", "skipped", "timed_out", "action_required"})


def record(
    fleet: str,
    milestone: str,
    at: float,
    *,
    job_id: int | None = None,
    instance_id: str | None = None,
    known: Mapping[str, float] | None = None,
    **fields: str | int | bool,
) -> dict[str, Any]:
    """Print (and return) the line for ``milestone`` at epoch second ``at``; ``known``: earlier
    milestones this writer saw, whose intervals to ``milestone`` become metrics."""
    if milestone not in MILESTONES:
        raise ValueError(f"unknown milestone {milestone!r}")
    if instance_id is not None and not INSTANCE_ID.match(instance_id):
        raise ValueError(f"not an instance id: {instance_id!r}")
    known = known or {}
    values = {
        name: round(max(at - known[start], 0.0), 3)
        for name, (start, end) in INTERVALS.items()
        if end == milestone and start in known
    }
    ids = {k: v for k, v in (("job_id", job_id), ("instance_id", instance_id)) if v is not None}
    line = {"trace": milestone, "at": iso(at), **ids, **fields}
    document: dict[str, Any] = {"Fleet": fleet, **line}
    if values:
        document = {**metrics.emf(fleet, values, unit="Seconds", at_ms=int(at * 1000)), **line}
    metrics.write(document)
    return document


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str) -> float:
    """GitHub's and our own ISO 8601 times (``...Z``) as epoch seconds; ValueError when malformed, or
    outside what a trace line can print (1970 to 9999 in UTC: 9999-12-31T23:59:59-01:00 is not)."""
    seconds = datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    if not 0 <= seconds < _YEAR_10000:
        raise ValueError(f"time out of range: {text!r}")
    return seconds


_YEAR_10000 = 253_402_300_800  # epoch second of 10000-01-01T00:00:00Z


@dataclass(frozen=True)
class Mark:
    milestone: str
    at: float
    line: Mapping[str, Any]


@dataclass(frozen=True)
class Timeline:
    job_id: int
    instance_ids: tuple[str, ...]
    marks: tuple[Mark, ...]  # one per milestone seen (the first), in MILESTONES order

    @property
    def missing(self) -> tuple[str, ...]:
        seen = {m.milestone for m in self.marks}
        return tuple(m for m in MILESTONES if m not in seen)

    def at(self, milestone: str) -> float | None:
        return next((m.at for m in self.marks if m.milestone == milestone), None)

    def intervals(self) -> dict[str, float]:
        found = {}
        for name, (start, end) in INTERVALS.items():
            a, b = self.at(start), self.at(end)
            if a is not None and b is not None:
                found[name] = round(b - a, 3)
        return found

    def render(self) -> str:
        """A readable timeline: each milestone's time, offset from the first, and the step before it."""
        if not self.marks:
            return f"job {self.job_id}: no trace lines found"
        first = min(m.at for m in self.marks)
        rows = [f"job {self.job_id}" + (f" on {', '.join(self.instance_ids)}" if self.instance_ids else "")]
        previous: float | None = None
        for mark in self.marks:
            step = "" if previous is None else f"  (+{mark.at - previous:.3f} s)"
            rows.append(f"  {iso(mark.at)}  {mark.at - first:9.3f} s  {mark.milestone}{step}")
            previous = mark.at
        if self.missing:
            rows.append(f"  missing: {', '.join(self.missing)}")
        return "\n".join(rows)


def parse(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The trace lines among any log lines (others, and lines that are not JSON, are skipped)."""
    found = []
    for text in lines:
        text = text.strip()
        if not text.startswith("{"):
            continue
        try:
            line = json.loads(text)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("trace") in MILESTONES and isinstance(line.get("at"), str):
            found.append(line)
    return found


def timeline(lines: Iterable[Mapping[str, Any]], job_id: int) -> Timeline:
    """Job ``job_id``'s timeline: its own lines, and the lines of the instances it was launched on."""
    lines = list(lines)
    mine = [line for line in lines if line.get("job_id") == job_id]
    instances = tuple(
        sorted({str(line["instance_id"]) for line in mine if line["trace"] == "launched" and "instance_id" in line})
    )
    mine += [line for line in lines if "job_id" not in line and line.get("instance_id") in instances]
    first: dict[str, Mark] = {}
    for line in mine:
        try:
            at = epoch(line["at"])
        except ValueError:
            continue
        if line["trace"] not in first or at < first[line["trace"]].at:
            first[line["trace"]] = Mark(line["trace"], at, line)
    marks = tuple(first[m] for m in MILESTONES if m in first)
    return Timeline(job_id, instances, marks)
