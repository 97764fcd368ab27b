"""The fake GitHub, held to GitHub's own published references rather than to our assumptions.

Every operation the control plane's client uses is looked up in GitHub's REST API description (npm
``@octokit/openapi``, api.github.com), called on the fake over HTTP the way the client calls it, and the
answer's status must be one the operation documents and its body must validate against the documented
schema (closed: no field the schema does not list). Then the behaviours GitHub documents and the client
depends on: Link pagination, API versions, repository- versus organization-level runners, error bodies,
primary and secondary rate limits.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import urllib3

from runner.control_plane.github import API_VERSION, AppAuth, GitHubClient
from simulator.fake_github import FakeGitHub, FakeRunner
from tests.control_plane import github_references as refs

# What runner/control_plane/github.py and ops/runner_group_check.py call: (method, path template).
OPERATIONS = [
    ("POST", "/app/installations/{installation_id}/access_tokens"),
    ("GET", "/orgs/{org}/installation"),
    ("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}"),
    ("POST", "/orgs/{org}/actions/runners/generate-jitconfig"),
    ("POST", "/repos/{owner}/{repo}/actions/runners/generate-jitconfig"),
    ("GET", "/orgs/{org}/actions/runners"),
    ("DELETE", "/orgs/{org}/actions/runners/{runner_id}"),
    ("GET", "/repos/{owner}/{repo}/actions/runners"),
    ("DELETE", "/repos/{owner}/{repo}/actions/runners/{runner_id}"),
    ("GET", "/orgs/{org}/actions/runner-groups/{runner_group_id}"),
    ("GET", "/orgs/{org}/actions/runner-groups/{runner_group_id}/repositories"),
]

HTTP = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3.0, read=10.0), retries=False)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


def send(
    fake: FakeGitHub,
    method: str,
    path: str,
    *,
    token: str | None,
    body: Any = None,
    version: str | None = API_VERSION,
) -> Answer:
    """One request as GitHubClient sends it: its Accept, API version, User-Agent and bearer token."""
    headers = {"Accept": "application/vnd.github+json", "User-Agent": "vpc-runner-kit"}
    if version is not None:
        headers["X-GitHub-Api-Version"] = version
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    payload = None
    if body is not None:
        payload = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    resp = HTTP.request(method, fake.url + path, body=payload, headers=headers)
    headers = {k.lower(): v for k, v in resp.headers.items()}
    return Answer(resp.status, headers, json.loads(resp.data) if resp.data else None)


@dataclass
class GitHub:
    """The fake, an App JWT and an installation token minted through the fake like the client does."""

    fake: FakeGitHub
    jwt: str
    token: str

    def get(self, path: str, **kwargs: Any) -> Answer:
        return send(self.fake, "GET", path, token=self.token, **kwargs)

    def runner(self, name: str, *, repository: str | None = None, busy: bool = False) -> FakeRunner:
        raw = json.dumps({"name": name, "runner_group_id": 1, "labels": ["self-hosted", "vpc"]}).encode()
        status, _, body = self.fake._jit(raw, repository)
        assert status == 201, body
        runner = self.fake.runners[body["runner"]["id"]]
        runner.busy = busy
        if busy:
            runner.status = "online"
        return runner


@pytest.fixture
def github(fake_github: FakeGitHub, app_key: tuple[str, str]) -> GitHub:
    jwt = AppAuth(fake_github.app_id, app_key[0]).jwt()
    minted = send(fake_github, "POST", f"/app/installations/{fake_github.installation_id}/access_tokens", token=jwt)
    assert minted.status == 201, minted.body
    return GitHub(fake_github, jwt, minted.body["token"])


# -- the operations exist, and the fake's answers match their schemas --------------------------------------
def test_the_pinned_packages_are_the_installed_ones():
    for package in (refs.OPENAPI_PACKAGE, refs.EXAMPLES_PACKAGE):
        pinned = refs.pinned_version(package)
        assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), f"{package} must be pinned to an exact version, not {pinned}"
        assert refs.installed_version(package) == pinned, f"{package}: run npm ci in tests/js"
    assert refs.description()["openapi"].startswith("3.0")


@pytest.mark.parametrize(("method", "template"), OPERATIONS, ids=[f"{m} {t}" for m, t in OPERATIONS])
def test_every_operation_the_client_uses_is_in_githubs_description(method: str, template: str):
    op = refs.operation(method, template)  # LookupError, loudly, if GitHub's description lacks it
    assert any(200 <= int(s) < 300 for s in op.statuses() if s.isdigit()), f"{op.id} documents no success"


def test_a_missing_operation_fails_loudly():
    with pytest.raises(LookupError, match=re.escape("no path /orgs/{org}/actions/runnerz")):
        refs.operation("GET", "/orgs/{org}/actions/runnerz")
    with pytest.raises(LookupError, match="no PATCH"):
        refs.operation("PATCH", "/repos/{owner}/{repo}/actions/jobs/{job_id}")
    with pytest.raises(LookupError, match="no operation"):
        refs.operation_for("GET", "/orgs/acme/actions/runnerz")


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    template: str
    status: int  # the fake's answer, which the operation must document
    path: str  # formatted with what setup returns
    setup: Callable[[GitHub], dict[str, Any]] = lambda gh: {}
    body: Any = None
    auth: str = "token"  # token | jwt | bad-jwt
    extra: dict[str, Any] = field(default_factory=dict)


def _job(job_id: int, **kwargs: Any) -> Callable[[GitHub], dict[str, Any]]:
    def setup(gh: GitHub) -> dict[str, Any]:
        gh.fake.add_job(job_id, **kwargs)
        return {}

    return setup


def _finished_job(gh: GitHub) -> dict[str, Any]:
    gh.fake.add_job(2)
    runner = gh.runner("vpc-i-0finished")
    gh.fake.set_job_status(2, "completed", "failure", runner=runner)
    return {}


def _runners(gh: GitHub) -> dict[str, Any]:
    gh.runner("vpc-i-0a")
    gh.runner("vpc-i-0b", busy=True)
    gh.fake.runners[gh.runner("vpc-i-0c").id].version = "2.330.0"
    gh.runner("vpc-i-0r", repository="acme/shop")
    return {}


def _one(repository: str | None = None, *, busy: bool = False) -> Callable[[GitHub], dict[str, Any]]:
    return lambda gh: {"runner_id": gh.runner("vpc-i-0one", repository=repository, busy=busy).id}


def _taken(repository: str | None = None) -> Callable[[GitHub], dict[str, Any]]:
    def setup(gh: GitHub) -> dict[str, Any]:
        gh.runner("vpc-i-0taken", repository=repository)
        return {}

    return setup


def _group(gh: GitHub) -> dict[str, Any]:
    gh.fake.runner_groups[3] = {
        "name": "migrations",
        "visibility": "selected",
        "allows_public_repositories": False,
        "restricted_to_workflows": True,
        "selected_workflows": ["acme/shop/.github/workflows/migrate.yml@refs/heads/main"],
        "repositories": ["acme/shop", "acme/billing"],
    }
    return {}


JIT = {"name": "vpc-i-0new", "runner_group_id": 1, "labels": ["self-hosted", "x64", "vpc"], "work_folder": "_work"}
TAKEN = {**JIT, "name": "vpc-i-0taken"}
JOB, RUN = "/repos/{owner}/{repo}/actions/jobs/{job_id}", "/repos/{owner}/{repo}/actions/runs/{run_id}"
ORG_JIT = "/orgs/{org}/actions/runners/generate-jitconfig"
REPO_JIT = "/repos/{owner}/{repo}/actions/runners/generate-jitconfig"
ORG_RUNNERS, REPO_RUNNERS = "/orgs/{org}/actions/runners", "/repos/{owner}/{repo}/actions/runners"
ORG_RUNNER, REPO_RUNNER = ORG_RUNNERS + "/{runner_id}", REPO_RUNNERS + "/{runner_id}"
TOKENS = "/app/installations/{installation_id}/access_tokens"
GROUP = "/orgs/{org}/actions/runner-groups/{runner_group_id}"
ACME_JIT, SHOP_JIT = (
    "/orgs/acme/actions/runners/generate-jitconfig",
    "/repos/acme/shop/actions/runners/generate-jitconfig",
)

CASES = [
    Case("job queued", "GET", JOB, 200, "/repos/acme/shop/actions/jobs/1", _job(1)),
    Case("job completed", "GET", JOB, 200, "/repos/acme/shop/actions/jobs/2", _finished_job),
    Case("run of a push", "GET", RUN, 200, "/repos/acme/shop/actions/runs/30", _job(3)),
    Case(
        "run of a fork's pull request",
        "GET",
        RUN,
        200,
        "/repos/acme/shop/actions/runs/40",
        _job(4, event="pull_request", head_repository="mallory/shop"),
    ),
    Case("org JIT", "POST", ORG_JIT, 201, ACME_JIT, body=JIT),
    Case("org JIT, name taken", "POST", ORG_JIT, 409, ACME_JIT, _taken(), TAKEN),
    Case("org JIT, no labels", "POST", ORG_JIT, 422, ACME_JIT, body={**JIT, "labels": []}),
    Case("org JIT, another org", "POST", ORG_JIT, 404, "/orgs/mallory/actions/runners/generate-jitconfig", body=JIT),
    Case("repo JIT", "POST", REPO_JIT, 201, SHOP_JIT, body=JIT),
    Case("repo JIT, name taken", "POST", REPO_JIT, 409, SHOP_JIT, _taken("acme/shop"), TAKEN),
    Case("repo JIT, no name", "POST", REPO_JIT, 422, SHOP_JIT, body={"runner_group_id": 1, "labels": ["x"]}),
    Case("org runners", "GET", ORG_RUNNERS, 200, "/orgs/acme/actions/runners?per_page=100", _runners),
    Case("org runners, page 2", "GET", ORG_RUNNERS, 200, "/orgs/acme/actions/runners?per_page=2&page=2", _runners),
    Case("org runners by name", "GET", ORG_RUNNERS, 200, "/orgs/acme/actions/runners?name=vpc-i-0b", _runners),
    Case("repo runners", "GET", REPO_RUNNERS, 200, "/repos/acme/shop/actions/runners?per_page=100", _runners),
    Case("delete org runner", "DELETE", ORG_RUNNER, 204, "/orgs/acme/actions/runners/{runner_id}", _one()),
    Case(
        "delete busy org runner", "DELETE", ORG_RUNNER, 422, "/orgs/acme/actions/runners/{runner_id}", _one(busy=True)
    ),
    Case(
        "delete repo runner",
        "DELETE",
        REPO_RUNNER,
        204,
        "/repos/acme/shop/actions/runners/{runner_id}",
        _one("acme/shop"),
    ),
    Case(
        "delete busy repo runner",
        "DELETE",
        REPO_RUNNER,
        422,
        "/repos/acme/shop/actions/runners/{runner_id}",
        _one("acme/shop", busy=True),
    ),
    Case("org installation", "GET", "/orgs/{org}/installation", 200, "/orgs/acme/installation", auth="jwt"),
    Case("installation token", "POST", TOKENS, 201, "/app/installations/777/access_tokens", auth="jwt"),
    Case("installation token, bad JWT", "POST", TOKENS, 401, "/app/installations/777/access_tokens", auth="bad-jwt"),
    Case(
        "installation token, no installation", "POST", TOKENS, 404, "/app/installations/778/access_tokens", auth="jwt"
    ),
    Case("runner group", "GET", GROUP, 200, "/orgs/acme/actions/runner-groups/3", _group),
    Case("default runner group", "GET", GROUP, 200, "/orgs/acme/actions/runner-groups/1"),
    Case(
        "group repositories",
        "GET",
        GROUP + "/repositories",
        200,
        "/orgs/acme/actions/runner-groups/3/repositories",
        _group,
    ),
]


def test_every_operation_has_a_case():
    assert {(m, t) for m, t in OPERATIONS} == {(c.method, c.template) for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_fakes_answer_is_documented_and_matches_githubs_schema(github: GitHub, case: Case):
    op = refs.operation(case.method, case.template)
    path = case.path.format(**case.setup(github))
    assert refs.operation_for(case.method, path.split("?")[0]) == op, "the case's path is an instance of its operation"
    token = {"token": github.token, "jwt": github.jwt, "bad-jwt": github.jwt[:-4] + "AAAA"}[case.auth]
    answer = send(github.fake, case.method, path, token=token, body=case.body)
    assert answer.status == case.status, answer.body
    assert op.documents(answer.status), f"{op.id} does not document {answer.status}: {sorted(op.statuses())}"
    # Success bodies are held closed (no invented field); errors only to what GitHub documents of them.
    schema = op.response_schema(answer.status, closed=answer.status < 300)
    if schema is None:
        assert answer.body is None, f"{op.id} documents no body for {answer.status}"
    else:
        assert refs.problems(answer.body, schema) == []
    if answer.status >= 400:
        assert {"message", "documentation_url"} <= set(answer.body)
    for header in op.response_headers(answer.status):
        if header == "link" and "link" in answer.headers:
            assert re.fullmatch(r'(<[^>]+>; rel="(next|last|first|prev)"(, )?)+', answer.headers["link"])


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/repos/acme/shop/actions/jobs/999", 404),
        ("GET", "/repos/acme/shop/actions/runs/999", 404),
        ("DELETE", "/orgs/acme/actions/runners/999", 404),
        ("DELETE", "/repos/acme/shop/actions/runners/999", 404),
        ("GET", "/orgs/acme/actions/runner-groups/9", 404),
        ("GET", "/orgs/acme/actions/runnerz", 404),
        ("GET", "/repos/acme/shop/actions/jobs/1", 401),
    ],
)
def test_undocumented_errors_still_have_githubs_error_shape(github: GitHub, method: str, path: str, status: int):
    """404 and 401 happen on every route though few operations list them: GitHub's basic-error shape."""
    token = None if status == 401 else github.token
    answer = send(github.fake, method, path, token=token)
    assert answer.status == status
    basic_error = refs.to_json_schema({"$ref": "#/components/schemas/basic-error"}, refs.description(), closed=True)
    assert refs.problems(answer.body, basic_error) == []
    assert answer.body["message"] and answer.body["documentation_url"].startswith("https://docs.github.com/")
    assert answer.body["status"] == str(status)


def test_the_schemas_really_check():
    """The translation is not vacuous: the fake's old bodies fail, nullable admits null, $refs resolve."""
    job = refs.operation("GET", "/repos/{owner}/{repo}/actions/jobs/{job_id}").response_schema(200, closed=True)
    assert job is not None
    old_job = {"id": 1, "run_id": 10, "status": "queued", "conclusion": None, "completed_at": None}
    assert "(body): 'node_id' is a required property" in refs.problems(old_job, job)
    listing = refs.operation("GET", "/orgs/{org}/actions/runners").response_schema(200, closed=True)
    assert listing is not None
    runner = {"id": 1, "name": "r", "os": "Linux", "status": "offline", "busy": False, "labels": [{"name": "vpc"}]}
    assert refs.problems({"total_count": 1, "runners": [runner]}, listing) == []
    assert refs.problems({"total_count": 1, "runners": [{**runner, "version": None}]}, listing) == []  # nullable
    assert refs.problems({"total_count": 1, "runners": [{**runner, "labels": ["vpc"]}]}, listing)  # via $ref
    assert refs.problems({"total_count": 1, "runners": [{**runner, "invented": 1}]}, listing)  # closed
    assert refs.problems({"total_count": 1, "runners": [{**runner, "busy": None}]}, listing)  # not nullable
    run = refs.operation("GET", "/repos/{owner}/{repo}/actions/runs/{run_id}").response_schema(200)
    assert run is not None
    assert any("created_at" in p for p in refs.problems({"created_at": "yesterday"}, run))  # date-time format


# -- the client's own requests are documented operations ----------------------------------------------------
def test_every_request_the_client_makes_is_a_documented_operation_with_a_valid_body(
    github: GitHub, app_key: tuple[str, str]
):
    fake = github.fake
    fake.add_job(5)
    fake.requests.clear()
    client = GitHubClient(fake.url, "acme", AppAuth(fake.app_id, app_key[0]))
    assert client.get_job("acme", "shop", 5, 777) is not None
    assert client.get_run("acme", "shop", 50, 777) is not None
    labels = ("self-hosted", "vpc")
    org = client.generate_jitconfig(name="vpc-i-0org", runner_group_id=1, labels=labels, installation_id=777)
    repo = client.generate_jitconfig(
        name="vpc-i-0repo", runner_group_id=1, labels=labels, installation_id=777, repository="acme/shop"
    )
    assert [r.name for r in client.list_runners()] == ["vpc-i-0org"]
    assert client.delete_runner(org.runner_id) is True
    assert repo.runner_id in fake.runners
    assert fake.requests, "the client went through the fake"
    for request in fake.requests:
        op = refs.operation_for(request.method, request.path)
        assert (op.method, op.template) in OPERATIONS, f"{request.method} {request.path} is not in OPERATIONS"
        assert request.headers.get("x-github-api-version") == API_VERSION
        assert request.headers.get("accept") == "application/vnd.github+json"
        if request.body and (schema := op.request_schema()) is not None:
            assert refs.problems(json.loads(request.body), schema) == [], f"{op.id} request body"
        for name in request.query:
            assert name in op.parameters(), f"{op.id} takes no query parameter {name}"


# -- pagination ------------------------------------------------------------------------------------------
def links(answer: Answer) -> dict[str, str]:
    return {rel: url for url, rel in re.findall(r'<([^>]+)>; rel="(\w+)"', answer.headers.get("link", ""))}


def test_runner_lists_paginate_like_github(github: GitHub):
    for n in range(75):
        github.runner(f"vpc-i-{n:04d}")
    first = github.get("/orgs/acme/actions/runners")
    assert first.body["total_count"] == 75 and len(first.body["runners"]) == 30  # per_page defaults to 30
    rels = links(first)
    assert set(rels) == {"next", "last"}
    org_id = github.fake.owner_id
    assert rels["next"] == f"{github.fake.url}/organizations/{org_id}/actions/runners?per_page=30&page=2"
    assert rels["last"].endswith("page=3")
    # Following the Link (GitHub's own id form) as a client does, to the last page.
    names: list[str] = [r["name"] for r in first.body["runners"]]
    answer = first
    while "next" in links(answer):
        answer = github.get(links(answer)["next"].removeprefix(github.fake.url))
        assert answer.status == 200
        names += [r["name"] for r in answer.body["runners"]]
    assert names == [f"vpc-i-{n:04d}" for n in range(75)]
    assert set(links(answer)) == {"prev", "first"} and len(answer.body["runners"]) == 15
    capped = github.get("/orgs/acme/actions/runners?per_page=500")
    assert len(capped.body["runners"]) == 75  # under the cap of 100: all of them
    for n in range(75, 150):
        github.runner(f"vpc-i-{n:04d}")
    capped = github.get("/orgs/acme/actions/runners?per_page=500")
    assert len(capped.body["runners"]) == 100 and "per_page=100&page=2" in links(capped)["next"]
    beyond = github.get("/orgs/acme/actions/runners?per_page=100&page=9")
    assert beyond.body["runners"] == [] and beyond.body["total_count"] == 150 and "next" not in links(beyond)
    exactly = github.get("/orgs/acme/actions/runners?per_page=75&page=2")
    assert len(exactly.body["runners"]) == 75 and "next" not in links(exactly)
    one = github.get("/orgs/acme/actions/runners?name=vpc-i-0042")
    assert [r["name"] for r in one.body["runners"]] == ["vpc-i-0042"] and one.body["total_count"] == 1


def test_repository_runner_lists_and_group_repositories_paginate_too(github: GitHub):
    for n in range(3):
        github.runner(f"vpc-i-r{n}", repository="acme/shop")
    page = github.get("/repos/acme/shop/actions/runners?per_page=2")
    assert len(page.body["runners"]) == 2 and page.body["total_count"] == 3
    nxt = links(page)["next"].removeprefix(github.fake.url)
    assert re.fullmatch(r"/repositories/\d+/actions/runners\?per_page=2&page=2", nxt)
    assert [r["name"] for r in github.get(nxt).body["runners"]] == ["vpc-i-r2"]
    github.fake.runner_groups[3] = {"visibility": "selected", "repositories": [f"acme/r{n}" for n in range(150)]}
    first = github.get("/orgs/acme/actions/runner-groups/3/repositories?per_page=100")
    assert len(first.body["repositories"]) == 100 and first.body["total_count"] == 150
    rest = github.get(links(first)["next"].removeprefix(github.fake.url))
    assert [r["full_name"] for r in rest.body["repositories"]] == [f"acme/r{n}" for n in range(100, 150)]


# -- API versions -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["2021-01-01", "v3", "2022-11-27", ""])
def test_an_unsupported_api_version_is_a_400(github: GitHub, version: str):
    answer = github.get("/orgs/acme/actions/runners", version=version)
    assert answer.status == 400
    assert "is not a supported version" in answer.body["message"] and '"2022-11-28"' in answer.body["message"]
    assert answer.body["documentation_url"].endswith("/api-versions")


def test_the_supported_version_or_none_is_served_and_named(github: GitHub):
    for version in (API_VERSION, None):
        answer = github.get("/orgs/acme/actions/runners", version=version)
        assert answer.status == 200 and answer.headers["x-github-api-version-selected"] == API_VERSION


# -- repository- versus organization-level runners -------------------------------------------------------
def test_repository_runners_live_only_at_their_repository_and_org_runners_only_at_the_org(github: GitHub):
    fake, token = github.fake, github.token
    org = github.runner("vpc-i-0org")
    repo = github.runner("vpc-i-0repo", repository="acme/shop")
    other = github.runner("vpc-i-0other", repository="acme/billing")

    def names(path: str) -> list[str]:
        answer = github.get(path)
        assert answer.status == 200
        return [r["name"] for r in answer.body["runners"]]

    assert names("/orgs/acme/actions/runners") == ["vpc-i-0org"]
    assert names("/repos/acme/shop/actions/runners") == ["vpc-i-0repo"]
    assert names("/repos/acme/billing/actions/runners") == ["vpc-i-0other"]
    assert names("/repos/acme/website/actions/runners") == []
    assert github.get(f"/orgs/acme/actions/runners/{repo.id}").status == 404
    assert github.get(f"/repos/acme/shop/actions/runners/{repo.id}").status == 200
    assert send(fake, "DELETE", f"/orgs/acme/actions/runners/{repo.id}", token=token).status == 404
    assert send(fake, "DELETE", f"/repos/acme/billing/actions/runners/{repo.id}", token=token).status == 404
    assert send(fake, "DELETE", f"/repos/acme/shop/actions/runners/{org.id}", token=token).status == 404
    assert repo.id in fake.runners and org.id in fake.runners
    assert send(fake, "DELETE", f"/repos/acme/shop/actions/runners/{repo.id}", token=token).status == 204
    assert send(fake, "DELETE", f"/orgs/acme/actions/runners/{org.id}", token=token).status == 204
    assert list(fake.runners) == [other.id]
    # A name is unique within its level: the organization and a repository may each have one.
    assert github.runner("vpc-i-0other").repository is None


def test_logins_and_repository_names_compare_case_insensitively(github: GitHub):
    github.fake.add_job(6)
    assert github.get("/repos/ACME/Shop/actions/jobs/6").status == 200
    assert github.get("/orgs/Acme/actions/runners").status == 200
    assert github.get("/repos/mallory/shop/actions/jobs/6").status == 404


# -- error bodies -----------------------------------------------------------------------------------------
def test_4xx_bodies_carry_message_and_documentation_url(github: GitHub):
    fake, token = github.fake, github.token
    github.runner("vpc-i-0dup")
    answers = [
        send(fake, "POST", ACME_JIT, token=token, body={**JIT, "name": "vpc-i-0dup"}),
        send(fake, "POST", ACME_JIT, token=token, body={**JIT, "labels": "vpc"}),
        send(fake, "POST", ACME_JIT, token=token, body={**JIT, "runner_group_id": "1"}),
        send(fake, "GET", "/orgs/acme/actions/runners", token="ghs_forged"),
        send(fake, "GET", "/orgs/acme/installation", token=token),  # an installation token is not the App's JWT
        github.get("/repos/acme/shop/actions/jobs/424242"),
        github.get("/orgs/acme/actions/runners", version="1999-01-01"),
    ]
    assert [a.status for a in answers] == [409, 422, 422, 401, 401, 404, 400]
    for answer in answers:
        assert isinstance(answer.body["message"], str) and answer.body["message"]
        assert answer.body["documentation_url"].startswith("https://docs.github.com/rest")
    assert answers[0].body["message"] == "Already exists - A runner with the name vpc-i-0dup already exists."
    assert answers[1].body["errors"] and "labels" in answers[1].body["message"]
    fake.inject("GET", r"/actions/runners$", 403, body={"message": "Resource not accessible by integration"})
    injected = github.get("/orgs/acme/actions/runners")
    assert injected.status == 403 and injected.body["message"] == "Resource not accessible by integration"
    assert injected.body["documentation_url"].startswith("https://docs.github.com/")


# -- rate limits ------------------------------------------------------------------------------------------
def test_every_answer_carries_the_rate_limit_headers_and_the_limit_is_enforced(github: GitHub):
    first = github.get("/orgs/acme/actions/runners")
    assert first.headers["x-ratelimit-limit"] == "5000" and first.headers["x-ratelimit-resource"] == "core"
    second = github.get("/orgs/acme/actions/runners")
    assert int(second.headers["x-ratelimit-remaining"]) == int(first.headers["x-ratelimit-remaining"]) - 1
    assert int(second.headers["x-ratelimit-reset"]) > time.time()
    github.fake.rate_limit = int(second.headers["x-ratelimit-used"]) + 1
    assert github.get("/orgs/acme/actions/runners").status == 200
    exhausted = github.get("/orgs/acme/actions/runners")
    assert exhausted.status == 403 and exhausted.headers["x-ratelimit-remaining"] == "0"
    assert "rate limit exceeded" in exhausted.body["message"]


@pytest.mark.parametrize("status", [403, 429])
def test_a_primary_rate_limit_can_be_injected(github: GitHub, status: int):
    github.fake.inject_primary_rate_limit("GET", r"/actions/runners$", reset_in_s=120, status=status)
    answer = github.get("/orgs/acme/actions/runners")
    assert answer.status == status and answer.headers["x-ratelimit-remaining"] == "0"
    assert 110 <= int(answer.headers["x-ratelimit-reset"]) - time.time() <= 121
    assert "retry-after" not in answer.headers
    assert "rate limit exceeded" in answer.body["message"] and answer.body["documentation_url"]
    assert github.get("/orgs/acme/actions/runners").status == 200  # once


@pytest.mark.parametrize("status", [403, 429])
@pytest.mark.parametrize("retry_after", [30, None])
def test_a_secondary_rate_limit_can_be_injected_with_or_without_retry_after(
    github: GitHub, status: int, retry_after: int | None
):
    fake = github.fake
    fake.inject_secondary_rate_limit("GET", r"/actions/jobs/\d+$", status=status, retry_after=retry_after, times=2)
    github.fake.add_job(7)
    for _ in range(2):
        answer = github.get("/repos/acme/shop/actions/jobs/7")
        assert answer.status == status
        assert answer.headers.get("retry-after") == (str(retry_after) if retry_after else None)
        assert answer.headers["x-ratelimit-remaining"] != "0", "not the primary limit"
        assert "secondary rate limit" in answer.body["message"]
        assert answer.body["documentation_url"].endswith("#about-secondary-rate-limits")
    assert github.get("/repos/acme/shop/actions/jobs/7").status == 200


# -- the fake's test controls keep working ----------------------------------------------------------------
def test_the_test_controls_show_in_the_answers(github: GitHub):
    fake = github.fake
    fake.add_job(8, repo="billing", labels=["self-hosted", "vpc", "gpu"], run_id=81, head_branch="release/1")
    job = github.get("/repos/acme/billing/actions/jobs/8").body
    assert (job["status"], job["run_id"], job["labels"], job["head_branch"]) == (
        "queued",
        81,
        ["self-hosted", "vpc", "gpu"],
        "release/1",
    )
    assert github.get("/repos/acme/shop/actions/jobs/8").status == 404  # another repository's job
    runner = github.runner("vpc-i-0ctl")
    fake.set_job_status(8, "in_progress", runner=runner)
    job = github.get("/repos/acme/billing/actions/jobs/8").body
    assert (job["status"], job["runner_name"], job["runner_group_id"]) == ("in_progress", "vpc-i-0ctl", 1)
    assert github.get("/repos/acme/billing/actions/runs/81").body["status"] == "in_progress"
    fake.set_job_status(8, "completed", "success", "2026-11-21T10:05:00Z")
    job = github.get("/repos/acme/billing/actions/jobs/8").body
    assert (job["conclusion"], job["completed_at"]) == ("success", "2026-11-21T10:05:00Z")
    run = github.get("/repos/acme/billing/actions/runs/81").body
    assert (run["status"], run["conclusion"], run["head_branch"]) == ("completed", "success", "release/1")
    fake.add_job(9, event="pull_request", head_repository="mallory/billing")
    run = github.get("/repos/acme/shop/actions/runs/90").body
    assert (run["event"], run["head_repository"]["full_name"], run["head_repository"]["fork"]) == (
        "pull_request",
        "mallory/billing",
        True,
    )
    assert run["repository"]["full_name"] == "acme/shop"
    assert fake.runner_named("vpc-i-0ctl") is runner
    fake.personal_token = "github_pat_11CONTROL"
    assert send(fake, "GET", "/orgs/acme/actions/runners", token="github_pat_11CONTROL").status == 200
    fake.runner_groups[4] = {"name": "open", "visibility": "all", "allows_public_repositories": True}
    group = github.get("/orgs/acme/actions/runner-groups/4").body
    assert (group["name"], group["visibility"], group["allows_public_repositories"], group["default"]) == (
        "open",
        "all",
        True,
        False,
    )
    assert fake.count("GET", r"/actions/runner-groups/4$") == 1
    fake.inject("GET", r"/actions/runner-groups/4$", 502, times=2)
    assert [github.get("/orgs/acme/actions/runner-groups/4").status for _ in range(3)] == [502, 502, 200]


def test_github_enterprise_server_prefix_shows_in_urls_and_links(app_key: tuple[str, str]):
    fake = FakeGitHub(owner="acme", app_public_key_pem=app_key[1], path_prefix="/api/v3")
    fake.start()
    try:
        assert fake.url.endswith("/api/v3")
        jwt = AppAuth(fake.app_id, app_key[0]).jwt()
        token = send(fake, "POST", "/app/installations/777/access_tokens", token=jwt).body["token"]
        for n in range(3):
            fake._jit(json.dumps({"name": f"r{n}", "runner_group_id": 1, "labels": ["vpc"]}).encode())
        page = send(fake, "GET", "/orgs/acme/actions/runners?per_page=2", token=token)
        nxt = links(page)["next"]
        assert nxt.startswith(fake.url + "/organizations/")
        assert len(send(fake, "GET", nxt.removeprefix(fake.url), token=token).body["runners"]) == 1
        fake.add_job(1)
        assert send(fake, "GET", "/repos/acme/shop/actions/jobs/1", token=token).body["url"].startswith(fake.url)
        outside = HTTP.request("GET", fake.url.removesuffix("/api/v3") + "/orgs/acme/actions/runners")
        assert outside.status == 404 and json.loads(outside.data)["documentation_url"]
    finally:
        fake.stop()


def test_runner_bodies_carry_labels_objects_and_the_group_of_org_runners(github: GitHub):
    github.runner("vpc-i-0lab")
    github.runner("vpc-i-0rlab", repository="acme/shop")
    (org,) = github.get("/orgs/acme/actions/runners").body["runners"]
    (repo,) = github.get("/repos/acme/shop/actions/runners").body["runners"]
    assert org["labels"] == [
        {"id": 1, "name": "self-hosted", "type": "read-only"},
        {"id": 2, "name": "vpc", "type": "custom"},
    ]
    assert org["runner_group_id"] == 1 and "runner_group_id" not in repo
    assert org["ephemeral"] is True and org["version"] is None and org["status"] == "offline"
