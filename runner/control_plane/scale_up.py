"""One queued job -> one fresh instance running one just-in-time runner.

Per job message:
  1. at ``max_runners`` live instances (counted once per invocation, plus the ones it launched,
     which DescribeInstances may not show yet) -> back to the queue for later;
  2. an instance already tagged with this job id -> duplicate delivery, done;
  3. the admission policy (admission.py) refuses it -> logged, counted, dropped; GitHub says the
     job is no longer queued (or gone) -> nothing to do;
  4. launch (CreateFleet); capacity or throttling -> back to the queue;
  5. create the JIT runner, store its config as an SSM SecureString only that instance may read,
     tag the instance with the runner; if any of this fails the instance is terminated (and the
     runner deleted) and the message retried.
The stack gives the scale-up Lambda a reserved concurrency of 1, so batches never race on the cap.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import metrics, trace
from .config import TAG_JOB_ID, TAG_PARAMETER_INSTANCE, TAG_RUNNER_ID, TAG_RUNNER_NAME, Config
from .errors import ControlPlaneError, GitHubError, LaunchRefused, RetryLater
from .fleet import Fleet
from .github import GitHubClient, Runner
from .webhook import JobMessage

log = logging.getLogger(__name__)


@dataclass
class Launch:
    job_id: int
    outcome: str  # launched | duplicate | not-queued | refused
    instance_id: str | None = None
    runner_name: str | None = None
    reason: str = ""


class JitStore:
    """The encoded JIT config, as an SSM SecureString tagged with its instance's id."""

    def __init__(self, ssm: Any, config: Config) -> None:
        self.ssm = ssm
        self.config = config
        self.calls = 0

    def put(self, instance_id: str, encoded: str) -> None:
        self.calls += 1
        extra = {"KeyId": self.config.jit_kms_key_id} if self.config.jit_kms_key_id else {}
        self.ssm.put_parameter(
            Name=self.config.jit_parameter(instance_id),
            Value=encoded,
            Type="SecureString",
            # Encoded JIT configs have been seen near the Standard tier's 4 KB; Advanced holds 8 KB.
            Tier="Advanced",
            Tags=[{"Key": TAG_PARAMETER_INSTANCE, "Value": instance_id}],
            **extra,
        )

    def exists(self, instance_id: str) -> bool:
        """Whether the config is stored (read without decryption: scale-up may not decrypt it)."""
        self.calls += 1
        try:
            self.ssm.get_parameter(Name=self.config.jit_parameter(instance_id), WithDecryption=False)
        except self.ssm.exceptions.ParameterNotFound:
            return False
        return True

    def delete(self, instance_id: str) -> None:
        self.calls += 1
        with contextlib.suppress(self.ssm.exceptions.ParameterNotFound):
            self.ssm.delete_parameter(Name=self.config.jit_parameter(instance_id))

    def names(self) -> list[str]:
        names = []
        for page in self.ssm.get_paginator("get_parameters_by_path").paginate(Path=self.config.jit_parameter_prefix):
            self.calls += 1
            names += [p["Name"] for p in page["Parameters"]]
        return names


@dataclass
class ScaleUp:
    config: Config
    fleet: Fleet
    github: GitHubClient
    jit: JitStore
    launched: set[str] = field(default_factory=set)  # instance ids launched by this invocation
    clock: Callable[[], float] = time.time
    _live: dict[str, str] | None = None  # live instance id -> its job id, when this invocation first looked

    def handle(self, job: JobMessage, *, enqueued_at: float | None = None) -> Launch:
        """``enqueued_at``: when SQS took the message (its SentTimestamp), for the trace's queue wait."""
        picked = self.clock()
        # Capacity first: a burst's waiting jobs then cost no API call at all. The count is read once
        # per invocation and can only over-count (instances only go away), so the cap holds. A job whose
        # instance is among them (a redelivery) is looked at even at the cap: it may need finishing.
        if self._live is None:
            self._live = {i.id: i.tags.get(TAG_JOB_ID, "") for i in self.fleet.live()}
        at_cap = len(set(self._live) | self.launched) >= self.config.max_runners
        if at_cap and str(job.job_id) not in self._live.values():
            raise RetryLater(f"at maxRunners ({self.config.max_runners} live)", delay_s=30)
        if existing := self.fleet.for_job(job.job_id):
            if existing.tags.get(TAG_RUNNER_NAME):
                return Launch(job.job_id, "duplicate", existing.id)
            runner = self._registered(existing.id, job)
            if runner is not None and self._resume(existing.id, runner, job):
                return Launch(job.job_id, "duplicate", existing.id)
            # An invocation died between CreateFleet and the end of the setup, before the config was
            # stored: nothing can run on that instance. It goes; the job gets a fresh one below.
            self._undo(existing.id, runner.id if runner else None, job)
            log.warning("job %s: instance %s was left half set up; terminated, launching anew", job.job_id, existing.id)
        if (policy := self.config.admission) is None:
            return self._refuse(job, "no repository allow-list configured (ALLOWED_REPOSITORIES)")
        if reason := policy.before_lookup(job):
            return self._refuse(job, reason)
        state = self.github.get_job(job.owner, job.repo, job.job_id, job.installation_id)
        if state is None or state.get("status") != "queued":
            return Launch(job.job_id, "not-queued")
        if reason := policy.after_lookup(
            job, self.github.get_run(job.owner, job.repo, job.run_id, job.installation_id)
        ):
            return self._refuse(job, reason)
        if at_cap:  # its half-set-up instance went above: wait for capacity like any other job
            raise RetryLater(f"at maxRunners ({self.config.max_runners} live)", delay_s=30)
        fleet = self.config.fleet
        trace.record(fleet, "picked", picked, job_id=job.job_id, known={"enqueued": enqueued_at} if enqueued_at else {})
        instance_id = self.fleet.launch(job)
        launched = self.clock()
        trace.record(fleet, "launched", launched, job_id=job.job_id, instance_id=instance_id, known={"picked": picked})
        self.launched.add(instance_id)
        name = self.config.runner_name(instance_id)
        runner_id = None
        try:
            jit = self.github.generate_jitconfig(
                name=name,
                runner_group_id=self.config.runner_group_id,
                labels=self._labels(job),
                installation_id=job.installation_id,
                repository=self._repository(job),
            )
            runner_id = jit.runner_id
            self.jit.put(instance_id, jit.encoded)
            self.fleet.tag(instance_id, {TAG_RUNNER_NAME: name, TAG_RUNNER_ID: str(jit.runner_id)})
        except Exception as err:
            self._undo(instance_id, runner_id, job)
            if isinstance(err, RetryLater):
                err.cause = err.cause or "setup"
                raise
            raise RetryLater(
                f"runner setup failed for {instance_id}, instance terminated: {err}", cause="setup"
            ) from err
        trace.record(
            fleet, "registered", self.clock(), job_id=job.job_id, instance_id=instance_id, known={"launched": launched}
        )
        return Launch(job.job_id, "launched", instance_id, name)

    def _repository(self, job: JobMessage) -> str | None:
        return job.repository if self.config.runner_scope == "repo" else None

    def _registered(self, instance_id: str, job: JobMessage) -> Runner | None:
        """The runner registered for this instance, if GitHub has one."""
        name = self.config.runner_name(instance_id)
        runners = self.github.list_runners(job.installation_id, repository=self._repository(job))
        return next((r for r in runners if r.name == name), None)

    def _resume(self, instance_id: str, runner: Runner, job: JobMessage) -> bool:
        """Finish a setup an earlier invocation began: True when the instance has (or had) its config.

        The config was stored (the last step before tagging) when its parameter exists, or when the
        instance already took it and its runner came online; then only the tags are missing.
        """
        if not (self.jit.exists(instance_id) or runner.status == "online" or runner.busy):
            return False
        self.fleet.tag(instance_id, {TAG_RUNNER_NAME: runner.name, TAG_RUNNER_ID: str(runner.id)})
        log.info("job %s: finished the setup of %s begun by an earlier invocation", job.job_id, instance_id)
        return True

    def _refuse(self, job: JobMessage, reason: str) -> Launch:
        log.warning("job %s of %s refused: %s", job.job_id, job.repository, reason)
        metrics.emit(self.config.fleet, "JobRefused", detail=reason, repository=job.repository)
        return Launch(job.job_id, "refused", reason=reason)

    def _labels(self, job: JobMessage) -> tuple[str, ...]:
        pool = next(p for p in self.config.pools if p.name == job.pool)
        return pool.labels

    def _undo(self, instance_id: str, runner_id: int | None, job: JobMessage) -> None:
        self.fleet.terminate([instance_id])
        self.launched.discard(instance_id)
        self.jit.delete(instance_id)
        if runner_id is not None:
            try:
                self.github.delete_runner(runner_id, job.installation_id, repository=self._repository(job))
            except GitHubError:
                log.warning("runner %s left registered; the reaper removes it", runner_id)


def process_batch(
    records: list[dict[str, Any]],
    scale_up: ScaleUp,
    requeue: Callable[[str, int], None],
    dead_letter: Callable[[str, str], None],
) -> dict[str, list[dict[str, str]]]:
    """SQS partial batch response: the ids of records to retry. A capacity wait extends the
    message's visibility (``requeue``) so it is not retried at once and again and again. A launch
    EC2 refuses for good goes to the dead-letter queue at once with its reason (``dead_letter``),
    logged as an error and counted, instead of 100 silent retries."""
    failures = []
    for record in records:
        message_id = record["messageId"]
        try:
            job = JobMessage.from_json(record["body"])
        except (ValueError, TypeError) as err:
            # Our own queue should never hold this: retrying sends it to the dead-letter queue.
            log.error("malformed job message %s: %s", message_id, err)
            failures.append({"itemIdentifier": message_id})
            continue
        try:
            result = scale_up.handle(job, enqueued_at=_sent_at(record))
            log.info("job %s: %s %s", job.job_id, result.outcome, result.instance_id or "")
        except LaunchRefused as err:
            log.error("job %s: %s", job.job_id, err)
            metrics.emit(scale_up.config.fleet, "LaunchFailures", reason="refused", detail=str(err))
            try:
                dead_letter(record["body"], str(err))
            except Exception:
                log.exception("job %s: could not move it to the dead-letter queue; retrying it", job.job_id)
                failures.append({"itemIdentifier": message_id})
        except RetryLater as err:
            log.warning("job %s: retry later: %s", job.job_id, err)
            if err.cause:
                metrics.emit(scale_up.config.fleet, "LaunchFailures", reason=err.cause, detail=str(err))
            if err.delay_s and record.get("receiptHandle"):
                requeue(record["receiptHandle"], err.delay_s)
            failures.append({"itemIdentifier": message_id})
        except ControlPlaneError as err:
            log.error("job %s: %s", job.job_id, err)
            failures.append({"itemIdentifier": message_id})
        except Exception:  # an AWS error, say: retry this record only, not the whole batch
            log.exception("job %s: unexpected error", job.job_id)
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def _sent_at(record: dict[str, Any]) -> float | None:
    """SQS's SentTimestamp (epoch milliseconds, a string) of a Lambda SQS record, in seconds."""
    sent = record.get("attributes", {}).get("SentTimestamp")
    return int(sent) / 1000 if isinstance(sent, str) and sent.isdigit() else None
