"""The receiver on GitHub's own example deliveries, and the sample events held to them.

``@octokit/webhooks-examples`` carries the ``workflow_job`` examples GitHub's documentation shows (for
api.github.com and GitHub Enterprise Server). Each goes through the real receiver, signed, as JSON and
as a form-encoded organization webhook: action ``queued`` whose labels select a pool is 202, any other
action or labels of no pool is 200; never a 4xx for a well-formed delivery, a 5xx or a crash.
The sample events in tests/control_plane/events are derived from those examples and must carry every
field they carry.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from runner.control_plane.pools import Pool, match_pool
from runner.control_plane.webhook import JobMessage, receive
from tests.control_plane.github_references import webhook_examples
from tests.fix_control_plane import EVENTS, WEBHOOK_SECRET, delivery, sign

POOL = Pool("vpc", ("self-hosted", "linux", "x64", "vpc"), "vpc")
EXAMPLES = list(webhook_examples("workflow_job"))
ACTIONS = {"queued", "waiting", "in_progress", "completed"}  # the event's documented actions


def pool_for(labels: list[str]) -> Pool:
    """A pool whose runners carry exactly the example's labels, keyed on its last one."""
    return Pool("example", tuple(labels), labels[-1])


def expected(payload: dict[str, Any], pools: list[Pool]) -> int:
    queued = payload["action"] == "queued"
    return 202 if queued and match_pool(payload["workflow_job"]["labels"], pools) else 200


def run(payload: dict[str, Any], pools: list[Pool], *, form: bool = False, **options: Any) -> tuple[int, list[Any]]:
    queued: list[JobMessage] = []
    if form:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        headers = {
            "X-GitHub-Event": "workflow_job",
            "X-GitHub-Delivery": "d-form",
            "X-Hub-Signature-256": sign(body),
            "Content-Type": "application/x-www-form-urlencoded",
        }
    else:
        headers, body = delivery(payload, "72d3162e-cc78-11e3-81ab-4c9367dc0958")
    answer = receive(headers, body, secret=WEBHOOK_SECRET, pools=pools, enqueue=queued.append, **options)
    return answer.status, queued


def test_the_examples_cover_every_action():
    assert len(EXAMPLES) >= 8
    assert {payload["action"] for _, payload in EXAMPLES} == ACTIONS
    assert any(p["action"] == "queued" and "installation" in p for _, p in EXAMPLES)


@pytest.mark.parametrize(("where", "payload"), EXAMPLES, ids=[where for where, _ in EXAMPLES])
@pytest.mark.parametrize("form", [False, True], ids=["json", "form"])
def test_every_published_example_gets_the_documented_answer(where: str, payload: dict[str, Any], form: bool):
    labels = payload["workflow_job"]["labels"]
    for pools in ([POOL], [POOL, pool_for(labels)]):
        status, queued = run(payload, pools, form=form)
        assert status == expected(payload, pools), (where, payload["action"], labels)
        assert len(queued) == (status == 202)
        if queued:
            (message,) = queued
            job, repository = payload["workflow_job"], payload["repository"]
            assert (message.job_id, message.run_id, message.labels) == (job["id"], job["run_id"], tuple(labels))
            assert (message.repository, message.owner) == (repository["full_name"], repository["owner"]["login"])
            installation = payload.get("installation")
            assert message.installation_id == (installation["id"] if installation else None)
    # The age check reads the example's created_at, as GitHub formats it (an old example has none: only a
    # queued delivery is looked at that far, and one without created_at would be a 400 naming it).
    pools = [pool_for(labels)]
    if "created_at" not in payload["workflow_job"]:
        assert payload["action"] != "queued"
        assert run(payload, pools, max_age_s=3600)[0] == 200
        return
    created = datetime.fromisoformat(payload["workflow_job"]["created_at"].replace("Z", "+00:00")).timestamp()
    fresh, _ = run(payload, pools, max_age_s=3600, now=lambda: created + 60)
    assert fresh == expected(payload, pools)
    replayed, queued = run(payload, pools, max_age_s=3600, now=lambda: created + 7200)
    assert replayed == 200 and queued == []


# -- the sample events --------------------------------------------------------------------------------------
def keys_missing(sample: Any, example: Any, where: str = "") -> list[str]:
    """Every key the example carries (at any depth, through the first item of lists) the sample lacks."""
    if isinstance(example, dict) and isinstance(sample, dict):
        missing = [f"{where}.{k}".lstrip(".") for k in example if k not in sample]
        return missing + [
            m for k in example if k in sample for m in keys_missing(sample[k], example[k], f"{where}.{k}")
        ]
    if isinstance(example, list) and isinstance(sample, list) and example and sample:
        return keys_missing(sample[0], example[0], f"{where}[0]")
    return []


def sample(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return data


@pytest.mark.parametrize(
    ("name", "action"), [("workflow_job_queued.json", "queued"), ("workflow_job_in_progress.json", "in_progress")]
)
def test_the_sample_events_carry_every_field_of_the_published_examples(name: str, action: str):
    ours = sample(name)
    same_action = [p for _, p in EXAMPLES if p["action"] == action]
    assert same_action, f"no published {action} example"
    for example in same_action:
        parts = {k: v for k, v in example.items() if k != "deployment"}  # only a job with an environment has one
        assert keys_missing(ours, parts) == [], "missing from the sample"
    with_org = [p for _, p in EXAMPLES if "organization" in p]
    assert keys_missing(ours["organization"], with_org[0]["organization"]) == []
    if action == "queued":
        (deployment,) = [p["deployment"] for p in same_action if "deployment" in p]
        assert keys_missing(ours["deployment"], deployment) == []
    # And nothing GitHub does not send at the top level.
    assert set(ours) <= {k for _, p in EXAMPLES for k in p}


def test_the_sample_events_keep_what_the_tests_depend_on():
    queued, in_progress = sample("workflow_job_queued.json"), sample("workflow_job_in_progress.json")
    for event, status in ((queued, "queued"), (in_progress, "in_progress")):
        job, repository = event["workflow_job"], event["repository"]
        assert event["action"] == job["status"] == status
        assert (job["id"], job["run_id"], job["labels"]) == (29679449, 10424193301, ["self-hosted", "vpc"])
        assert (repository["full_name"], repository["name"], repository["owner"]["login"]) == (
            "acme/shop",
            "shop",
            "acme",
        )
        assert event["installation"]["id"] == 777 and event["organization"]["login"] == "acme"
        assert job["run_url"].endswith(f"/repos/acme/shop/actions/runs/{job['run_id']}")
        assert job["url"].endswith(f"/repos/acme/shop/actions/jobs/{job['id']}")
    assert queued["workflow_job"]["runner_id"] is None and in_progress["workflow_job"]["runner_name"]
    assert run(queued, [POOL])[0] == 202 and run(in_progress, [POOL])[0] == 200
