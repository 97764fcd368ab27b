"""Cleaning up from both sides, on a schedule.

EC2 side, for each live instance of this fleet:
  - older than ``max_lifetime_s``: terminated, busy or not (a hard cap on what one job can hold);
  - its runner busy: kept;
  - older than ``boot_timeout_s`` with no runner online: kept only while GitHub reports its job
    *failed* and ended less than ``hold_ceiling_s`` ago (the job asked to be held for debugging with
    ``--hold-on-failure``; the instance itself decides whether to wait, the reaper only bounds it);
    otherwise terminated (its runner never came online, or its job is over);
  - online but idle for longer than ``idle_timeout_s`` since launch (its job went to another
    runner or was cancelled): terminated.
GitHub side: registrations named like this fleet's runners (its own prefix: another stack's are never
touched) whose instance is not live are deleted, at the organization or, with repository-level runners,
at each repository (``/repos/{owner}/{repo}/actions/runners``, where GitHub keeps them).
SSM side: JIT parameters whose instance is not live are deleted. They are listed *before* the instances
are, so a parameter written for an instance launched in between is never taken for a leftover.
If GitHub cannot be read, nothing is terminated: without it, a busy runner cannot be told apart.
Instances reaped because their runner never came online are counted (metric ``BootTimeouts``).

EC2's "instance terminated" events (EventBridge) come here too: ``instance_gone`` writes the job
trace's last milestone for an instance of this fleet.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from . import metrics, trace
from .config import TAG_INSTALLATION_ID, TAG_JOB_ID, TAG_REPOSITORY, Config
from .errors import GitHubError
from .fleet import Fleet, Instance
from .github import GitHubClient, Runner
from .scale_up import JitStore

log = logging.getLogger(__name__)
BOOT_TIMEOUT = "within the boot timeout"


@dataclass
class ReapReport:
    terminated: dict[str, str] = field(default_factory=dict)  # instance id -> reason
    kept: dict[str, str] = field(default_factory=dict)
    runners_deleted: list[str] = field(default_factory=list)
    runners_left: list[str] = field(default_factory=list)  # no instance, but GitHub still shows them busy
    parameters_deleted: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Reaper:
    config: Config
    fleet: Fleet
    github: GitHubClient
    jit: JitStore
    clock: Callable[[], float] = time.time

    def run(self, *, drain: bool = False, force: bool = False) -> ReapReport:
        """One pass. ``drain`` (before a teardown): every instance goes as soon as its runner is not busy
        (``force``: busy or not), with its registration and config; scale-up is stopped separately."""
        report = ReapReport()
        parameters = self.jit.names()  # before the instances: see the module docstring
        instances = self.fleet.live()
        try:
            runners = [r for r in self._runners(instances) if self.config.instance_of_runner(r.name)]
        except GitHubError as err:
            report.error = f"GitHub unavailable, nothing reaped: {err}"
            log.error(report.error)
            return report
        by_name = {r.name: r for r in runners}
        now = self.clock()
        for instance in instances:
            runner = by_name.get(self.config.runner_name(instance.id))
            if drain:
                busy = runner is not None and runner.busy and not force
                verdict = "keep: runner busy (draining: goes when its job ends)" if busy else "draining the fleet"
            else:
                verdict = self._verdict(instance, runner, now)
            if verdict.startswith("keep"):
                report.kept[instance.id] = verdict
            else:
                report.terminated[instance.id] = verdict
        self.fleet.terminate(sorted(report.terminated))
        alive = {i.id for i in instances} - set(report.terminated)

        for runner in runners:
            instance_id = self.config.instance_of_runner(runner.name)
            if instance_id not in alive and runner.busy:
                # GitHub refuses to delete a runner it still shows running a job (422): a later pass does,
                # once GitHub has failed the job of an instance that is gone.
                report.runners_left.append(runner.name)
            elif instance_id not in alive:
                try:
                    self.github.delete_runner(runner.id, repository=runner.repository)
                    report.runners_deleted.append(runner.name)
                except GitHubError as err:
                    log.warning("could not delete runner %s: %s", runner.name, err)
        for name in parameters:
            instance_id = name.rsplit("/", 1)[-1]
            if instance_id not in alive:
                self.jit.delete(instance_id)
                report.parameters_deleted.append(name)
        for instance_id, reason in report.terminated.items():
            log.info("terminated %s: %s", instance_id, reason)
            if BOOT_TIMEOUT in reason:
                metrics.emit(self.config.fleet, "BootTimeouts", instance_id=instance_id)
        return report

    def _runners(self, instances: list[Instance]) -> list[Runner]:
        """This fleet's registrations: the organization's, or with repository-level runners, those of each
        allowed repository and of each live instance's repository (GitHub lists them per repository)."""
        if self.config.runner_scope != "repo":
            return self.github.list_runners()
        policy = self.config.admission
        repositories = {i.tags[TAG_REPOSITORY] for i in instances if i.tags.get(TAG_REPOSITORY)}
        if policy is not None and policy.repositories != ("*",):
            repositories |= set(policy.repositories)
        return [r for repository in sorted(repositories) for r in self.github.list_runners(repository=repository)]

    def _verdict(self, instance: Instance, runner: Runner | None, now: float) -> str:
        age = now - instance.launch_time.timestamp()
        if age > self.config.max_lifetime_s:
            return f"older than the maximum lifetime ({self.config.max_lifetime_s} s)"
        if runner is not None and runner.busy:
            return "keep: runner busy"
        if age > self.config.boot_timeout_s and (runner is None or runner.status != "online"):
            held = self._held_after_failure(instance, now)
            if held:
                return held
            if runner is None:  # an ephemeral runner's registration ends with its job: most often, done
                return f"its runner's registration is gone (its job is over) past {self.config.boot_timeout_s} s"
            return f"its runner never came online {BOOT_TIMEOUT} ({self.config.boot_timeout_s} s)"
        if runner is not None and age > self.config.idle_timeout_s:
            return f"runner idle since launch for over {self.config.idle_timeout_s} s (its job went elsewhere)"
        return "keep: starting or working"

    def _held_after_failure(self, instance: Instance, now: float) -> str | None:
        """ "keep: ..." while GitHub says this instance's job failed less than the hold ceiling ago."""
        job_id, repository = instance.tags.get(TAG_JOB_ID, ""), instance.tags.get(TAG_REPOSITORY, "")
        installation = instance.tags.get(TAG_INSTALLATION_ID, "")
        if not job_id.isdigit() or repository.count("/") != 1 or self.config.hold_ceiling_s <= 0:
            return None
        owner, repo = repository.split("/")
        try:
            job = self.github.get_job(owner, repo, int(job_id), int(installation) if installation.isdigit() else None)
        except GitHubError as err:
            return f"keep: cannot read job {job_id} from GitHub ({err}); decided next time"
        if not job or job.get("status") != "completed" or job.get("conclusion") != "failure":
            return None
        try:
            ended = datetime.fromisoformat(str(job.get("completed_at")).replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
        until = ended + self.config.hold_ceiling_s
        if now < until:
            return f"keep: job {job_id} failed; held for debugging for {until - now:.0f} s more at most"
        return None


def instance_gone(config: Config, fleet: Fleet, instance_id: str, at: float) -> bool:
    """Trace an instance's end (EC2 reported it terminated at ``at``); False if not this fleet's."""
    if not trace.INSTANCE_ID.match(instance_id):
        return False
    instance = fleet.find(instance_id)
    if instance is None:
        return False
    job_id = instance.tags.get(TAG_JOB_ID, "")
    trace.record(
        config.fleet,
        "instance_gone",
        at,
        job_id=int(job_id) if job_id.isdigit() else None,
        instance_id=instance_id,
        known={"launched": instance.launch_time.timestamp()},
    )
    return True
