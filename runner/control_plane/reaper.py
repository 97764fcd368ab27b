"""Cleaning up from both sides, on a schedule.

EC2 side, for each live instance of this fleet (never one whose runner is busy):
  - held after a failure (tag ``hold-until`` in the future, capped at ``hold_ceiling_s`` after
    launch): kept until then;
  - older than ``max_lifetime_s``: terminated;
  - older than ``boot_timeout_s`` and its runner never came online (or is gone): terminated;
  - online but idle for longer than ``idle_timeout_s`` since launch (its job went to another
    runner or was cancelled): terminated.
GitHub side: registrations named like this fleet's runners whose instance is not live are deleted
(existing kits only look from EC2 and leave offline runners piling up).
SSM side: JIT parameters whose instance is not live are deleted.
If GitHub cannot be read, nothing is terminated: without it, a busy runner cannot be told apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .config import TAG_HOLD_UNTIL, Config
from .errors import GitHubError
from .fleet import Fleet, Instance
from .github import GitHubClient, Runner
from .scale_up import JitStore

log = logging.getLogger(__name__)


@dataclass
class ReapReport:
    terminated: dict[str, str] = field(default_factory=dict)  # instance id -> reason
    kept: dict[str, str] = field(default_factory=dict)
    runners_deleted: list[str] = field(default_factory=list)
    parameters_deleted: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class Reaper:
    config: Config
    fleet: Fleet
    github: GitHubClient
    jit: JitStore
    clock: Callable[[], float] = time.time

    def run(self) -> ReapReport:
        report = ReapReport()
        instances = self.fleet.live()
        try:
            runners = [r for r in self.github.list_runners() if self.config.instance_of_runner(r.name)]
        except GitHubError as err:
            report.error = f"GitHub unavailable, nothing reaped: {err}"
            log.error(report.error)
            return report
        by_name = {r.name: r for r in runners}
        now = self.clock()
        for instance in instances:
            verdict = self._verdict(instance, by_name.get(self.config.runner_name(instance.id)), now)
            if verdict.startswith("keep"):
                report.kept[instance.id] = verdict
            else:
                report.terminated[instance.id] = verdict
        self.fleet.terminate(sorted(report.terminated))
        alive = {i.id for i in instances} - set(report.terminated)

        for runner in runners:
            instance_id = self.config.instance_of_runner(runner.name)
            if instance_id not in alive and not runner.busy:
                try:
                    self.github.delete_runner(runner.id)
                    report.runners_deleted.append(runner.name)
                except GitHubError as err:
                    log.warning("could not delete runner %s: %s", runner.name, err)
        for name in self.jit.names():
            instance_id = name.rsplit("/", 1)[-1]
            if instance_id not in alive:
                self.jit.delete(instance_id)
                report.parameters_deleted.append(name)
        for instance_id, reason in report.terminated.items():
            log.info("terminated %s: %s", instance_id, reason)
        return report

    def _verdict(self, instance: Instance, runner: Runner | None, now: float) -> str:
        age = now - instance.launch_time.timestamp()
        if runner is not None and runner.busy:
            return "keep: runner busy"
        hold = instance.tags.get(TAG_HOLD_UNTIL, "")
        if hold.isdigit():
            until = min(int(hold), instance.launch_time.timestamp() + self.config.hold_ceiling_s)
            if now < until:
                return f"keep: held for debugging for {until - now:.0f} s more"
            return "held for debugging, hold over"
        if age > self.config.max_lifetime_s:
            return f"older than the maximum lifetime ({self.config.max_lifetime_s} s)"
        if age > self.config.boot_timeout_s and (runner is None or runner.status != "online"):
            what = "its runner went away" if runner is None else "its runner never came online"
            return f"{what} within the boot timeout ({self.config.boot_timeout_s} s)"
        if runner is not None and age > self.config.idle_timeout_s:
            return f"runner idle since launch for over {self.config.idle_timeout_s} s (its job went elsewhere)"
        return "keep: starting or working"
