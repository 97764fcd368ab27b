"""The control plane's exception root; handlers turn these into HTTP statuses or SQS retries."""

from __future__ import annotations


class ControlPlaneError(Exception):
    """Root of control-plane errors."""


class ConfigError(ControlPlaneError):
    """A setting is missing or malformed; the message names it."""


class RetryLater(ControlPlaneError):
    """Transient: capacity, throttling, a failed JIT step. The job message goes back to the queue."""

    def __init__(self, message: str, *, delay_s: int | None = None, cause: str | None = None) -> None:
        super().__init__(message)
        self.delay_s = delay_s
        self.cause = cause  # a launch that failed: one of metrics.LAUNCH_FAILURE_REASONS


class GitHubError(ControlPlaneError):
    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class RateLimited(GitHubError, RetryLater):
    """GitHub asked us to wait longer than a handler may sleep."""

    def __init__(self, wait_s: float) -> None:
        GitHubError.__init__(self, f"GitHub rate limit: retry in {wait_s:.0f} s", status=429)
        self.delay_s = int(wait_s) + 1


class LaunchRefused(ControlPlaneError):
    """EC2 refused the launch for a reason retrying cannot fix: a denied permission or a bad launch
    template, subnet or image. The job goes to the dead-letter queue with the reason, loudly."""
