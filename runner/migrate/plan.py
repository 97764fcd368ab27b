"""Compare migration files with the history table: each version's state, drift, and what is pending."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .files import Migration, Version
from .history import Record


class State(enum.StrEnum):
    APPLIED = "applied"
    PENDING = "pending"  # never applied, or a Flyway repeatable changed since it last ran (it runs again)
    CHANGED = "changed"  # applied, but the file's checksum differs from the recorded one
    MISSING = "missing"  # applied, but the file is gone
    FAILED = "failed"  # a non-transactional migration failed or was interrupted: needs repair


@dataclass(frozen=True)
class Entry:
    version: Version
    name: str
    state: State
    migration: Migration | None
    record: Record | None
    out_of_order: bool = False  # pending, yet older than the newest applied version

    @property
    def version_text(self) -> str:
        if self.migration:
            return self.migration.version_text
        return "R" if self.version.repeatable else self.version.key

    @property
    def label(self) -> str:
        if self.migration:
            return self.migration.filename
        return f"{self.version.key if self.version.repeatable else f'{self.version}_{self.name}'} (file missing)"

    @property
    def again(self) -> bool:
        """A Flyway repeatable that ran before and changed since: it runs again."""
        return self.state == State.PENDING and self.record is not None

    def as_json(self) -> dict[str, object]:
        rec = self.record
        return {
            "version": self.version_text,
            "key": self.version.key,  # unique: 12, 1.2, R__views
            "name": self.name,
            "state": self.state.value,
            "checksum": self.migration.checksum if self.migration else rec.checksum if rec else None,
            "recorded_checksum": rec.checksum if rec else None,
            "applied_at": rec.finished_at.isoformat()
            if rec and rec.finished_at and self.state != State.FAILED
            else None,
            "duration_ms": rec.duration_ms if rec else None,
            "baseline": bool(rec and rec.state == "baseline"),
            "out_of_order": self.out_of_order,
            "repeatable": self.version.repeatable,
            "runs_again": self.again,
            "file": str(self.migration.path) if self.migration else None,
            "error": rec.error if rec else None,
        }


@dataclass(frozen=True)
class Plan:
    entries: list[Entry]

    @property
    def pending(self) -> list[Entry]:
        return [e for e in self.entries if e.state == State.PENDING]

    @property
    def drift(self) -> list[Entry]:
        return [e for e in self.entries if e.state in (State.CHANGED, State.MISSING, State.FAILED) or e.out_of_order]

    @property
    def applied_version(self) -> Entry | None:
        applied = [
            e
            for e in self.entries
            if e.state in (State.APPLIED, State.CHANGED, State.MISSING) and not e.version.repeatable
        ]
        return applied[-1] if applied else None


def build_plan(migrations: list[Migration], records: dict[Version, Record]) -> Plan:
    newest_applied = max(
        (v for v, r in records.items() if r.state in ("applied", "baseline") and not v.repeatable), default=None
    )
    entries: list[Entry] = []
    files = {m.version: m for m in migrations}
    for version in sorted(files.keys() | records.keys()):
        migration, record = files.get(version), records.get(version)
        name = migration.name if migration else record.name if record else ""
        if record is None:
            state = State.PENDING
        elif record.state in ("running", "failed"):
            state = State.FAILED
        elif migration is None:
            state = State.MISSING
        elif migration.checksum != record.checksum:
            state = State.PENDING if version.repeatable else State.CHANGED  # Flyway: a changed repeatable reruns
        else:
            state = State.APPLIED
        out_of_order = (
            state == State.PENDING
            and record is None
            and not version.repeatable
            and newest_applied is not None
            and version < newest_applied
        )
        entries.append(Entry(version, name, state, migration, record, out_of_order))
    return Plan(entries)


def describe_drift(entries: list[Entry]) -> str:
    lines = []
    for e in entries:
        if e.state == State.CHANGED:
            lines.append(f"{e.label}: changed since it was applied (checksum differs)")
        elif e.state == State.MISSING:
            lines.append(f"{e.label}: applied, but the file is gone")
        elif e.state == State.FAILED:
            why = f": {e.record.error.splitlines()[0]}" if e.record and e.record.error else ""
            lines.append(f"{e.label}: failed or was interrupted{why}")
        elif e.out_of_order:
            lines.append(f"{e.label}: pending, but older than the newest applied version")
    return "\n  ".join(lines)
