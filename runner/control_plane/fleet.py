"""The runner instances of one fleet (stack) in EC2: find, count, launch, tag, terminate.

Every query filters on the fleet tag, so two stacks in one account never touch each other's
instances. Launches use CreateFleet (type instant), which tries every subnet x instance type
override and answers synchronously with instances or per-override errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from .config import (
    TAG_FLEET,
    TAG_INSTALLATION_ID,
    TAG_JOB_ID,
    TAG_REPOSITORY,
    TAG_RUN_ID,
    Config,
)
from .errors import LaunchRefused, RetryLater
from .webhook import JobMessage

CAPACITY_ERRORS = frozenset(
    {
        "InsufficientInstanceCapacity",
        "MaxSpotInstanceCountExceeded",
        "UnfulfillableCapacity",
        "InsufficientCapacity",
        "SpotMaxPriceTooLow",
        "InsufficientFreeAddressesInSubnet",
    }
)
THROTTLE_ERRORS = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})
QUOTA_ERRORS = frozenset({"VcpuLimitExceeded", "MaxSpotFleetRequestCountExceeded", "InstanceLimitExceeded"})
LIVE_STATES = ("pending", "running")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Instance:
    id: str
    state: str
    launch_time: datetime
    tags: Mapping[str, str]


class Fleet:
    def __init__(self, ec2: Any, config: Config) -> None:
        self.ec2 = ec2
        self.config = config
        self.calls = 0  # EC2 API calls, for the benchmarks

    def live(self) -> list[Instance]:
        return self._describe([{"Name": "instance-state-name", "Values": list(LIVE_STATES)}])

    def for_job(self, job_id: int) -> Instance | None:
        found = self._describe(
            [
                {"Name": f"tag:{TAG_JOB_ID}", "Values": [str(job_id)]},
                {"Name": "instance-state-name", "Values": list(LIVE_STATES)},
            ]
        )
        return found[0] if found else None

    def find(self, instance_id: str) -> Instance | None:
        """This fleet's instance ``instance_id`` in any state (EC2 shows terminated ones for about an hour)."""
        found = self._describe([{"Name": "instance-id", "Values": [instance_id]}])
        return found[0] if found else None

    def _describe(self, filters: list[dict[str, Any]]) -> list[Instance]:
        instances = []
        paginator = self.ec2.get_paginator("describe_instances")
        self.calls += 1
        for page in paginator.paginate(Filters=[{"Name": f"tag:{TAG_FLEET}", "Values": [self.config.fleet]}, *filters]):
            for reservation in page["Reservations"]:
                for i in reservation["Instances"]:
                    instances.append(
                        Instance(
                            i["InstanceId"],
                            i["State"]["Name"],
                            i["LaunchTime"],
                            {t["Key"]: t["Value"] for t in i.get("Tags", [])},
                        )
                    )
        return instances

    def launch(self, job: JobMessage) -> str:
        """One instance for ``job``; spot first if configured, then on-demand whatever stopped spot.

        Capacity, quota and throttling answers are retried later (RetryLater). Anything else is a
        permission or configuration problem that no retry fixes: LaunchRefused, naming EC2's codes.
        """
        attempts = ["spot", "on-demand"] if self.config.spot else ["on-demand"]
        errors: list[str] = []
        for capacity_type in attempts:
            instance_id, codes = self._create_fleet(job, capacity_type)
            if instance_id:
                if errors:
                    log.warning("job %s: launched on-demand after spot failed (%s)", job.job_id, ", ".join(errors))
                return instance_id
            errors += [f"{capacity_type}: {code}" for code in codes]
        # The last attempt decides: spot may have failed for a spot-only reason (no service-linked role).
        last = {e.split(": ", 1)[1] for e in errors if e.startswith(f"{attempts[-1]}: ")}
        detail = ", ".join(sorted(errors))
        if last & THROTTLE_ERRORS:
            raise RetryLater(f"EC2 throttled the launch ({detail})", delay_s=30, cause="throttled")
        if last <= CAPACITY_ERRORS | QUOTA_ERRORS:
            raise RetryLater(
                f"no capacity in any subnet/instance type ({detail})",
                delay_s=60,
                cause="quota" if last & QUOTA_ERRORS else "capacity",
            )
        raise LaunchRefused(
            f"EC2 refused the launch: {detail}. A permission or configuration error (the launch template, its "
            "image, the subnets, the scale-up role): retrying cannot fix it"
        )

    def _create_fleet(self, job: JobMessage, capacity_type: str) -> tuple[str | None, list[str]]:
        overrides = [
            {"SubnetId": subnet, "InstanceType": itype}
            for subnet in self.config.subnet_ids
            for itype in self.config.instance_types
        ]
        request: dict[str, Any] = {
            "Type": "instant",
            "LaunchTemplateConfigs": [
                {
                    "LaunchTemplateSpecification": {
                        "LaunchTemplateId": self.config.launch_template_id,
                        "Version": "$Latest",
                    },
                    "Overrides": overrides,
                }
            ],
            "TargetCapacitySpecification": {"TotalTargetCapacity": 1, "DefaultTargetCapacityType": capacity_type},
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": TAG_FLEET, "Value": self.config.fleet},
                        {"Key": TAG_JOB_ID, "Value": str(job.job_id)},
                        {"Key": TAG_RUN_ID, "Value": str(job.run_id)},
                        {"Key": TAG_REPOSITORY, "Value": job.repository},
                        {"Key": TAG_INSTALLATION_ID, "Value": str(job.installation_id or "")},
                        {"Key": "Name", "Value": f"{self.config.runner_name_prefix} job {job.job_id}"},
                    ],
                }
            ],
        }
        if capacity_type == "spot":
            request["SpotOptions"] = {"AllocationStrategy": "price-capacity-optimized"}
        else:
            request["OnDemandOptions"] = {"AllocationStrategy": "lowest-price"}
        self.calls += 1
        try:
            response = self.ec2.create_fleet(**request)
        except ClientError as err:
            return None, [err.response.get("Error", {}).get("Code", "ClientError")]
        for group in response.get("Instances", []):
            if group.get("InstanceIds"):
                return group["InstanceIds"][0], []
        return None, [e.get("ErrorCode", "Unknown") for e in response.get("Errors", [])] or ["NoInstances"]

    def tag(self, instance_id: str, tags: Mapping[str, str]) -> None:
        self.calls += 1
        self.ec2.create_tags(Resources=[instance_id], Tags=[{"Key": k, "Value": v} for k, v in tags.items()])

    def terminate(self, instance_ids: list[str]) -> None:
        if instance_ids:
            self.calls += 1
            self.ec2.terminate_instances(InstanceIds=instance_ids)
