"""Exit codes and the one exception root of vpc-migrate.

Everything below the CLI raises a ``MigrateError`` subclass; only ``cli.main`` catches them
and turns them into a message and an exit code, so a newcomer finds every exit code here.
"""

from __future__ import annotations

import enum
import signal


class ExitCode(enum.IntEnum):
    OK = 0
    MIGRATION_FAILED = 1
    BAD_INPUT = 2
    CONNECTION_FAILED = 3
    LOCK_NOT_OBTAINED = 4
    DRIFT = 5
    INTERRUPTED = 128 + signal.SIGINT  # 130
    TERMINATED = 128 + signal.SIGTERM  # 143


class MigrateError(Exception):
    """Root of every error vpc-migrate reports to the user."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class BadInput(MigrateError):
    """Bad usage, configuration or migration file; raised before the database is touched."""

    exit_code = ExitCode.BAD_INPUT


class ConnectionFailed(MigrateError):
    """The database could not be reached, trusted or authenticated against."""

    exit_code = ExitCode.CONNECTION_FAILED


class LockNotObtained(MigrateError):
    """The migration lock, or a table lock a migration needs, was not obtained in time."""

    exit_code = ExitCode.LOCK_NOT_OBTAINED


class DriftDetected(MigrateError):
    """History and files disagree, or a failed migration waits for ``repair``."""

    exit_code = ExitCode.DRIFT


class MigrationFailed(MigrateError):
    """A migration raised an error; its own changes were rolled back where possible."""

    exit_code = ExitCode.MIGRATION_FAILED

    def __init__(self, message: str, *, path: str, line: int | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.path = path
        self.line = line


class Interrupted(KeyboardInterrupt):
    """Raised from the SIGINT/SIGTERM handler.

    A KeyboardInterrupt subclass on purpose: psycopg reacts to KeyboardInterrupt during a query by
    cancelling it on the server before re-raising, which is exactly what a stop request needs.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
