"""A stand-in for the parts of GitHub's REST API the control plane uses, served on loopback.

For the tests and the local harness (never used by the Lambdas). It is held to GitHub's own published
references (tests/control_plane/test_github_fidelity.py validates every answer against the OpenAPI
description of api.github.com in npm ``@octokit/openapi``), and it checks what GitHub checks: the App
JWT's RS256 signature and claims, that every other call carries an installation token it issued (or the
configured personal token), JIT request bodies, duplicate runner names. Tests can queue faults (5xx,
rate limits, 404) for any route, and read every call made.

How it behaves like GitHub:

- Bodies carry every field their OpenAPI schema requires (job, workflow run, installation, installation
  token, runner, runner group, minimal repository), with URLs built on the fake's own base URL.
- ``X-GitHub-Api-Version``: absent means 2022-11-28; any other value than a supported one is a 400.
- Errors carry ``message``, ``documentation_url`` and ``status`` (a string), as GitHub's do. A duplicate
  runner name on generate-jitconfig is 409 (GitHub's "Already exists"), an invalid request body 422, a
  busy runner's deletion 422, an unknown resource or route 404, a missing or bad credential 401.
- Lists (runners, a runner group's repositories) take ``per_page`` (default 30, at most 100) and
  ``page`` and answer a ``Link`` header with ``rel="next"``, ``"last"``, ``"first"``, ``"prev"`` as they
  apply. Like GitHub's, its URLs name the owner by id (``/organizations/{id}/...``,
  ``/repositories/{id}/...``); the fake serves those too.
- Repository-level runners (made by ``POST /repos/{owner}/{repo}/actions/runners/generate-jitconfig``)
  are listed and deleted only at ``/repos/{owner}/{repo}/actions/runners``; organization-level ones
  only at ``/orgs/{org}/actions/runners``. Anywhere else they are 404.
- Every repository of the owner exists; logins and repository names compare case-insensitively.

Rate limits, as GitHub documents them ("Rate limits for the REST API", "Exceeding the rate limit"):

- Every authenticated answer carries ``x-ratelimit-limit``, ``-remaining``, ``-used``, ``-reset``
  (UTC epoch seconds) and ``-resource``. Past ``rate_limit`` calls in the hour, the fake answers the
  primary limit by itself.
- Primary limit (``inject_primary_rate_limit``): 403 or 429 with ``x-ratelimit-remaining: 0``. GitHub:
  do not retry before the time in ``x-ratelimit-reset``.
- Secondary limit (``inject_secondary_rate_limit``): 403 or 429, a message saying "secondary rate
  limit", ``x-ratelimit-remaining`` not 0. With ``retry-after``, GitHub: do not retry before that many
  seconds have passed. Without it, GitHub: wait at least one minute before retrying, and back off
  exponentially if it goes on failing.
- ``inject`` queues any other answer (its 4xx bodies get ``documentation_url`` and ``status`` unless the
  test gave them).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

API_VERSION = "2022-11-28"
SUPPORTED_API_VERSIONS = (API_VERSION,)
DOCS = "https://docs.github.com/rest"
RUNNER_DOCS = f"{DOCS}/actions/self-hosted-runners"
GROUP_DOCS = f"{DOCS}/actions/self-hosted-runner-groups"
RATE_LIMIT_DOCS = f"{DOCS}/using-the-rest-api/rate-limits-for-the-rest-api"
READ_ONLY_LABELS = {"self-hosted", "linux", "windows", "macos", "x64", "arm", "arm64"}

_OWNER, _REPO = r"(?P<owner>[^/]+)", r"(?P<repo>[^/]+)"
_ORG_ID, _REPO_ID = r"/organizations/(?P<owner_id>\d+)", r"/repositories/(?P<repo_id>\d+)"
_ORG, _REPOS = rf"/orgs/{_OWNER}", rf"/repos/{_OWNER}/{_REPO}"
_RUNNER = r"/actions/runners/(?P<runner_id>\d+)"
_GROUP = r"/actions/runner-groups/(?P<group_id>\d+)"
# (method, path, handler, takes the App JWT, documentation URL). ``/organizations/{id}`` and
# ``/repositories/{id}`` are the forms GitHub's Link headers use.
ROUTES: tuple[tuple[str, str, str, bool, str], ...] = (
    ("POST", r"/app/installations/(?P<installation_id>\d+)/access_tokens", "_access_token", True,
     f"{DOCS}/apps/apps#create-an-installation-access-token-for-an-app"),
    ("GET", rf"{_ORG}/installation", "_org_installation", True,
     f"{DOCS}/apps/apps#get-an-organization-installation-for-the-authenticated-app"),
    ("GET", rf"{_REPOS}/actions/jobs/(?P<job_id>\d+)", "_job", False,
     f"{DOCS}/actions/workflow-jobs#get-a-job-for-a-workflow-run"),
    ("GET", rf"{_REPOS}/actions/runs/(?P<run_id>\d+)", "_run", False,
     f"{DOCS}/actions/workflow-runs#get-a-workflow-run"),
    ("POST", rf"{_ORG}/actions/runners/generate-jitconfig", "_jit_route", False,
     f"{RUNNER_DOCS}#create-configuration-for-a-just-in-time-runner-for-an-organization"),
    ("POST", rf"{_REPOS}/actions/runners/generate-jitconfig", "_jit_route", False,
     f"{RUNNER_DOCS}#create-configuration-for-a-just-in-time-runner-for-a-repository"),
    ("GET", rf"{_ORG}/actions/runners", "_list_runners", False,
     f"{RUNNER_DOCS}#list-self-hosted-runners-for-an-organization"),
    ("GET", rf"{_ORG_ID}/actions/runners", "_list_runners", False,
     f"{RUNNER_DOCS}#list-self-hosted-runners-for-an-organization"),
    ("GET", rf"{_REPOS}/actions/runners", "_list_runners", False,
     f"{RUNNER_DOCS}#list-self-hosted-runners-for-a-repository"),
    ("GET", rf"{_REPO_ID}/actions/runners", "_list_runners", False,
     f"{RUNNER_DOCS}#list-self-hosted-runners-for-a-repository"),
    ("GET", rf"{_ORG}{_RUNNER}", "_get_runner", False,
     f"{RUNNER_DOCS}#get-a-self-hosted-runner-for-an-organization"),
    ("GET", rf"{_REPOS}{_RUNNER}", "_get_runner", False,
     f"{RUNNER_DOCS}#get-a-self-hosted-runner-for-a-repository"),
    ("DELETE", rf"{_ORG}{_RUNNER}", "_delete_runner", False,
     f"{RUNNER_DOCS}#delete-a-self-hosted-runner-from-an-organization"),
    ("DELETE", rf"{_REPOS}{_RUNNER}", "_delete_runner", False,
     f"{RUNNER_DOCS}#delete-a-self-hosted-runner-from-a-repository"),
    ("GET", rf"{_ORG}{_GROUP}", "_runner_group", False,
     f"{GROUP_DOCS}#get-a-self-hosted-runner-group-for-an-organization"),
    ("GET", rf"{_ORG}{_GROUP}/repositories", "_runner_group_repositories", False,
     f"{GROUP_DOCS}#list-repository-access-to-a-self-hosted-runner-group-in-an-organization"),
    ("GET", rf"{_ORG_ID}{_GROUP}/repositories", "_runner_group_repositories", False,
     f"{GROUP_DOCS}#list-repository-access-to-a-self-hosted-runner-group-in-an-organization"),
)  # fmt: skip

Answer = tuple[int, dict[str, str], Any]
# A route's handler: (path parameters, query, raw body, documentation URL) -> answer.
RouteHandler = Callable[[dict[str, str], dict[str, list[str]], bytes, str], Answer]


def new_app_key() -> tuple[str, str]:
    """A GitHub App key pair for the fake: (private PEM for the client, public PEM for the fake)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, number: int) -> str:
    """A node id in GitHub's legacy form: base64 of ``0<len>:<Kind><id>``."""
    return base64.b64encode(f"0{len(kind)}:{kind}{number}".encode()).decode()


def stable_id(text: str) -> int:
    """A number that is always the same for the same text (ids of things the fake does not keep)."""
    return int(hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:7], 16)


def error(status: int, message: str, documentation_url: str = DOCS, **extra: Any) -> Answer:
    """An error the way GitHub words them: message, documentation_url, and status as a string."""
    return status, {}, {"message": message, "documentation_url": documentation_url, "status": str(status), **extra}


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    times: int


@dataclass
class Recorded:
    """One request as the fake received it (headers with lower-case names)."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes


@dataclass
class FakeRunner:
    id: int
    name: str
    labels: list[str]
    runner_group_id: int
    status: str = "offline"
    busy: bool = False
    repository: str | None = None  # owner/name of a repository-level runner; None: organization-level
    os: str = "Linux"
    version: str | None = None  # set once the runner has connected
    ephemeral: bool = True  # JIT runners are

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "os": self.os,
            "status": self.status,
            "busy": self.busy,
            "ephemeral": self.ephemeral,
            "labels": [
                {"id": i, "name": n, "type": "read-only" if n.lower() in READ_ONLY_LABELS else "custom"}
                for i, n in enumerate(self.labels, 1)
            ],
            "version": self.version,
        }
        if self.repository is None:  # repository-level runners belong to no organization runner group
            body["runner_group_id"] = self.runner_group_id
        return body


@dataclass
class FakeGitHub:
    owner: str = "acme"
    app_id: str = "424242"
    app_public_key_pem: str | None = None
    installation_id: int = 777
    personal_token: str | None = None
    jobs: dict[int, dict[str, Any]] = field(default_factory=dict)
    runners: dict[int, FakeRunner] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Runner groups: id -> settings (name, visibility, allows_public_repositories, restricted_to_workflows,
    # selected_workflows, repositories: full names). Group 1 is the organization's Default group.
    runner_groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch s)
    token_lifetime_s: int = 3600
    path_prefix: str = ""  # "/api/v3" to stand in for GitHub Enterprise Server
    web_url: str = "https://github.com"  # html_url's base (never contacted)
    owner_id: int = 21031067
    app_slug: str = "vpc-runner-kit"
    app_permissions: dict[str, str] = field(
        default_factory=lambda: {
            "actions": "read",
            "administration": "write",  # repository-level runners
            "metadata": "read",
            "organization_self_hosted_runners": "write",
        }
    )
    rate_limit: int = 5000  # requests per hour; past it, the primary limit
    url: str = ""
    _faults: list[Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
    _repo_ids: dict[str, int] = field(default_factory=dict)  # lower-case owner/name -> id
    _rate_window: tuple[float, int] = (0.0, 0)  # (window start, calls in it)
    _started: float = field(default_factory=time.time)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # -- test controls ----------------------------------------------------------------------------
    def add_job(
        self,
        job_id: int,
        repo: str = "shop",
        status: str = "queued",
        *,
        event: str = "push",
        head_branch: str = "main",
        head_repository: str | None = None,
        run_id: int | None = None,
        labels: Sequence[str] = ("self-hosted", "vpc"),
        name: str = "migrate",
        workflow_name: str = "deploy",
        created_at: float | None = None,
    ) -> None:
        """A job and its run; ``head_repository`` other than owner/repo makes it a fork's pull request."""
        run_id = run_id if run_id is not None else job_id * 10
        created = created_at if created_at is not None else time.time()
        head_sha = hashlib.sha1(f"{repo}:{run_id}".encode(), usedforsecurity=False).hexdigest()
        with self._lock:
            self.jobs[job_id] = {
                "id": job_id,
                "status": status,
                "repo": repo,
                "run_id": run_id,
                "conclusion": None,
                "completed_at": None,
                "labels": list(labels),
                "name": name,
                "created_at": iso(created),
                "runner_id": None,
                "runner_name": None,
                "runner_group_id": None,
                "runner_group_name": None,
            }
            self.runs[run_id] = {
                "repo": repo,
                "event": event,
                "head_branch": head_branch,
                "head_repository": head_repository or f"{self.owner}/{repo}",
                "head_sha": head_sha,
                "name": workflow_name,
                "created_at": iso(created),
                "run_number": len(self.runs) + 1,
            }

    def set_job_status(
        self,
        job_id: int,
        status: str,
        conclusion: str | None = None,
        completed_at: str | None = None,
        *,
        runner: FakeRunner | None = None,
    ) -> None:
        """``runner``: the runner that took the job (its id, name and group show in the job)."""
        with self._lock:
            job = self.jobs[job_id]
            job.update(status=status, conclusion=conclusion, completed_at=completed_at)
            if status == "completed" and completed_at is None:
                job["completed_at"] = iso(time.time())
            if runner is not None:
                job.update(
                    runner_id=runner.id,
                    runner_name=runner.name,
                    runner_group_id=runner.runner_group_id,
                    runner_group_name=self._group_name(runner.runner_group_id),
                )

    def runner_named(self, name: str) -> FakeRunner | None:
        with self._lock:
            return next((r for r in self.runners.values() if r.name == name), None)

    def inject(
        self,
        method: str,
        path_regex: str,
        status: int,
        *,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        times: int = 1,
    ) -> None:
        """The next ``times`` matching requests get this answer instead of the real one."""
        answer = body if body is not None else {"message": f"injected {status}"}
        if status >= 400:
            answer = {"documentation_url": DOCS, "status": str(status), **answer}
        with self._lock:
            self._faults.append(Fault(method, re.compile(path_regex), status, headers or {}, answer, times))

    def inject_primary_rate_limit(
        self,
        method: str,
        path_regex: str,
        *,
        reset_in_s: float = 60,
        reset_at: int | None = None,
        status: int = 403,
        times: int = 1,
    ) -> None:
        """GitHub's primary rate limit: 403 (or 429) with ``x-ratelimit-remaining: 0``.

        GitHub documents: do not retry before ``x-ratelimit-reset`` (UTC epoch seconds)."""
        reset = reset_at if reset_at is not None else int(time.time() + reset_in_s)
        self.inject(
            method,
            path_regex,
            status,
            headers={
                "x-ratelimit-limit": str(self.rate_limit),
                "x-ratelimit-remaining": "0",
                "x-ratelimit-used": str(self.rate_limit),
                "x-ratelimit-reset": str(reset),
                "x-ratelimit-resource": "core",
            },
            body={
                "message": f"API rate limit exceeded for installation ID {self.installation_id}.",
                "documentation_url": f"{RATE_LIMIT_DOCS}#about-primary-rate-limits",
            },
            times=times,
        )

    def inject_secondary_rate_limit(
        self, method: str, path_regex: str, *, status: int = 403, retry_after: int | None = 60, times: int = 1
    ) -> None:
        """GitHub's secondary rate limit: 403 or 429, the message naming it, ``x-ratelimit-remaining`` not 0.

        GitHub documents: with ``retry-after``, wait that many seconds; without it (``retry_after=None``),
        wait at least one minute, and back off exponentially if it keeps failing."""
        headers = {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(self.rate_limit - 10),
            "x-ratelimit-used": "10",
            "x-ratelimit-reset": str(int(time.time()) + 3600),
            "x-ratelimit-resource": "core",
        }
        if retry_after is not None:
            headers["retry-after"] = str(retry_after)
        request_id = secrets.token_hex(8).upper()
        self.inject(
            method,
            path_regex,
            status,
            headers=headers,
            body={
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
                "again. If you reach out to GitHub Support for help, please include the request ID "
                f"{request_id}.",
                "documentation_url": f"{RATE_LIMIT_DOCS}#about-secondary-rate-limits",
            },
            times=times,
        )

    def count(self, method: str, path_regex: str) -> int:
        pattern = re.compile(path_regex)
        with self._lock:
            return sum(1 for m, p in self.calls if m == method and pattern.search(p))

    # -- serving ------------------------------------------------------------------------------------
    def start(self) -> str:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, headers, body = fake.handle(self.command, self.path, dict(self.headers.items()), raw)
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                if body is not None:
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-github", daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.path_prefix}"
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- the API ---------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        status, extra, body = self._answer(method, target, {k.lower(): v for k, v in headers.items()}, raw)
        common = {"x-github-api-version-selected": API_VERSION, "x-github-request-id": secrets.token_hex(8).upper()}
        return status, {**common, **extra}, body

    def _answer(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Answer:
        split = urlsplit(target)
        path = split.path
        if self.path_prefix:
            if not path.startswith(self.path_prefix + "/"):
                return error(404, "Not Found")
            path = path[len(self.path_prefix) :]
        query = parse_qs(split.query)
        with self._lock:
            self.calls.append((method, path))
            self.requests.append(Recorded(method, path, query, headers, raw))
            for fault in self._faults:
                if fault.method == method and fault.path.search(path) and fault.times > 0:
                    fault.times -= 1
                    return fault.status, dict(fault.headers), dict(fault.body)
        version = headers.get("x-github-api-version")
        if version is not None and version not in SUPPORTED_API_VERSIONS:
            supported = ", ".join(f'"{v}"' for v in SUPPORTED_API_VERSIONS)
            return error(
                400,
                f'The version you specified in the "X-GitHub-Api-Version" request header, "{version}", is not a '
                f"supported version. The following versions are currently supported: {supported}.",
                f"{DOCS}/about-the-rest-api/api-versions",
            )
        route = self._route(method, path)
        if route is None:
            return error(404, "Not Found")
        handler, params, needs_jwt, docs = route
        auth = headers.get("authorization", "")
        scheme, _, credential = auth.partition(" ")
        if needs_jwt:
            if scheme.lower() != "bearer" or not self._jwt_ok(credential.strip()):
                return error(401, "A JSON web token could not be decoded", docs)
            return handler(params, query, raw, docs)
        if scheme.lower() not in ("bearer", "token") or not self._token_ok(credential.strip()):
            return error(401, "Bad credentials", docs)
        limited = self._count_rate()
        if limited is not None:
            return limited
        status, extra, body = handler(params, query, raw, docs)
        return status, {**self._rate_headers(), **extra}, body

    # -- routing ---------------------------------------------------------------------------------------
    def _route(self, method: str, path: str) -> tuple[RouteHandler, dict[str, str], bool, str] | None:
        """(handler, path parameters, whether it takes the App JWT, its documentation URL), or None."""
        for verb, pattern, name, needs_jwt, docs in ROUTES:
            if verb == method and (m := re.fullmatch(pattern, path)):
                params = {k: v for k, v in m.groupdict().items() if v is not None}
                handler: RouteHandler = getattr(self, name)
                return handler, params, needs_jwt, docs
        return None

    def _scope(self, params: dict[str, str]) -> tuple[str | None, str | None]:
        """(the owner, the repository's full name or None for the organization) a route's path names.

        (None, None) when it names another owner or an id the fake never gave out. Every repository
        of the owner exists."""
        if "owner_id" in params:
            if int(params["owner_id"]) != self.owner_id:
                return None, None
            return self.owner, None
        if "repo_id" in params:
            with self._lock:
                full = next((name for name, i in self._repo_ids.items() if i == int(params["repo_id"])), None)
            owner, _, name = (full or "").partition("/")
            if owner != self.owner.lower():
                return None, None
            return self.owner, f"{self.owner}/{name}"
        if params.get("owner", "").lower() != self.owner.lower():
            return None, None
        if "repo" in params:
            return self.owner, f"{self.owner}/{params['repo']}"
        return self.owner, None

    # -- handlers --------------------------------------------------------------------------------------
    def _access_token(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        if int(params["installation_id"]) != self.installation_id:
            return error(404, "Not Found", docs)
        token = "ghs_" + secrets.token_hex(18)
        expires = time.time() + self.token_lifetime_s
        with self._lock:
            self.tokens[token] = expires
        return (
            201,
            {},
            {
                "token": token,
                "expires_at": iso(expires),
                "permissions": dict(self.app_permissions),
                "repository_selection": "all",
            },
        )

    def _org_installation(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        if self._scope(params)[0] is None:
            return error(404, "Not Found", docs)
        api, created = self.url, iso(self._started - 86400)
        return (
            200,
            {},
            {
                "id": self.installation_id,
                "client_id": f"Iv1.{hashlib.sha1(self.app_id.encode(), usedforsecurity=False).hexdigest()[:16]}",
                "account": self._user(self.owner, self.owner_id, "Organization"),
                "repository_selection": "all",
                "access_tokens_url": f"{api}/app/installations/{self.installation_id}/access_tokens",
                "repositories_url": f"{api}/installation/repositories",
                "html_url": f"{self.web_url}/organizations/{self.owner}/settings/installations/{self.installation_id}",
                "app_id": int(self.app_id) if self.app_id.isdigit() else 0,
                "app_slug": self.app_slug,
                "target_id": self.owner_id,
                "target_type": "Organization",
                "permissions": dict(self.app_permissions),
                "events": ["workflow_job"],
                "created_at": created,
                "updated_at": created,
                "single_file_name": None,
                "has_multiple_single_files": False,
                "single_file_paths": [],
                "suspended_by": None,
                "suspended_at": None,
            },
        )

    def _job(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        _, repository = self._scope(params)
        with self._lock:
            job = dict(self.jobs.get(int(params["job_id"])) or {})
            run = dict(self.runs.get(job.get("run_id", -1)) or {})
        if not job or repository is None or job["repo"].lower() != params["repo"].lower():
            return error(404, "Not Found", docs)
        api, full = self.url, f"{self.owner}/{job['repo']}"
        job_id, run_id = job["id"], job["run_id"]
        started = job["created_at"]
        steps: list[dict[str, Any]] = []
        if job["status"] in ("in_progress", "completed"):
            steps.append(
                {
                    "name": "Set up job",
                    "status": "completed" if job["status"] == "completed" else "in_progress",
                    "conclusion": job["conclusion"] if job["status"] == "completed" else None,
                    "number": 1,
                    "started_at": started,
                    "completed_at": job["completed_at"],
                }
            )
        return (
            200,
            {},
            {
                "id": job_id,
                "run_id": run_id,
                "workflow_name": run.get("name"),
                "head_branch": run.get("head_branch"),
                "run_url": f"{api}/repos/{full}/actions/runs/{run_id}",
                "run_attempt": 1,
                "node_id": node_id("CheckRun", job_id),
                "head_sha": run.get("head_sha", "0" * 40),
                "url": f"{api}/repos/{full}/actions/jobs/{job_id}",
                "html_url": f"{self.web_url}/{full}/actions/runs/{run_id}/job/{job_id}",
                "status": job["status"],
                "conclusion": job["conclusion"],
                "created_at": job["created_at"],
                "started_at": started,
                "completed_at": job["completed_at"],
                "name": job["name"],
                "steps": steps,
                "check_run_url": f"{api}/repos/{full}/check-runs/{job_id}",
                "labels": list(job["labels"]),
                "runner_id": job["runner_id"],
                "runner_name": job["runner_name"],
                "runner_group_id": job["runner_group_id"],
                "runner_group_name": job["runner_group_name"],
            },
        )

    def _run(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        _, repository = self._scope(params)
        run_id = int(params["run_id"])
        with self._lock:
            run = dict(self.runs.get(run_id) or {})
            statuses = [j["status"] for j in self.jobs.values() if j["run_id"] == run_id]
            conclusions = [j["conclusion"] for j in self.jobs.values() if j["run_id"] == run_id]
        if not run or repository is None or run["repo"].lower() != params["repo"].lower():
            return error(404, "Not Found", docs)
        if statuses and all(s == "completed" for s in statuses):
            status = "completed"
            conclusion = "failure" if "failure" in conclusions else (conclusions[0] or "success")
        else:
            status = "in_progress" if "in_progress" in statuses else (statuses[0] if statuses else "queued")
            conclusion = None
        api, full = self.url, f"{self.owner}/{run['repo']}"
        base = f"{api}/repos/{full}/actions/runs/{run_id}"
        workflow_id = stable_id(run["name"])
        check_suite = run_id * 3
        actor = self._user("octocat", 583231, "User")
        head = self._repository(run["head_repository"])
        return (
            200,
            {},
            {
                "id": run_id,
                "name": run["name"],
                "node_id": node_id("WorkflowRun", run_id),
                "check_suite_id": check_suite,
                "check_suite_node_id": node_id("CheckSuite", check_suite),
                "head_branch": run["head_branch"],
                "head_sha": run["head_sha"],
                "path": f".github/workflows/{run['name']}.yml",
                "display_title": f"{run['name']} on {run['head_branch']}",
                "run_number": run["run_number"],
                "run_attempt": 1,
                "referenced_workflows": [],
                "event": run["event"],
                "status": status,
                "conclusion": conclusion,
                "workflow_id": workflow_id,
                "url": base,
                "html_url": f"{self.web_url}/{full}/actions/runs/{run_id}",
                "pull_requests": [],
                "created_at": run["created_at"],
                "updated_at": run["created_at"],
                "actor": actor,
                "triggering_actor": actor,
                "run_started_at": run["created_at"],
                "jobs_url": f"{base}/jobs",
                "logs_url": f"{base}/logs",
                "check_suite_url": f"{api}/repos/{full}/check-suites/{check_suite}",
                "artifacts_url": f"{base}/artifacts",
                "cancel_url": f"{base}/cancel",
                "rerun_url": f"{base}/rerun",
                "previous_attempt_url": None,
                "workflow_url": f"{api}/repos/{full}/actions/workflows/{workflow_id}",
                "head_commit": {
                    "id": run["head_sha"],
                    "tree_id": hashlib.sha1(run["head_sha"].encode(), usedforsecurity=False).hexdigest(),
                    "message": f"{run['name']}: the change under test",
                    "timestamp": run["created_at"],
                    "author": {"name": "Monalisa Octocat", "email": "octocat@users.noreply.github.com"},
                    "committer": {"name": "GitHub", "email": "noreply@github.com"},
                },
                "repository": self._repository(full),
                "head_repository": head,
                "head_repository_id": head["id"],
            },
        )

    def _jit_route(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        owner, repository = self._scope(params)
        if owner is None:
            return error(404, "Not Found", docs)
        return self._jit(raw, repository, docs)

    def _jit(self, raw: bytes, repository: str | None = None, docs: str = RUNNER_DOCS) -> Answer:
        """generate-jitconfig, validated as GitHub's request body schema says; ``repository``: repo-level."""
        try:
            body = json.loads(raw)
        except ValueError:
            return error(400, "Problems parsing JSON", docs)
        problems = []
        if not isinstance(body, dict):
            problems.append("the body must be an object")
            body = {}
        for key in ("name", "runner_group_id", "labels"):
            if key not in body:
                problems.append(f'"{key}" wasn\'t supplied.')
        name, group, labels = body.get("name"), body.get("runner_group_id"), body.get("labels")
        if "name" in body and (not isinstance(name, str) or not name.strip()):
            problems.append("name must be a non-empty string")
        if "runner_group_id" in body and (not isinstance(group, int) or isinstance(group, bool)):
            problems.append("runner_group_id must be an integer")
        if "labels" in body and (
            not isinstance(labels, list) or not 1 <= len(labels) <= 100 or not all(isinstance(x, str) for x in labels)
        ):
            problems.append("labels must have 1 to 100 items, each a string")
        if "work_folder" in body and not isinstance(body["work_folder"], str):
            problems.append("work_folder must be a string")
        if problems:
            return error(422, "Invalid request.\n\n" + "\n".join(problems), docs, errors=problems)
        assert isinstance(name, str) and isinstance(group, int) and isinstance(labels, list)
        with self._lock:
            if any(r.name == name and r.repository == repository for r in self.runners.values()):
                return error(409, f"Already exists - A runner with the name {name} already exists.", docs)
            runner = FakeRunner(
                id=next(self._ids), name=name, labels=list(labels), runner_group_id=group, repository=repository
            )
            self.runners[runner.id] = runner
        encoded = base64.b64encode(json.dumps({"runner_id": runner.id, "name": name}).encode()).decode()
        return 201, {}, {"runner": runner.as_json(), "encoded_jit_config": encoded}

    def _list_runners(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        owner, repository = self._scope(params)
        if owner is None:
            return error(404, "Not Found", docs)
        wanted = query.get("name", [None])[0]
        with self._lock:
            chosen = sorted(
                (r for r in self.runners.values() if self._same_scope(r, repository)),
                key=lambda r: r.id,
            )
        if wanted is not None:
            chosen = [r for r in chosen if r.name == wanted]
        canonical = (
            f"/repositories/{self._repo_id(repository)}/actions/runners"
            if repository
            else f"/organizations/{self.owner_id}/actions/runners"
        )
        link, chunk = self._page(chosen, query, canonical, {"name": wanted} if wanted else {})
        return 200, link, {"total_count": len(chosen), "runners": [r.as_json() for r in chunk]}

    def _get_runner(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        owner, repository = self._scope(params)
        with self._lock:
            runner = self.runners.get(int(params["runner_id"]))
            found = runner.as_json() if runner and owner and self._same_scope(runner, repository) else None
        return (200, {}, found) if found else error(404, "Not Found", docs)

    def _delete_runner(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        owner, repository = self._scope(params)
        with self._lock:
            runner = self.runners.get(int(params["runner_id"]))
            if runner is None or owner is None or not self._same_scope(runner, repository):
                return error(404, "Not Found", docs)
            if runner.busy:
                return error(422, f"Bad request - Runner {runner.name} is still running a job.", docs)
            del self.runners[runner.id]
        return 204, {}, None

    def _runner_group(self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str) -> Answer:
        group_id = int(params["group_id"])
        group = self._group(group_id)
        if self._scope(params)[0] is None or group is None:
            return error(404, "Not Found", docs)
        base = f"{self.url}/orgs/{self.owner}/actions/runner-groups/{group_id}"
        body: dict[str, Any] = {
            "id": group_id,
            "name": self._group_name(group_id),
            "visibility": "all",
            "default": group_id == 1,
            "runners_url": f"{base}/runners",
            "hosted_runners_url": f"{base}/hosted-runners",
            "inherited": False,
            "allows_public_repositories": False,
            "restricted_to_workflows": False,
            "selected_workflows": [],
            "workflow_restrictions_read_only": False,
        }
        body.update({k: v for k, v in group.items() if k != "repositories"})
        if body["visibility"] == "selected":
            body["selected_repositories_url"] = f"{base}/repositories"
        return 200, {}, body

    def _runner_group_repositories(
        self, params: dict[str, str], query: dict[str, list[str]], raw: bytes, docs: str
    ) -> Answer:
        group_id = int(params["group_id"])
        group = self._group(group_id)
        if self._scope(params)[0] is None or group is None:
            return error(404, "Not Found", docs)
        names = list(group.get("repositories", []))
        canonical = f"/organizations/{self.owner_id}/actions/runner-groups/{group_id}/repositories"
        link, chunk = self._page(names, query, canonical, {})
        return 200, link, {"total_count": len(names), "repositories": [self._repository(n) for n in chunk]}

    # -- helpers ---------------------------------------------------------------------------------------
    def _group(self, group_id: int) -> dict[str, Any] | None:
        with self._lock:
            group = self.runner_groups.get(group_id)
        if group is None and group_id == 1:
            return {"name": "Default", "visibility": "all"}
        return dict(group) if group is not None else None

    def _group_name(self, group_id: int) -> str:
        group = self.runner_groups.get(group_id) or {}
        return str(group.get("name") or ("Default" if group_id == 1 else f"group-{group_id}"))

    @staticmethod
    def _same_scope(runner: FakeRunner, repository: str | None) -> bool:
        if repository is None or runner.repository is None:
            return runner.repository is None and repository is None
        return runner.repository.lower() == repository.lower()

    def _repo_id(self, full_name: str | None) -> int:
        key = (full_name or "").lower()
        with self._lock:
            if key not in self._repo_ids:
                self._repo_ids[key] = 186853002 + len(self._repo_ids)
            return self._repo_ids[key]

    def _page(
        self, items: Sequence[Any], query: dict[str, list[str]], canonical: str, keep: dict[str, str]
    ) -> tuple[dict[str, str], list[Any]]:
        """GitHub's pagination: per_page (default 30, at most 100), page (from 1), and a Link header."""

        def number(name: str, default: int) -> int:
            text = query.get(name, [""])[0]
            return int(text) if text.isdigit() and int(text) > 0 else default

        per_page = min(number("per_page", 30), 100)
        page = number("page", 1)
        last = max(1, math.ceil(len(items) / per_page))

        def url(n: int) -> str:
            return f"{self.url}{canonical}?{urlencode({**keep, 'per_page': per_page, 'page': n})}"

        links = []
        if page > 1:
            links += [f'<{url(min(page - 1, last))}>; rel="prev"', f'<{url(1)}>; rel="first"']
        if page < last:
            links += [f'<{url(page + 1)}>; rel="next"', f'<{url(last)}>; rel="last"']
        chunk = list(items[(page - 1) * per_page : page * per_page])
        return ({"Link": ", ".join(links)} if links else {}), chunk

    def _user(self, login: str, user_id: int, kind: str) -> dict[str, Any]:
        api, name = self.url, quote(login)
        return {
            "login": login,
            "id": user_id,
            "node_id": node_id(kind, user_id),
            "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
            "gravatar_id": "",
            "url": f"{api}/users/{name}",
            "html_url": f"{self.web_url}/{name}",
            "followers_url": f"{api}/users/{name}/followers",
            "following_url": f"{api}/users/{name}/following{{/other_user}}",
            "gists_url": f"{api}/users/{name}/gists{{/gist_id}}",
            "starred_url": f"{api}/users/{name}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{api}/users/{name}/subscriptions",
            "organizations_url": f"{api}/users/{name}/orgs",
            "repos_url": f"{api}/users/{name}/repos",
            "events_url": f"{api}/users/{name}/events{{/privacy}}",
            "received_events_url": f"{api}/users/{name}/received_events",
            "type": kind,
            "user_view_type": "public",
            "site_admin": False,
        }

    def _repository(self, full_name: str) -> dict[str, Any]:
        """A minimal-repository: the owner's own are private; another owner's (a fork) public."""
        owner, _, name = full_name.partition("/")
        ours = owner.lower() == self.owner.lower()
        repo_id = self._repo_id(full_name)
        owner_id = self.owner_id if ours else stable_id(owner)
        api = f"{self.url}/repos/{full_name}"
        html = f"{self.web_url}/{full_name}"
        created = iso(self._started - 365 * 86400)
        return {
            "id": repo_id,
            "node_id": node_id("Repository", repo_id),
            "name": name,
            "full_name": full_name,
            "private": ours,
            "owner": self._user(owner, owner_id, "Organization" if ours else "User"),
            "html_url": html,
            "description": None,
            "fork": not ours,
            "url": api,
            "forks_url": f"{api}/forks",
            "keys_url": f"{api}/keys{{/key_id}}",
            "collaborators_url": f"{api}/collaborators{{/collaborator}}",
            "teams_url": f"{api}/teams",
            "hooks_url": f"{api}/hooks",
            "issue_events_url": f"{api}/issues/events{{/number}}",
            "events_url": f"{api}/events",
            "assignees_url": f"{api}/assignees{{/user}}",
            "branches_url": f"{api}/branches{{/branch}}",
            "tags_url": f"{api}/tags",
            "blobs_url": f"{api}/git/blobs{{/sha}}",
            "git_tags_url": f"{api}/git/tags{{/sha}}",
            "git_refs_url": f"{api}/git/refs{{/sha}}",
            "trees_url": f"{api}/git/trees{{/sha}}",
            "statuses_url": f"{api}/statuses/{{sha}}",
            "languages_url": f"{api}/languages",
            "stargazers_url": f"{api}/stargazers",
            "contributors_url": f"{api}/contributors",
            "subscribers_url": f"{api}/subscribers",
            "subscription_url": f"{api}/subscription",
            "commits_url": f"{api}/commits{{/sha}}",
            "git_commits_url": f"{api}/git/commits{{/sha}}",
            "comments_url": f"{api}/comments{{/number}}",
            "issue_comment_url": f"{api}/issues/comments{{/number}}",
            "contents_url": f"{api}/contents/{{+path}}",
            "compare_url": f"{api}/compare/{{base}}...{{head}}",
            "merges_url": f"{api}/merges",
            "archive_url": f"{api}/{{archive_format}}{{/ref}}",
            "downloads_url": f"{api}/downloads",
            "issues_url": f"{api}/issues{{/number}}",
            "pulls_url": f"{api}/pulls{{/number}}",
            "milestones_url": f"{api}/milestones{{/number}}",
            "notifications_url": f"{api}/notifications{{?since,all,participating}}",
            "labels_url": f"{api}/labels{{/name}}",
            "releases_url": f"{api}/releases{{/id}}",
            "deployments_url": f"{api}/deployments",
            "git_url": f"git://{urlsplit(self.web_url).netloc}/{full_name}.git",
            "ssh_url": f"git@{urlsplit(self.web_url).netloc}:{full_name}.git",
            "clone_url": f"{html}.git",
            "svn_url": html,
            "mirror_url": None,
            "homepage": None,
            "language": "Python",
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers_count": 0,
            "size": 0,
            "default_branch": "main",
            "open_issues_count": 0,
            "is_template": False,
            "topics": [],
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": True,
            "has_discussions": False,
            "archived": False,
            "disabled": False,
            "visibility": "private" if ours else "public",
            "pushed_at": created,
            "created_at": created,
            "updated_at": created,
            "allow_forking": not ours,
            "web_commit_signoff_required": False,
            "forks": 0,
            "open_issues": 0,
            "watchers": 0,
        }

    def _count_rate(self) -> Answer | None:
        """One call against the hour's budget; past it, GitHub's primary limit."""
        with self._lock:
            start, used = self._rate_window
            now = time.time()
            if now - start >= 3600:
                start, used = now, 0
            used += 1
            self._rate_window = (start, used)
        if used <= self.rate_limit:
            return None
        status, _, body = error(
            403,
            f"API rate limit exceeded for installation ID {self.installation_id}.",
            f"{RATE_LIMIT_DOCS}#about-primary-rate-limits",
        )
        return status, self._rate_headers(), body

    def _rate_headers(self) -> dict[str, str]:
        with self._lock:
            start, used = self._rate_window
        return {
            "x-ratelimit-limit": str(self.rate_limit),
            "x-ratelimit-remaining": str(max(self.rate_limit - used, 0)),
            "x-ratelimit-used": str(min(used, self.rate_limit)),
            "x-ratelimit-reset": str(int(start + 3600)),
            "x-ratelimit-resource": "core",
        }

    def _jwt_ok(self, token: str) -> bool:
        if not self.app_public_key_pem:
            return False
        import jwt

        try:
            claims = jwt.decode(
                token, self.app_public_key_pem, algorithms=["RS256"], options={"require": ["iat", "exp", "iss"]}
            )
        except jwt.PyJWTError:
            return False
        return str(claims["iss"]) == self.app_id and claims["exp"] - claims["iat"] <= 660

    def _token_ok(self, token: str) -> bool:
        if self.personal_token and secrets.compare_digest(token, self.personal_token):
            return True
        with self._lock:
            expiry = self.tokens.get(token)
        return expiry is not None and expiry > time.time()
