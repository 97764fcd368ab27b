"""A stand-in for the parts of GitHub's REST API the control plane uses, served on loopback.

For the tests and the local harness (never used by the Lambdas). It checks what GitHub checks:
the App JWT's RS256 signature and claims, that every other call carries an installation token it
issued (or the configured personal token), JIT request bodies, duplicate runner names. Tests can
queue faults (5xx, 403/429 rate limits, 404) for any route, and read every call made.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


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


@dataclass
class Fault:
    method: str
    path: re.Pattern[str]
    status: int
    headers: dict[str, str]
    body: dict[str, Any]
    times: int


@dataclass
class FakeRunner:
    id: int
    name: str
    labels: list[str]
    runner_group_id: int
    status: str = "offline"
    busy: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "os": "Linux",
            "status": self.status,
            "busy": self.busy,
            "labels": [{"id": i, "name": n, "type": "custom"} for i, n in enumerate(self.labels, 1)],
        }


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
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    # Runner groups: id -> settings (visibility, allows_public_repositories, restricted_to_workflows, repositories)
    runner_groups: dict[int, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch s)
    token_lifetime_s: int = 3600
    path_prefix: str = ""  # "/api/v3" to stand in for GitHub Enterprise Server
    url: str = ""
    _faults: list[Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1001))
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
    ) -> None:
        """A job and its run; ``head_repository`` other than owner/repo makes it a fork's pull request."""
        run_id = run_id if run_id is not None else job_id * 10
        with self._lock:
            self.jobs[job_id] = {"id": job_id, "status": status, "repo": repo, "run_id": run_id}
            self.runs[run_id] = {
                "repo": repo,
                "event": event,
                "head_branch": head_branch,
                "head_repository": head_repository or f"{self.owner}/{repo}",
            }

    def set_job_status(
        self, job_id: int, status: str, conclusion: str | None = None, completed_at: str | None = None
    ) -> None:
        with self._lock:
            self.jobs[job_id].update(status=status, conclusion=conclusion, completed_at=completed_at)

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
        with self._lock:
            self._faults.append(
                Fault(
                    method,
                    re.compile(path_regex),
                    status,
                    headers or {},
                    body or {"message": f"injected {status}"},
                    times,
                )
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
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _serve

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="fake-github", daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{self.path_prefix}"
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    # -- the API ---------------------------------------------------------------------------------------
    def handle(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, str], Any]:
        path = urlsplit(target).path
        if self.path_prefix:
            if not path.startswith(self.path_prefix + "/"):
                return 404, {}, {"message": "Not Found"}
            path = path[len(self.path_prefix) :]
        query = parse_qs(urlsplit(target).query)
        with self._lock:
            self.calls.append((method, path))
            for fault in self._faults:
                if fault.method == method and fault.path.search(path) and fault.times > 0:
                    fault.times -= 1
                    return fault.status, fault.headers, fault.body
        auth = {k.lower(): v for k, v in headers.items()}.get("authorization", "")
        bearer = auth.removeprefix("Bearer ").strip()

        if method == "POST" and (m := re.fullmatch(r"/app/installations/(\d+)/access_tokens", path)):
            if not self._jwt_ok(bearer):
                return 401, {}, {"message": "A JSON web token could not be decoded"}
            if int(m[1]) != self.installation_id:
                return 404, {}, {"message": "Not Found"}
            token = "ghs_" + secrets.token_hex(18)
            expires = time.time() + self.token_lifetime_s
            with self._lock:
                self.tokens[token] = expires
            return (
                201,
                {},
                {"token": token, "expires_at": datetime.fromtimestamp(expires, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")},
            )
        if method == "GET" and path == f"/orgs/{self.owner}/installation":
            if not self._jwt_ok(bearer):
                return 401, {}, {"message": "A JSON web token could not be decoded"}
            return 200, {}, {"id": self.installation_id, "account": {"login": self.owner}}

        if not self._token_ok(bearer):
            return 401, {}, {"message": "Bad credentials"}
        if method == "GET" and (m := re.fullmatch(rf"/repos/{self.owner}/([^/]+)/actions/jobs/(\d+)", path)):
            job = self.jobs.get(int(m[2]))
            if job is None or job["repo"] != m[1]:
                return 404, {}, {"message": "Not Found"}
            body = {"id": job["id"], "run_id": job["run_id"], "status": job["status"]}
            body |= {"conclusion": job.get("conclusion"), "completed_at": job.get("completed_at")}
            return 200, {}, body
        if method == "GET" and (
            m := re.fullmatch(rf"/orgs/{self.owner}/actions/runner-groups/(\d+)(/repositories)?", path)
        ):
            group = self.runner_groups.get(int(m[1]))
            if group is None:
                return 404, {}, {"message": "Not Found"}
            if m[2]:
                repos = [{"id": i, "full_name": name} for i, name in enumerate(group.get("repositories", []), 1)]
                return 200, {}, {"total_count": len(repos), "repositories": repos}
            settings = {k: v for k, v in group.items() if k != "repositories"}
            return 200, {}, {"id": int(m[1]), "default": int(m[1]) == 1, "inherited": False, **settings}
        if method == "GET" and (m := re.fullmatch(rf"/repos/{self.owner}/([^/]+)/actions/runs/(\d+)", path)):
            run = self.runs.get(int(m[2]))
            if run is None or run["repo"] != m[1]:
                return 404, {}, {"message": "Not Found"}
            return (
                200,
                {},
                {
                    "id": int(m[2]),
                    "event": run["event"],
                    "head_branch": run["head_branch"],
                    "repository": {"full_name": f"{self.owner}/{m[1]}"},
                    "head_repository": {"full_name": run["head_repository"]},
                },
            )
        if method == "POST" and re.fullmatch(
            rf"/(orgs/{self.owner}|repos/{self.owner}/[^/]+)/actions/runners/generate-jitconfig", path
        ):
            return self._jit(raw)
        if method == "GET" and path == f"/orgs/{self.owner}/actions/runners":
            per_page = int(query.get("per_page", ["30"])[0])
            page = int(query.get("page", ["1"])[0])
            with self._lock:
                everyone = sorted(self.runners.values(), key=lambda r: r.id)
            chunk = everyone[(page - 1) * per_page : page * per_page]
            return 200, {}, {"total_count": len(everyone), "runners": [r.as_json() for r in chunk]}
        if method == "DELETE" and (m := re.fullmatch(rf"/orgs/{self.owner}/actions/runners/(\d+)", path)):
            with self._lock:
                runner = self.runners.get(int(m[1]))
                if runner is None:
                    return 404, {}, {"message": "Not Found"}
                if runner.busy:
                    return 422, {}, {"message": "Bad request - Runner is currently running a job"}
                del self.runners[runner.id]
            return 204, {}, None
        return 404, {}, {"message": f"fake GitHub has no route {method} {path}"}

    def _jit(self, raw: bytes) -> tuple[int, dict[str, str], Any]:
        try:
            body = json.loads(raw)
            name, group, labels = body["name"], body["runner_group_id"], body["labels"]
        except (ValueError, KeyError, TypeError):
            return 422, {}, {"message": "Invalid request: name, runner_group_id and labels are required"}
        if not isinstance(labels, list) or not 1 <= len(labels) <= 100 or not isinstance(group, int):
            return 422, {}, {"message": "Invalid request: labels must have 1 to 100 items"}
        with self._lock:
            if any(r.name == name for r in self.runners.values()):
                return 409, {}, {"message": "Already exists - A runner with the name already exists."}
            runner = FakeRunner(id=next(self._ids), name=name, labels=list(labels), runner_group_id=group)
            self.runners[runner.id] = runner
        encoded = base64.b64encode(json.dumps({"runner_id": runner.id, "name": name}).encode()).decode()
        return 201, {}, {"runner": runner.as_json(), "encoded_jit_config": encoded}

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
