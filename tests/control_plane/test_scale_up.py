"""Scale-up: job message -> one instance with a JIT runner, against moto and the fake GitHub."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from runner.control_plane.errors import RetryLater
from runner.control_plane.scale_up import process_batch
from runner.control_plane.webhook import JobMessage, receive
from simulator.fake_github import FakeGitHub
from tests.fix_control_plane import WEBHOOK_SECRET, Aws, Plane, delivery, event, make_plane

LABELS = ("self-hosted", "linux", "x64", "vpc")


def batch(records, scale_up, requeue, dead_letter=None):
    """process_batch, failing the test on any dead-lettering it did not expect."""
    refuse = dead_letter or (lambda body, reason: pytest.fail(f"dead-lettered: {reason}"))
    return process_batch(records, scale_up, requeue, refuse)


def job(job_id: int, repo: str = "shop") -> JobMessage:
    return JobMessage(
        job_id=job_id,
        run_id=job_id * 10,
        repository=f"acme/{repo}",
        owner="acme",
        repo=repo,
        installation_id=777,
        labels=("self-hosted", "vpc"),
        delivery_id=f"d-{job_id}",
        pool="test-fleet",
    )


def tags(instance: dict[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in instance.get("Tags", [])}


def test_queued_job_gets_one_tagged_instance_a_jit_runner_and_a_private_parameter(
    plane: Plane, aws: Aws, fake_github: FakeGitHub
):
    fake_github.add_job(1)
    result = plane.scale_up().handle(job(1))
    assert result.outcome == "launched"
    (instance,) = aws.live_instances()
    assert instance["InstanceId"] == result.instance_id
    assert instance["SubnetId"] in aws.subnets and instance["InstanceType"] in ("t3.small", "t3a.small")
    runner = fake_github.runner_named(f"vpc-{result.instance_id}")
    assert runner is not None and tuple(runner.labels) == LABELS and runner.runner_group_id == 1
    assert (
        tags(instance).items()
        >= {
            "vpc-runners:fleet": "test-fleet",
            "vpc-runners:job-id": "1",
            "vpc-runners:repository": "acme/shop",
            "vpc-runners:runner-id": str(runner.id),
            "vpc-runners:runner-name": runner.name,
        }.items()
    )
    name = f"/vpc-runners/test-fleet/jit/{result.instance_id}"
    parameter = aws.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]
    assert parameter["Type"] == "SecureString"
    assert json.loads(base64.b64decode(parameter["Value"]))["runner_id"] == runner.id
    param_tags = aws.ssm.list_tags_for_resource(ResourceType="Parameter", ResourceId=name)["TagList"]
    assert param_tags == [{"Key": "InstanceId", "Value": result.instance_id}]


def test_duplicate_message_never_launches_a_second_instance(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    fake_github.add_job(2)
    first = plane.scale_up().handle(job(2))
    second = plane.scale_up().handle(job(2))  # a later invocation, SQS redelivery
    assert (first.outcome, second.outcome) == ("launched", "duplicate") and second.instance_id == first.instance_id
    assert len(aws.live_instances()) == 1 and len(fake_github.runners) == 1


@pytest.mark.parametrize("status", ["in_progress", "completed", None])
def test_job_no_longer_queued_launches_nothing(plane: Plane, aws: Aws, fake_github: FakeGitHub, status):
    if status:
        fake_github.add_job(3, status=status)
    assert plane.scale_up().handle(job(3)).outcome == "not-queued"
    assert aws.live_instances() == [] and fake_github.runners == {}


def _receive_all(aws: Aws) -> list[dict[str, Any]]:
    records = []
    while batch := aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        records += [
            {"messageId": m["MessageId"], "body": m["Body"], "receiptHandle": m["ReceiptHandle"]} for m in batch
        ]
    return records


def test_burst_of_50_jobs_with_max_10_runners(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    for n in range(1, 51):
        fake_github.add_job(n)
        headers, body = delivery(
            event("workflow_job_queued.json", workflow_job__id=n, workflow_job__run_id=n * 10), f"d-{n}"
        )

        def enqueue(j: JobMessage) -> None:
            aws.sqs.send_message(
                QueueUrl=aws.queue_url,
                MessageBody=j.to_json(),
                MessageGroupId=str(j.job_id),
                MessageDeduplicationId=j.delivery_id,
            )

        assert receive(headers, body, secret=WEBHOOK_SECRET, pools=plane.config.pools, enqueue=enqueue).status == 202
    records = _receive_all(aws)
    assert len(records) == 50
    requeued: list[tuple[str, int]] = []
    scale_up = plane.scale_up()  # one invocation's worth of state, reused across its batches
    failures = []
    for i in range(0, 50, 10):
        failures += batch(records[i : i + 10], scale_up, lambda r, d: requeued.append((r, d)))["batchItemFailures"]
    live = aws.live_instances()
    assert len(live) == 10
    assert len({tags(i)["vpc-runners:job-id"] for i in live}) == 10  # ten different jobs
    assert len(failures) == 40 and len(requeued) == 40 and all(d == 30 for _, d in requeued)

    # Ten jobs finish: their instances terminate. The retried messages launch exactly ten more.
    done = [i["InstanceId"] for i in live]
    for i in live:
        fake_github.set_job_status(int(tags(i)["vpc-runners:job-id"]), "completed")
    aws.ec2.terminate_instances(InstanceIds=done)
    retry = [r for r in records if r["messageId"] in {f["itemIdentifier"] for f in failures}]
    second = batch(retry, plane.scale_up(), lambda r, d: None)["batchItemFailures"]
    assert len(second) == 30
    launched_jobs = [tags(i)["vpc-runners:job-id"] for i in aws.live_instances()]
    assert len(launched_jobs) == 10 and len(set(launched_jobs)) == 10


class CapacityForSpot:
    """EC2 that has no spot capacity: moto cannot produce capacity errors, so this wraps its client
    and answers spot CreateFleet requests the way EC2 does when the pools are empty."""

    def __init__(self, ec2: Any, on_demand_too: bool = False) -> None:
        self._ec2, self.on_demand_too, self.requests = ec2, on_demand_too, []

    def create_fleet(self, **request: Any) -> dict[str, Any]:
        kind = request["TargetCapacitySpecification"]["DefaultTargetCapacityType"]
        self.requests.append(kind)
        if kind == "spot" or self.on_demand_too:
            return {
                "FleetId": "fleet-x",
                "Instances": [],
                "Errors": [
                    {"ErrorCode": "InsufficientInstanceCapacity", "ErrorMessage": "no capacity", "Lifecycle": kind}
                ],
            }
        return self._ec2.create_fleet(**request)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ec2, name)


def test_spot_without_capacity_falls_back_to_on_demand(aws: Aws, fake_github: FakeGitHub, app_key):
    plane = make_plane(aws, fake_github, app_key[0], SPOT="true")
    plane.fleet.ec2 = CapacityForSpot(aws.ec2)
    fake_github.add_job(5)
    assert plane.scale_up().handle(job(5)).outcome == "launched"
    assert plane.fleet.ec2.requests == ["spot", "on-demand"]
    assert len(aws.live_instances()) == 1


def test_no_capacity_anywhere_goes_back_to_the_queue(aws: Aws, fake_github: FakeGitHub, app_key):
    plane = make_plane(aws, fake_github, app_key[0], SPOT="true")
    plane.fleet.ec2 = CapacityForSpot(aws.ec2, on_demand_too=True)
    fake_github.add_job(6)
    requeued = []
    record = {"messageId": "m6", "body": job(6).to_json(), "receiptHandle": "r6"}
    result = batch([record], plane.scale_up(), lambda r, d: requeued.append((r, d)))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m6"}]} and requeued == [("r6", 60)]
    assert aws.live_instances() == [] and fake_github.runners == {}


def test_throttled_launch_is_retried_later(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    class Throttled(CapacityForSpot):
        def create_fleet(self, **request: Any) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "slow down"}}, "CreateFleet")

    plane.fleet.ec2 = Throttled(aws.ec2)
    fake_github.add_job(7)
    with pytest.raises(RetryLater, match="throttled"):
        plane.scale_up().handle(job(7))


def test_jit_failure_terminates_the_instance_and_the_retry_succeeds(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    fake_github.add_job(8)
    fake_github.inject("POST", r"generate-jitconfig$", 500)
    record = {"messageId": "m8", "body": job(8).to_json(), "receiptHandle": "r8"}
    assert batch([record], plane.scale_up(), lambda r, d: None)["batchItemFailures"] == [{"itemIdentifier": "m8"}]
    assert aws.live_instances() == []
    assert aws.ssm.get_parameters_by_path(Path="/vpc-runners/test-fleet/jit")["Parameters"] == []
    assert batch([record], plane.scale_up(), lambda r, d: None)["batchItemFailures"] == []
    assert len(aws.live_instances()) == 1 and len(fake_github.runners) == 1


def test_parameter_failure_also_deletes_the_runner(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    fake_github.add_job(9)

    class NoSsm:
        def __init__(self, ssm: Any) -> None:
            self._ssm = ssm

        def put_parameter(self, **_: Any) -> None:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "rate"}}, "PutParameter")

        def __getattr__(self, name: str) -> Any:
            return getattr(self._ssm, name)

    plane.jit.ssm = NoSsm(aws.ssm)
    with pytest.raises(RetryLater, match="instance terminated"):
        plane.scale_up().handle(job(9))
    assert aws.live_instances() == [] and fake_github.runners == {}


def test_rate_limits_are_waited_out_when_short(plane: Plane, fake_github: FakeGitHub):
    fake_github.add_job(10)
    fake_github.inject("GET", r"/actions/jobs/10$", 429, headers={"retry-after": "3"})
    fake_github.inject(
        "GET", r"/actions/jobs/10$", 403, headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "0"}
    )
    assert plane.scale_up().handle(job(10)).outcome == "launched"
    assert plane.sleeps[0] == 3 and len(plane.sleeps) == 2


def test_long_rate_limit_sends_the_job_back_with_its_delay(plane: Plane, aws: Aws, fake_github: FakeGitHub):
    import time

    fake_github.add_job(11)
    fake_github.inject(
        "GET",
        r"/actions/jobs/11$",
        403,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time()) + 600)},
    )
    requeued = []
    record = {"messageId": "m11", "body": job(11).to_json(), "receiptHandle": "r11"}
    assert batch([record], plane.scale_up(), lambda r, d: requeued.append(d))["batchItemFailures"]
    assert requeued and 590 <= requeued[0] <= 603
    assert aws.live_instances() == []


def test_a_403_that_is_not_a_rate_limit_is_not_retried(plane: Plane, fake_github: FakeGitHub):
    fake_github.add_job(12)
    fake_github.inject("GET", r"/actions/jobs/12$", 403, body={"message": "Resource not accessible by integration"})
    with pytest.raises(Exception, match="Resource not accessible"):
        plane.scale_up().handle(job(12))
    assert plane.sleeps == []


def test_installation_token_is_reused_until_near_expiry(plane: Plane, fake_github: FakeGitHub):
    for n in (20, 21, 22):
        fake_github.add_job(n)
        plane.scale_up().handle(job(n))
    assert fake_github.count("POST", r"/access_tokens$") == 1


def test_malformed_queue_message_is_a_failure_not_a_crash(plane: Plane):
    result = batch([{"messageId": "bad", "body": "{not json"}], plane.scale_up(), lambda r, d: None)
    assert result == {"batchItemFailures": [{"itemIdentifier": "bad"}]}


def test_github_enterprise_server_base_url(aws: Aws, app_key):
    fake = FakeGitHub(owner="acme", app_public_key_pem=app_key[1], path_prefix="/api/v3")
    fake.start()
    try:
        plane = make_plane(aws, fake, app_key[0])
        assert plane.config.github_api_url.endswith("/api/v3")
        fake.add_job(30)
        assert plane.scale_up().handle(job(30)).outcome == "launched"
    finally:
        fake.stop()


def test_repository_scoped_runners(aws: Aws, fake_github: FakeGitHub, app_key):
    plane = make_plane(aws, fake_github, app_key[0], RUNNER_SCOPE="repo")
    fake_github.add_job(31)
    plane.scale_up().handle(job(31))
    assert fake_github.count("POST", r"^/repos/acme/shop/actions/runners/generate-jitconfig$") == 1


def test_scale_up_lambda_handler(aws: Aws, fake_github: FakeGitHub, app_key, monkeypatch: pytest.MonkeyPatch):
    from runner.control_plane import handlers
    from tests.fix_control_plane import control_plane_env

    for key, value in control_plane_env(aws, fake_github.url).items():
        monkeypatch.setenv(key, value)
    aws.ssm.put_parameter(Name="/vpc-runners/test-fleet/github-app-key", Type="SecureString", Value=app_key[0])
    for cache in (handlers._config, handlers._secret, handlers._github):
        cache.cache_clear()
    fake_github.add_job(40)
    aws.sqs.send_message(
        QueueUrl=aws.queue_url, MessageBody=job(40).to_json(), MessageGroupId="40", MessageDeduplicationId="d-40"
    )
    records = [
        {"messageId": m["MessageId"], "body": m["Body"], "receiptHandle": m["ReceiptHandle"], "eventSource": "aws:sqs"}
        for m in aws.sqs.receive_message(QueueUrl=aws.queue_url)["Messages"]
    ]
    assert handlers.scale_up_handler({"Records": records}, None) == {"batchItemFailures": []}
    assert len(aws.live_instances()) == 1
    for cache in (handlers._config, handlers._secret, handlers._github):
        cache.cache_clear()


@pytest.mark.parametrize(
    ("message", "run", "reason"),
    [
        (job(41, repo="internal-tools"), {}, "not on the allow-list"),
        (replace(job(42), owner="mallory", repository="mallory/shop"), {}, "not owned by acme"),
        (job(43), {"event": "pull_request", "head_repository": "mallory/shop"}, "a fork's pull request"),
    ],
    ids=["unlisted repository", "another owner", "fork pull request"],
)
def test_a_job_the_admission_policy_refuses_gets_no_instance(
    plane: Plane, aws: Aws, fake_github: FakeGitHub, capsys: pytest.CaptureFixture[str], message, run, reason
):
    fake_github.add_job(message.job_id, repo=message.repo, **run)
    result = plane.scale_up().handle(message)
    assert result.outcome == "refused" and reason in result.reason
    assert aws.live_instances() == []
    assert not fake_github.runners, "no runner was registered either"
    metric = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert metric["JobRefused"] == 1 and reason in metric["detail"] and "Reason" not in metric


@pytest.mark.parametrize(
    ("env", "run", "admitted"),
    [
        ({"ALLOWED_EVENTS": '["push", "workflow_dispatch"]'}, {"event": "pull_request"}, False),
        ({"ALLOWED_EVENTS": '["push", "workflow_dispatch"]'}, {"event": "workflow_dispatch"}, True),
        ({"ALLOWED_BRANCHES": '["main", "release/*"]'}, {"head_branch": "feature/x"}, False),
        ({"ALLOWED_BRANCHES": '["main", "release/*"]'}, {"head_branch": "release/2026.11"}, True),
        ({"ALLOWED_REPOSITORIES": '["*"]'}, {}, True),
    ],
)
def test_optional_event_and_branch_restrictions(
    aws: Aws,
    fake_github: FakeGitHub,
    app_key: tuple[str, str],
    env: dict[str, str],
    run: dict[str, str],
    admitted: bool,
):
    plane = make_plane(aws, fake_github, app_key[0], **env)
    fake_github.add_job(44, repo="internal-tools" if "*" in env.get("ALLOWED_REPOSITORIES", "") else "shop", **run)
    message = job(44, repo="internal-tools") if "*" in env.get("ALLOWED_REPOSITORIES", "") else job(44)
    assert (plane.scale_up().handle(message).outcome == "launched") is admitted


def test_without_an_allow_list_nothing_is_launched(aws: Aws, fake_github: FakeGitHub, app_key: tuple[str, str]):
    plane = make_plane(aws, fake_github, app_key[0], ALLOWED_REPOSITORIES="")
    fake_github.add_job(45)
    result = plane.scale_up().handle(job(45))
    assert result.outcome == "refused" and "allow-list" in result.reason and aws.live_instances() == []
