"""Account, region and partition, looked up once and passed to every component that builds ARNs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi_aws as aws


@dataclass(frozen=True)
class AwsContext:
    account_id: str
    region: str
    partition: str

    def arn(self, service: str, resource: str, *, region: bool = True, account: bool = True) -> str:
        return (
            f"arn:{self.partition}:{service}:{self.region if region else ''}:"
            f"{self.account_id if account else ''}:{resource}"
        )

    def ssm_parameter_arn(self, name: str) -> str:
        return self.arn("ssm", "parameter/" + name.lstrip("/"))


def lookup() -> AwsContext:
    return AwsContext(
        account_id=aws.get_caller_identity().account_id,
        region=aws.get_region().region,
        partition=aws.get_partition().partition,
    )
