"""Lambda entry points. Thin: read configuration, build clients once per container, call the logic.

    webhook_handler   Lambda function URL (payload format 2.0) -> webhook.receive
    scale_up_handler  SQS batch (ReportBatchItemFailures) -> scale_up.process_batch
    reaper_handler    EventBridge schedule -> reaper.Reaper.run; {"drain": ...} (scripts/drain) -> the
                      same, draining; EC2 "terminated" state change -> reaper.instance_gone (the trace)

Secrets (webhook secret, App private key or token) are read from SSM SecureString parameters the
environment names, once per container; they are never in the environment themselves.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import time
from dataclasses import asdict
from functools import cache
from typing import Any, TypedDict

import boto3

from . import config as config_module
from . import trace
from .errors import ConfigError
from .fleet import Fleet
from .github import AppAuth, Auth, GitHubClient, TokenAuth
from .reaper import Reaper, instance_gone
from .scale_up import JitStore, ScaleUp, process_batch
from .webhook import JobMessage, receive

logging.getLogger().setLevel(os.environ.get("LOG_LEVEL", "INFO"))
log = logging.getLogger(__name__)


class HttpResponse(TypedDict):
    statusCode: int
    headers: dict[str, str]
    body: str


@cache
def _config(needs: tuple[str, ...]) -> config_module.Config:
    return config_module.load(os.environ, needs=needs)


@cache
def _secret(name: str) -> str:
    value: str = boto3.client("ssm").get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return value


def github_client(cfg: config_module.Config) -> GitHubClient:
    auth: Auth
    if cfg.token_parameter:
        auth = TokenAuth(_secret(cfg.token_parameter))
    else:
        assert cfg.app_id and cfg.app_key_parameter  # config.load guarantees one of the two
        auth = AppAuth(cfg.app_id, _secret(cfg.app_key_parameter))
    return GitHubClient(cfg.github_api_url, cfg.github_owner, auth)


@cache
def _github(needs: tuple[str, ...]) -> GitHubClient:
    # One client per container: installation tokens are cached across invocations.
    return github_client(_config(needs))


def webhook_handler(event: dict[str, Any], context: object) -> HttpResponse:
    try:
        cfg = _config(("WEBHOOK_SECRET_PARAMETER", "QUEUE_URL"))
    except ConfigError as err:
        log.error("configuration: %s", err)
        return _http(500, "receiver misconfigured")
    body = event.get("body") or ""
    raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode()
    sqs = boto3.client("sqs")

    def enqueue(job: JobMessage) -> None:
        sqs.send_message(
            QueueUrl=cfg.queue_url,
            MessageBody=job.to_json(),
            MessageGroupId=str(job.job_id),
            MessageDeduplicationId=job.delivery_id,
        )

    assert cfg.webhook_secret_parameter
    result = receive(
        event.get("headers") or {},
        raw,
        secret=_secret(cfg.webhook_secret_parameter).encode(),
        pools=cfg.pools,
        enqueue=enqueue,
        max_age_s=cfg.max_delivery_age_s,
    )
    log.info("webhook %s: %s", result.status, result.message)
    return _http(result.status, result.message)


SCALE_UP_NEEDS = ("QUEUE_URL", "LAUNCH_TEMPLATE_ID", "SUBNET_IDS", "INSTANCE_TYPES")


def _budgeted(client: GitHubClient, context: object) -> GitHubClient:
    """No GitHub wait may outlive this invocation: waits are bounded by its remaining time."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    client.remaining_s = (lambda: remaining() / 1000) if callable(remaining) else None
    return client


def scale_up_handler(event: dict[str, Any], context: object) -> dict[str, list[dict[str, str]]]:
    cfg = _config(SCALE_UP_NEEDS)
    sqs = boto3.client("sqs")
    github = _budgeted(_github(SCALE_UP_NEEDS), context)
    scale_up = ScaleUp(cfg, Fleet(boto3.client("ec2"), cfg), github, JitStore(boto3.client("ssm"), cfg))

    def requeue(receipt: str, delay_s: int) -> None:
        sqs.change_message_visibility(QueueUrl=cfg.queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay_s)

    def dead_letter(body: str, reason: str) -> None:
        if not cfg.dead_letter_url:
            raise ConfigError("missing environment variable DEAD_LETTER_QUEUE_URL")
        sqs.send_message(
            QueueUrl=cfg.dead_letter_url,
            MessageBody=body,
            MessageGroupId="refused",
            MessageDeduplicationId=hashlib.sha256(body.encode()).hexdigest(),
            MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000]}},
        )

    return process_batch(event.get("Records", []), scale_up, requeue, dead_letter)


STATE_CHANGE = "EC2 Instance State-change Notification"


def reaper_handler(event: dict[str, Any], context: object) -> dict[str, Any]:
    cfg = _config(())
    if event.get("detail-type") == STATE_CHANGE:
        # Needs no GitHub: one DescribeInstances tells whether the instance was this fleet's, and its job.
        detail = event.get("detail") or {}
        try:
            at = trace.epoch(str(event.get("time")))
        except ValueError:
            at = time.time()
        traced = detail.get("state") == "terminated" and instance_gone(
            cfg, Fleet(boto3.client("ec2"), cfg), str(detail.get("instance-id")), at
        )
        return {"traced": bool(traced)}
    github = _budgeted(_github(()), context)
    reaper = Reaper(cfg, Fleet(boto3.client("ec2"), cfg), github, JitStore(boto3.client("ssm"), cfg))
    # scripts/drain invokes it with {"drain": true} or {"drain": "now"} before a teardown.
    drain = event.get("drain")
    return asdict(reaper.run(drain=drain in (True, "now"), force=drain == "now"))


def _http(status: int, message: str) -> HttpResponse:
    return {"statusCode": status, "headers": {"Content-Type": "text/plain"}, "body": message}
