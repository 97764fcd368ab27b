"""The webhook receiver: signatures, parsing, pool matching, deduplication, and the Lambda handler."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runner.control_plane.pools import Pool, match_pool
from runner.control_plane.webhook import JobMessage, receive, signature_is_valid
from tests.fix_control_plane import WEBHOOK_SECRET, Aws, control_plane_env, delivery, event, sign

POOL = Pool("vpc", ("self-hosted", "linux", "x64", "vpc"), "vpc")


def collect() -> tuple[list[JobMessage], object]:
    queued: list[JobMessage] = []
    return queued, queued.append


def test_valid_queued_job_is_enqueued_compactly():
    queued, enqueue = collect()
    headers, body = delivery(event("workflow_job_queued.json"), "d-1")
    response = receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue)
    assert (response.status, response.message) == (202, "queued job 29679449 for pool vpc")
    assert queued == [
        JobMessage(
            job_id=29679449,
            run_id=10424193301,
            repository="acme/shop",
            owner="acme",
            repo="shop",
            installation_id=777,
            labels=("self-hosted", "vpc"),
            delivery_id="d-1",
            pool="vpc",
        )
    ]
    assert JobMessage.from_json(queued[0].to_json()) == queued[0]


@pytest.mark.parametrize(
    "signature", [None, "", "sha256=", "sha1=abc", sign(b"other body"), sign(b"x", secret=b"wrong-secret")]
)
def test_bad_or_missing_signature_is_401_and_enqueues_nothing(signature):
    queued, enqueue = collect()
    headers, body = delivery(event("workflow_job_queued.json"), "d-1")
    if signature is None:
        del headers["X-Hub-Signature-256"]
    else:
        headers["X-Hub-Signature-256"] = signature
    assert receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue).status == 401
    assert queued == []


def test_signature_check_uses_the_raw_body():
    body = b'{"a": 1}'
    assert signature_is_valid(WEBHOOK_SECRET, body, sign(body))
    assert not signature_is_valid(WEBHOOK_SECRET, b'{"a":1}', sign(body))


@pytest.mark.parametrize(
    ("mutate", "status", "message"),
    [
        (lambda p: p.pop("workflow_job"), 400, "workflow_job"),
        (lambda p: p["workflow_job"].pop("id"), 400, "workflow_job.id"),
        (lambda p: p["workflow_job"].__setitem__("id", True), 400, "workflow_job.id"),
        (lambda p: p["workflow_job"].__setitem__("labels", "vpc"), 400, "workflow_job.labels"),
        (lambda p: p["repository"].pop("full_name"), 400, "repository.full_name"),
        (lambda p: p.__setitem__("action", "waiting"), 200, "ignored action waiting"),
        # Traced when it carries the time; a delivery is never refused for a missing one.
        (lambda p: p.__setitem__("action", "completed"), 200, "not traced (no workflow_job.completed_at)"),
        # A time a trace line cannot print (year 10000 in UTC): refused before anything is queued, or untraced.
        (lambda p: p["workflow_job"].__setitem__("created_at", "9999-12-31T23:59:59-01:00"), 400, "created_at"),
        (
            lambda p: (
                p.update(action="completed")
                or p["workflow_job"].update(started_at="2026-11-21T10:00:00Z", completed_at="9999-12-31T23:59:59-01:00")
            ),
            200,
            "not traced (no workflow_job.completed_at)",
        ),
    ],
)
def test_malformed_or_other_payloads(mutate, status, message):
    queued, enqueue = collect()
    payload = event("workflow_job_queued.json")
    mutate(payload)
    headers, body = delivery(payload, "d-1")
    response = receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue)
    assert response.status == status and message in response.message
    assert queued == []


def test_not_json_is_400_and_ping_and_other_events_are_200():
    _, enqueue = collect()
    body = b"{not json"
    headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": "d", "X-Hub-Signature-256": sign(body)}
    assert receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue).status == 400
    headers, body = delivery(event("ping.json"), "d-2", event_name="ping")
    assert receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue).message == "pong"
    headers, body = delivery({"action": "opened"}, "d-3", event_name="pull_request")
    assert receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue).status == 200


def test_queue_failure_is_503_so_the_delivery_can_be_redelivered():
    def broken(_job: JobMessage) -> None:
        raise ConnectionError("sqs down")

    headers, body = delivery(event("workflow_job_queued.json"), "d-1")
    assert receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=broken).status == 503


GPU = Pool("vpc-gpu", ("self-hosted", "linux", "x64", "vpc-gpu", "gpu"), "vpc-gpu")


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["self-hosted", "vpc"], "vpc"),
        (["self-hosted", "VPC", "Linux"], "vpc"),  # case-insensitive, like GitHub
        (["vpc"], "vpc"),
        (["self-hosted", "linux"], None),  # the stealing case: no pool's key label, so no pool
        (["self-hosted", "linux", "x64"], None),
        (["self-hosted", "vpc", "gpu"], None),  # a vpc runner could never take it
        (["self-hosted", "vpc-gpu", "gpu"], "vpc-gpu"),
        (["self-hosted", "vpc-gpu", "vpc"], None),  # no single pool offers both
    ],
)
def test_pool_matching_requires_the_key_label_and_only_offered_labels(labels, expected):
    pool = match_pool(labels, [POOL, GPU])
    assert (pool.name if pool else None) == expected


HEADER_NAMES = st.sampled_from(
    ["X-Hub-Signature-256", "x-hub-signature-256", "X-GitHub-Event", "X-GitHub-Delivery", "Content-Type", "X-Other"]
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(body=st.binary(max_size=2048), headers=st.dictionaries(HEADER_NAMES, st.text(max_size=80), max_size=5))
def test_nothing_without_a_valid_signature_is_ever_enqueued(body, headers):
    queued, enqueue = collect()
    response = receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue)
    assert queued == []
    assert response.status == 401 or signature_is_valid(
        WEBHOOK_SECRET, body, headers.get("X-Hub-Signature-256") or headers.get("x-hub-signature-256")
    )


@given(
    body=st.one_of(
        st.binary(max_size=512),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
            ),
            max_leaves=20,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_signed_garbage_gets_a_4xx_or_200_never_a_crash(body):
    queued, enqueue = collect()
    headers = {"X-GitHub-Event": "workflow_job", "X-GitHub-Delivery": "d", "X-Hub-Signature-256": sign(body)}
    response = receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue)
    assert response.status in (200, 202, 400)
    assert (response.status == 202) == bool(queued)


def test_lambda_handler_end_to_end_with_duplicate_deliveries(aws: Aws, monkeypatch: pytest.MonkeyPatch):
    from runner.control_plane import handlers

    for key, value in control_plane_env(aws, "http://127.0.0.1:9").items():
        monkeypatch.setenv(key, value)
    handlers._config.cache_clear()
    handlers._secret.cache_clear()
    fresh = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    headers, body = delivery(
        event("workflow_job_queued.json", workflow_job__created_at=fresh), "3c9b1f00-dead-beef-0000-000000000001"
    )
    lambda_event = {
        "version": "2.0",
        "headers": {k.lower(): v for k, v in headers.items()},
        "body": base64.b64encode(body).decode(),
        "isBase64Encoded": True,
    }
    assert handlers.webhook_handler(lambda_event, None)["statusCode"] == 202
    assert handlers.webhook_handler(lambda_event, None)["statusCode"] == 202  # GitHub redelivered it
    messages = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1 and json.loads(messages[0]["Body"])["job_id"] == 29679449
    bad = dict(lambda_event, headers={**lambda_event["headers"], "x-hub-signature-256": sign(b"forged")})
    assert handlers.webhook_handler(bad, None)["statusCode"] == 401
    handlers._config.cache_clear()
    handlers._secret.cache_clear()


def test_a_replayed_progress_delivery_is_not_traced(capsys: pytest.CaptureFixture[str]):
    """in_progress and completed deliveries only feed the trace; an old one replayed must not skew it."""
    _, enqueue = collect()
    payload = event("workflow_job_queued.json", action="completed")
    payload["workflow_job"].update(started_at="2026-11-21T10:00:00Z", completed_at="2026-11-21T10:05:00Z")
    headers, body = delivery(payload, "d-11")
    done = datetime(2026, 11, 21, 10, 5, tzinfo=UTC).timestamp()
    replay = receive(
        headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue, max_age_s=3600, now=lambda: done + 7200
    )
    assert replay.status == 200 and "ignored: job completed 7200 s ago" in replay.message
    assert '"trace"' not in capsys.readouterr().out
    fresh = receive(
        headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue, max_age_s=3600, now=lambda: done + 5
    )
    assert fresh.status == 200 and "traced" in fresh.message


def test_a_replayed_delivery_of_an_old_job_is_not_enqueued():
    """A captured signed delivery replayed after FIFO's 5-minute dedup window."""
    queued, enqueue = collect()
    headers, body = delivery(event("workflow_job_queued.json", workflow_job__created_at="2026-11-21T10:00:00Z"), "d-9")
    created = datetime(2026, 11, 21, 10, 0, tzinfo=UTC).timestamp()
    fresh = receive(
        headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue, max_age_s=3600, now=lambda: created + 60
    )
    assert fresh.status == 202 and len(queued) == 1
    replay = receive(
        headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue, max_age_s=3600, now=lambda: created + 7200
    )
    assert replay.status == 200 and "over 3600 s" in replay.message and len(queued) == 1


def test_a_delivery_without_created_at_names_the_field_when_age_is_checked():
    queued, enqueue = collect()
    payload = event("workflow_job_queued.json")
    del payload["workflow_job"]["created_at"]
    headers, body = delivery(payload, "d-10")
    answer = receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue, max_age_s=3600)
    assert answer.status == 400 and "workflow_job.created_at" in answer.message and queued == []


def test_form_encoded_deliveries_are_accepted_and_signed_over_the_raw_body():
    """Organization and repository webhooks default to content type form: payload=<urlencoded JSON>."""
    queued, enqueue = collect()
    body = urlencode({"payload": json.dumps(event("workflow_job_queued.json"))}).encode()
    headers = {
        "X-GitHub-Event": "workflow_job",
        "X-GitHub-Delivery": "d-11",
        "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    assert receive(headers, body, secret=WEBHOOK_SECRET, pools=[POOL], enqueue=enqueue).status == 202
    assert queued[0].job_id == 29679449
    garbled = receive(
        {**headers, "X-Hub-Signature-256": sign(b"payload=%7B")},
        b"payload=%7B",
        secret=WEBHOOK_SECRET,
        pools=[POOL],
        enqueue=enqueue,
    )
    assert garbled.status == 400 and "not JSON" in garbled.message and len(queued) == 1
