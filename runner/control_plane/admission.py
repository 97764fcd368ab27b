"""Who may get a runner: the admission policy scale-up applies before anything is launched.

GitHub itself enforces at job assignment only the runner group's settings (selected repositories,
public repositories, selected workflows). Everything else is decided here, from what GitHub reports,
never from the webhook body alone (a delivery is signed, but a pull request can edit the workflow
that produced it):

- the repository's owner is the stack's ``github.owner``;
- the repository is on the stack's allow-list (``github.repositories``: full names, or ``["*"]`` for
  every repository of the owner, written out on purpose);
- the run is not a pull request from another repository (a fork): the run's head repository must be
  the repository itself (``GET /repos/{owner}/{repo}/actions/runs/{run_id}``);
- optionally, the run's event and head branch are among ``github.events`` / ``github.branches``
  (fnmatch patterns such as ``release/*``).

A refusal names its reason; scale-up logs it, counts it (metric ``JobRefused``) and drops the job.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .webhook import JobMessage


@dataclass(frozen=True)
class AdmissionPolicy:
    owner: str
    repositories: tuple[str, ...]  # "owner/name" (case-insensitive), or ("*",)
    events: tuple[str, ...] = ()  # empty: any event
    branches: tuple[str, ...] = ()  # empty: any branch

    def before_lookup(self, job: JobMessage) -> str | None:
        """The checks the queued message alone answers: the reason to refuse, or None."""
        if job.owner.lower() != self.owner.lower() or job.repository.split("/")[0].lower() != self.owner.lower():
            return f"repository {job.repository} is not owned by {self.owner}"
        if self.repositories != ("*",) and job.repository.lower() not in {r.lower() for r in self.repositories}:
            return f"repository {job.repository} is not on the allow-list (github.repositories)"
        return None

    def after_lookup(self, job: JobMessage, run: dict[str, Any] | None) -> str | None:
        """The checks GitHub's view of the run answers."""
        if run is None:
            return f"run {job.run_id} of {job.repository} not found"
        head = (run.get("head_repository") or {}).get("full_name")
        base = (run.get("repository") or {}).get("full_name") or job.repository
        if not isinstance(head, str) or head.lower() != str(base).lower():
            return f"run {job.run_id} comes from another repository ({head or 'unknown'}): a fork's pull request"
        event, branch = str(run.get("event", "")), str(run.get("head_branch") or "")
        if self.events and event not in self.events:
            return f"event {event!r} is not allowed (github.events: {', '.join(self.events)})"
        if self.branches and not _matches(branch, self.branches):
            return f"branch {branch!r} is not allowed (github.branches: {', '.join(self.branches)})"
        return None


def _matches(branch: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(branch, pattern) for pattern in patterns)
