"""Receiving GitHub's ``workflow_job`` webhook: verify, parse, match a pool, enqueue.

Nothing in the body is looked at before the signature checks out. Bodies come as JSON (App webhooks)
or form-encoded ``payload=<JSON>`` (the default of organization and repository webhooks); the
signature covers the raw body either way. Every job of a pool leaves trace lines (trace.py): created,
received and enqueued when queued, started when in_progress, finished when completed. Answers:
401 bad or missing signature; 400 malformed body or missing field (named); 202 enqueued; 200 a
started or finished job traced, or understood and ignored (other events and actions, labels of no
pool, a job created longer ago than ``max_age_s``: a replayed delivery); 503 the queue refused, so
the delivery shows as failed in GitHub and can be redelivered. GitHub does not retry by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs

from . import trace
from .pools import Pool, match_pool


@dataclass(frozen=True)
class Response:
    status: int
    message: str


@dataclass(frozen=True)
class JobMessage:
    """What the queue carries for one queued job: compact, no secrets."""

    job_id: int
    run_id: int
    repository: str  # owner/name
    owner: str
    repo: str
    installation_id: int | None
    labels: tuple[str, ...]
    delivery_id: str
    pool: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> JobMessage:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("job message is not an object")
        data["labels"] = tuple(data.get("labels", ()))
        return cls(**data)


def signature_is_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """X-Hub-Signature-256 is ``sha256=`` + hex HMAC-SHA256 of the raw body; compared in constant time."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def receive(
    headers: Mapping[str, str],
    body: bytes,
    *,
    secret: bytes,
    pools: Sequence[Pool],
    enqueue: Callable[[JobMessage], None],
    max_age_s: int | None = None,
    now: Callable[[], float] = time.time,
) -> Response:
    received = now()
    h = {k.lower(): v for k, v in headers.items()}
    if not signature_is_valid(secret, body, h.get("x-hub-signature-256")):
        return Response(401, "invalid or missing X-Hub-Signature-256")
    event = h.get("x-github-event", "")
    if event == "ping":
        return Response(200, "pong")
    if event != "workflow_job":
        return Response(200, f"ignored event {event or '(none)'}")
    try:
        payload = _payload(body, h.get("content-type", ""))
    except ValueError as err:
        return Response(400, str(err))
    try:
        action = _field(payload, "action", str)
        job = _field(payload, "workflow_job", dict)
        # GitHub's workflow_job actions: queued, waiting (held by an environment's protection rule),
        # in_progress, completed. A waiting job is delivered again as queued once approved, and a re-run
        # job is a new job with its own queued delivery (GitHub Docs, "Webhook events and payloads":
        # workflow_job), so only queued launches anything; in_progress and completed are traced.
        if action not in ("queued", "in_progress", "completed"):
            return Response(
                200, f"ignored action {action}" + (": launched once approved and queued" if action == "waiting" else "")
            )
        if action == "queued" and max_age_s is not None:
            created = _timestamp(_field(job, "created_at", str, "workflow_job.created_at"), "workflow_job.created_at")
            if received - created > max_age_s:
                return Response(
                    200, f"ignored: job created {received - created:.0f} s ago, over {max_age_s} s (a replay?)"
                )
        if action != "queued" and max_age_s is not None:  # a replay would only skew the trace's metrics
            key = "started_at" if action == "in_progress" else "completed_at"
            at = _optional_time(job, key)
            if at is not None and received - at > max_age_s:
                return Response(200, f"ignored: job {action} {received - at:.0f} s ago, over {max_age_s} s (a replay?)")
        labels = _field(job, "labels", list, "workflow_job.labels")
        if not all(isinstance(label, str) for label in labels):
            raise _Missing("workflow_job.labels must be strings")
        repository = _field(payload, "repository", dict)
        installation = payload.get("installation")
        message = JobMessage(
            job_id=_field(job, "id", int, "workflow_job.id"),
            run_id=_field(job, "run_id", int, "workflow_job.run_id"),
            repository=_field(repository, "full_name", str, "repository.full_name"),
            owner=_field(_field(repository, "owner", dict, "repository.owner"), "login", str, "repository.owner.login"),
            repo=_field(repository, "name", str, "repository.name"),
            installation_id=_field(installation, "id", int, "installation.id")
            if isinstance(installation, dict)
            else None,
            labels=tuple(labels),
            delivery_id=h.get("x-github-delivery", ""),
            pool="",
        )
    except _Missing as err:
        return Response(400, str(err))
    if not message.delivery_id:
        return Response(400, "missing X-GitHub-Delivery")
    pool = match_pool(message.labels, pools)
    if pool is None:
        return Response(200, f"labels {list(message.labels)} match no pool of this fleet")
    try:
        if action != "queued":
            return _trace_progress(pool.name, message.job_id, action, job)
        created = _timestamp(_field(job, "created_at", str, "workflow_job.created_at"), "workflow_job.created_at")
    except _Missing as err:
        return Response(400, str(err))
    try:
        enqueue(JobMessage(**{**asdict(message), "labels": message.labels, "pool": pool.name}))
    except Exception as err:  # the queue's own error; the delivery can be redelivered from GitHub
        return Response(503, f"could not enqueue: {type(err).__name__}")
    trace.record(pool.name, "created", created, job_id=message.job_id)
    trace.record(pool.name, "received", received, job_id=message.job_id, known={"created": created})
    trace.record(pool.name, "enqueued", now(), job_id=message.job_id)
    return Response(202, f"queued job {message.job_id} for pool {pool.name}")


def _trace_progress(fleet: str, job_id: int, action: str, job: dict[str, Any]) -> Response:
    """A pool's job started or finished: GitHub's own times, and the interval since the previous one.
    Older deliveries lack some times (GitHub's examples have in_progress without created_at): what is
    there is traced, and a delivery is never refused for it."""
    created, started, completed = (_optional_time(job, key) for key in ("created_at", "started_at", "completed_at"))
    milestone, at, key = (
        ("started", started, "started_at") if action == "in_progress" else ("finished", completed, "completed_at")
    )
    if at is None:
        return Response(200, f"job {job_id} {action}: not traced (no workflow_job.{key})")
    known = {"created": created} if milestone == "started" else {"started": started}
    conclusion = job.get("conclusion")
    fields = {"conclusion": conclusion} if milestone == "finished" and conclusion in trace.JOB_CONCLUSIONS else {}
    trace.record(fleet, milestone, at, job_id=job_id, known={k: v for k, v in known.items() if v is not None}, **fields)
    return Response(200, f"job {job_id} {milestone}: traced")


def _optional_time(job: dict[str, Any], key: str) -> float | None:
    try:
        return trace.epoch(job[key]) if isinstance(job.get(key), str) else None
    except ValueError:
        return None


class _Missing(ValueError):
    pass


def _payload(body: bytes, content_type: str) -> Any:
    try:
        if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
            if len(form.get("payload", [])) != 1:
                raise ValueError("form-encoded body without one payload field")
            return json.loads(form["payload"][0])
        return json.loads(body)
    except UnicodeDecodeError:
        raise ValueError("body is not UTF-8") from None
    except json.JSONDecodeError:
        raise ValueError("body is not JSON") from None


def _timestamp(text: str, name: str) -> float:
    try:
        return trace.epoch(text)
    except ValueError:
        raise _Missing(f"missing or malformed field {name}") from None


def _field(obj: Any, key: str, kind: type, name: str | None = None) -> Any:
    value = obj.get(key) if isinstance(obj, dict) else None
    # bool is an int subclass; an id of `true` is not an id.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Missing(f"missing or malformed field {name or key}")
    return value
