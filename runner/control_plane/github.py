"""GitHub REST client for the control plane: jobs, just-in-time runners, runner registrations.

Auth is a GitHub App (RS256 JWT signed with PyJWT, exchanged for an installation token that is
cached until five minutes before it expires) or a fine-grained token with the organization
permission "Self-hosted runners: read and write". The base URL may be GitHub Enterprise Server's
``https://HOST/api/v3``. Rate limits are waited out when short and raised as RateLimited (back to the
queue) when long, as GitHub documents them ("Rate limits for the REST API"): a primary limit answers
403/429 with ``x-ratelimit-remaining: 0`` (wait until ``x-ratelimit-reset``); a secondary limit answers
403/429 with ``retry-after`` (wait that long) or without it (wait at least a minute). No wait outlives
the caller: ``remaining_s`` (the Lambda's remaining time) bounds every sleep, so a handler requeues
instead of being killed mid-wait. Lists follow the ``Link`` header's ``rel="next"``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import urllib3

from .errors import GitHubError, RateLimited

API_VERSION = "2022-11-28"
TOKEN_REFRESH_MARGIN_S = 300
SECONDARY_WAIT_S = 60.0  # GitHub: without retry-after, wait at least one minute before retrying
DEADLINE_MARGIN_S = 5.0  # what a handler keeps after a wait, to finish the call and answer
NEXT_LINK = re.compile(r'<([^>]+)>;\s*rel="next"')


@dataclass(frozen=True)
class Runner:
    id: int
    name: str
    status: str  # online | offline
    busy: bool
    labels: tuple[str, ...]
    repository: str | None = None  # owner/name for a repository-level runner


@dataclass(frozen=True)
class JitConfig:
    runner_id: int
    runner_name: str
    encoded: str


class Auth(Protocol):
    def authorization(self, client: GitHubClient, installation_id: int | None) -> str: ...


class TokenAuth:
    """A fine-grained personal access token (or any token) used for every call."""

    def __init__(self, token: str) -> None:
        self._token = token

    def authorization(self, client: GitHubClient, installation_id: int | None) -> str:
        return f"Bearer {self._token}"


class AppAuth:
    """GitHub App: JWT -> installation token, cached per installation."""

    def __init__(self, app_id: str, private_key_pem: str, clock: Callable[[], float] = time.time) -> None:
        self.app_id = app_id
        self._key = private_key_pem
        self._clock = clock
        self._tokens: dict[int, tuple[str, float]] = {}
        self._org_installation: dict[str, int] = {}

    def jwt(self) -> str:
        import jwt

        now = int(self._clock())
        # iat back-dated for clock drift; exp within GitHub's 10-minute maximum.
        return jwt.encode({"iat": now - 60, "exp": now + 540, "iss": self.app_id}, self._key, algorithm="RS256")

    def authorization(self, client: GitHubClient, installation_id: int | None) -> str:
        if installation_id is None:
            installation_id = self.org_installation(client)
        cached = self._tokens.get(installation_id)
        if cached and cached[1] - self._clock() > TOKEN_REFRESH_MARGIN_S:
            return f"Bearer {cached[0]}"
        data = client.call("POST", f"/app/installations/{installation_id}/access_tokens", app_jwt=self.jwt())
        expires = datetime.fromisoformat(data["expires_at"].replace("Z", "+00:00")).timestamp()
        self._tokens[installation_id] = (data["token"], expires)
        return f"Bearer {data['token']}"

    def org_installation(self, client: GitHubClient) -> int:
        """The App's installation on the owner (for the reaper, which has no webhook to say it)."""
        owner = client.owner
        if owner not in self._org_installation:
            data = client.call("GET", f"/orgs/{quote(owner)}/installation", app_jwt=self.jwt())
            self._org_installation[owner] = int(data["id"])
        return self._org_installation[owner]


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        owner: str,
        auth: Auth,
        *,
        max_wait_s: float = 20.0,
        remaining_s: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        http: urllib3.PoolManager | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.owner = owner
        self.auth = auth
        self.max_wait_s = max_wait_s
        self.remaining_s = remaining_s
        self.sleep = sleep
        self.clock = clock
        self.http = http or urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=3.0, read=10.0),
            # urllib3 retries only failed connections; statuses, rate limits included, are decided here.
            retries=urllib3.Retry(
                total=2,
                connect=2,
                read=0,
                status=0,
                redirect=0,
                respect_retry_after_header=False,
                raise_on_status=False,
            ),
        )
        self.calls = 0  # requests sent, for the benchmarks

    # -- endpoints -------------------------------------------------------------------------------
    def get_job(self, owner: str, repo: str, job_id: int, installation_id: int | None) -> dict[str, Any] | None:
        """The job as GitHub reports it now (its status), or None when it is gone."""
        return self._get_or_none(f"/repos/{quote(owner)}/{quote(repo)}/actions/jobs/{job_id}", installation_id)

    def get_run(self, owner: str, repo: str, run_id: int, installation_id: int | None) -> dict[str, Any] | None:
        """The workflow run a job belongs to (its event, head branch and head repository), or None."""
        return self._get_or_none(f"/repos/{quote(owner)}/{quote(repo)}/actions/runs/{run_id}", installation_id)

    def _get_or_none(self, path: str, installation_id: int | None) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.call("GET", path, installation_id=installation_id)
        except GitHubError as err:
            if err.status == 404:
                return None
            raise
        return found

    def generate_jitconfig(
        self,
        *,
        name: str,
        runner_group_id: int,
        labels: tuple[str, ...],
        installation_id: int | None,
        repository: str | None = None,
    ) -> JitConfig:
        """Org-level by default; ``repository`` (owner/name) makes a repository-level runner."""
        base = f"/repos/{repository}" if repository else f"/orgs/{quote(self.owner)}"
        data = self.call(
            "POST",
            f"{base}/actions/runners/generate-jitconfig",
            installation_id=installation_id,
            body={"name": name, "runner_group_id": runner_group_id, "labels": list(labels), "work_folder": "_work"},
        )
        return JitConfig(
            runner_id=int(data["runner"]["id"]), runner_name=data["runner"]["name"], encoded=data["encoded_jit_config"]
        )

    def pages(self, path: str, key: str, installation_id: int | None = None) -> list[dict[str, Any]]:
        """Every item under ``key`` of a paginated list, following the ``Link`` header's rel="next"."""
        items: list[dict[str, Any]] = []
        next_path: str | None = path
        while next_path:
            data, headers = self.request("GET", next_path, installation_id=installation_id)
            items += data.get(key, [])
            found = NEXT_LINK.search(headers.get("link", "") or "")
            next_path = _relative(found[1], self.api_url) if found else None
        return items

    def list_runners(self, installation_id: int | None = None, repository: str | None = None) -> list[Runner]:
        """Org-level runners, or a repository's (``owner/name``): GitHub lists each only at its own level."""
        base = f"/repos/{repository}" if repository else f"/orgs/{quote(self.owner)}"
        return [
            Runner(
                id=int(r["id"]),
                name=r["name"],
                status=r.get("status", "offline"),
                busy=bool(r.get("busy")),
                labels=tuple(lb["name"] for lb in r.get("labels", [])),
                repository=repository,
            )
            for r in self.pages(f"{base}/actions/runners?per_page=100", "runners", installation_id)
        ]

    def delete_runner(self, runner_id: int, installation_id: int | None = None, repository: str | None = None) -> bool:
        """True if deleted, False if it was already gone. ``repository``: a repository-level runner."""
        base = f"/repos/{repository}" if repository else f"/orgs/{quote(self.owner)}"
        try:
            self.call("DELETE", f"{base}/actions/runners/{runner_id}", installation_id=installation_id)
        except GitHubError as err:
            if err.status == 404:
                return False
            raise
        return True

    # -- transport ---------------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        *,
        installation_id: int | None = None,
        body: Any = None,
        app_jwt: str | None = None,
    ) -> Any:
        return self.request(method, path, installation_id=installation_id, body=body, app_jwt=app_jwt)[0]

    def request(
        self,
        method: str,
        path: str,
        *,
        installation_id: int | None = None,
        body: Any = None,
        app_jwt: str | None = None,
    ) -> tuple[Any, Any]:
        """(parsed body, response headers)."""
        auth = f"Bearer {app_jwt}" if app_jwt else self.auth.authorization(self, installation_id)
        headers = {
            "Accept": "application/vnd.github+json",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "vpc-runner-kit",
            "Authorization": auth,
        }
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in range(1, 5):
            self.calls += 1
            try:
                resp = self.http.request(method, self.api_url + path, body=payload, headers=headers)
            except urllib3.exceptions.HTTPError as err:
                raise GitHubError(f"{method} {path}: {type(err).__name__}") from None
            if resp.status in (403, 429):
                wait = self._rate_limit_wait(resp.status, resp.headers, resp.data)
                if wait is not None:
                    self._wait(wait, rate_limited=True)
                    continue
            # Idempotent calls ride out GitHub's occasional 5xx; a POST does not (it could create twice).
            if resp.status >= 500 and method in ("GET", "DELETE") and attempt < 4:
                self._wait(0.5 * 2 ** (attempt - 1), rate_limited=False)
                continue
            if resp.status >= 400:
                raise GitHubError(f"{method} {path}: HTTP {resp.status}: {_message(resp.data)}", status=resp.status)
            return (json.loads(resp.data) if resp.data else None), resp.headers
        raise GitHubError(f"{method} {path}: still failing after retries", status=resp.status)

    def _wait(self, seconds: float, *, rate_limited: bool) -> None:
        """Sleep, unless that would pass ``max_wait_s`` or the caller's remaining time: then requeue."""
        budget = self.max_wait_s
        if self.remaining_s is not None:
            budget = min(budget, self.remaining_s() - DEADLINE_MARGIN_S)
        if seconds > budget:
            if rate_limited:
                raise RateLimited(seconds)
            raise GitHubError(f"GitHub kept failing and the invocation has {max(budget, 0):.0f} s left")
        self.sleep(seconds)

    def _rate_limit_wait(self, status: int, headers: Any, data: bytes) -> float | None:
        retry_after = headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return float(retry_after)
        if headers.get("x-ratelimit-remaining") == "0" and (reset := headers.get("x-ratelimit-reset", "")).isdigit():
            return max(0.0, float(reset) - self.clock()) + 1.0
        # A secondary limit without retry-after: GitHub names it only in the body (there is no code).
        if status == 429 or "secondary rate limit" in _message(data).lower():
            return SECONDARY_WAIT_S
        return None  # a 403 that is not a rate limit: a permission problem


def _relative(url: str, api_url: str) -> str:
    """A Link URL as a path under the API base (GitHub answers with its own absolute URLs)."""
    base = urlsplit(api_url)
    parts = urlsplit(url)
    path = parts.path.removeprefix(base.path.rstrip("/"))
    return path + (f"?{parts.query}" if parts.query else "")


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message", ""))[:200]
    except (ValueError, AttributeError):
        return data[:200].decode("utf-8", "replace")
