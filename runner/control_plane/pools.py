"""Which pool of runners a job's ``runs-on`` labels select.

The rule (documented in the README): a job matches a pool when
  1. its labels include the pool's distinguishing label (``vpc`` by default), and
  2. every one of its labels is one the pool's runners carry,
comparing case-insensitively, as GitHub does. Rule 1 is what keeps a job from "stealing" a runner
meant for another pool: with plain subset matching, ``runs-on: [self-hosted, linux]`` would match
every pool, and a runner launched for it could be taken by any of them. Rule 2 is GitHub's own:
a runner only takes jobs whose every label it has, so launching for a job it cannot take is waste.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Pool:
    name: str
    labels: tuple[str, ...]  # what the runners are registered with, e.g. self-hosted, linux, x64, vpc
    key_label: str  # the label a job must name to get this pool's runners

    def __post_init__(self) -> None:
        if self.key_label.lower() not in {label.lower() for label in self.labels}:
            raise ValueError(f"pool {self.name}: its key label {self.key_label!r} must be one of its labels")


def match_pool(job_labels: Iterable[str], pools: Sequence[Pool]) -> Pool | None:
    wanted = {label.strip().lower() for label in job_labels}
    for pool in pools:
        offered = {label.lower() for label in pool.labels}
        if pool.key_label.lower() in wanted and wanted <= offered:
            return pool
    return None
