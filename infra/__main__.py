"""vpc-runners: `pulumi up` stands up private-subnet GitHub Actions runners with database access.

Reads the stack configuration (infra/settings.py), then declares the network, the runner security
group, one DatabaseAccess per database, the runner fleet and the control plane, and exports what a
platform team pastes into its GitHub App and workflows.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pulumi

# `pulumi up` runs this file with infra/ on the path; the program imports the kit as a package.
REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from infra import artifacts, aws_context, settings  # noqa: E402
from infra.access import DatabaseAccess, DatabaseAccessArgs, RunnerSecurityGroup, RunnerSecurityGroupArgs  # noqa: E402
from infra.control_plane import ControlPlane, ControlPlaneArgs  # noqa: E402
from infra.monitoring import Monitoring, MonitoringArgs  # noqa: E402
from infra.network import RunnerNetwork, RunnerNetworkArgs  # noqa: E402
from infra.runner_fleet import RunnerFleet, RunnerFleetArgs  # noqa: E402
from runner.control_plane.config import TAG_FLEET  # noqa: E402


def main() -> None:
    try:
        cfg = settings.load()
        layer_dir = artifacts.lambda_layer(cfg.lambda_layer_dir)
        package_dir = artifacts.runner_package(cfg.runner_package_dir)
    except (settings.ConfigError, artifacts.ArtifactError) as err:
        raise pulumi.RunError(str(err)) from None

    fleet = pulumi.get_stack()
    tags = {"vpc-runners:stack": fleet, **cfg.tags}
    ctx = aws_context.lookup()
    jit_prefix = f"/vpc-runners/{fleet}/jit"

    network = RunnerNetwork(
        "runners",
        RunnerNetworkArgs(
            create_vpc=cfg.create_vpc,
            vpc_id=cfg.vpc_id,
            private_subnet_ids=cfg.private_subnet_ids,
            cidr=cfg.vpc_cidr,
            tags=tags,
        ),
    )
    security_group = RunnerSecurityGroup("vpc-runners", RunnerSecurityGroupArgs(vpc_id=network.vpc_id, tags=tags))
    databases = [
        DatabaseAccess(
            f"db-{db.name}",
            DatabaseAccessArgs(
                database=db,
                runner_security_group_id=security_group.id,
                region=ctx.region,
                parameter_prefix=f"/vpc-runners/{fleet}/databases",
                tags=tags,
            ),
        )
        for db in cfg.databases
    ]
    runner_fleet = RunnerFleet(
        "fleet",
        RunnerFleetArgs(
            fleet=fleet,
            aws=ctx,
            security_group_id=security_group.id,
            databases=cfg.databases,
            database_parameters=[d.parameter_name for d in databases],
            jit_parameter_prefix=jit_prefix,
            instance_types=cfg.instance_types,
            ami_id=cfg.ami_id,
            volume_size_gb=cfg.volume_size_gb,
            runner_version=cfg.runner_version,
            runner_sha256=cfg.runner_sha256,
            log_retention_days=cfg.log_retention_days,
            hold_ceiling_s=cfg.hold_ceiling_s,
            ebs_kms_key_arn=cfg.ebs_kms_key_arn,
            package_dir=package_dir,
            tags=tags,
        ),
    )
    control = ControlPlane(
        "control",
        ControlPlaneArgs(
            fleet=fleet,
            aws=ctx,
            github=cfg.github,
            launch_template_id=runner_fleet.launch_template.id,
            subnet_ids=network.private_subnet_ids,
            security_group_id=security_group.id,
            instance_role_arn=runner_fleet.role.arn,
            ami_id=cfg.ami_id,
            ebs_kms_key_arn=cfg.ebs_kms_key_arn,
            volume_tag_keys=tuple(sorted({*tags, TAG_FLEET})),
            instance_types=cfg.instance_types,
            max_runners=cfg.max_runners,
            spot=cfg.spot,
            jit_parameter_prefix=jit_prefix,
            boot_timeout_s=cfg.boot_timeout_s,
            max_lifetime_s=cfg.max_lifetime_s,
            hold_ceiling_s=cfg.hold_ceiling_s,
            max_delivery_age_s=cfg.max_delivery_age_s,
            log_retention_days=cfg.log_retention_days,
            layer_dir=layer_dir,
            code_dir=artifacts.lambda_code(),
            runner_name_prefix=cfg.runner_name_prefix,
            tags=tags,
        ),
    )

    monitoring = Monitoring(
        "monitoring",
        MonitoringArgs(
            fleet=fleet,
            aws=ctx,
            queue_name=control.queue.name,
            dead_letter_queue_name=control.dead_letters.name,
            function_names={
                "webhook": control.webhook.function.name,
                "scale-up": control.scale_up.function.name,
                "reaper": control.reaper.function.name,
            },
            queue_age_alarm_s=cfg.queue_age_alarm_s,
            alarm_email=cfg.alarm_email,
            tags=tags,
        ),
    )

    pulumi.export("webhookUrl", control.url.function_url)
    pulumi.export("alarmTopicArn", monitoring.topic.arn)
    pulumi.export("dashboardName", monitoring.dashboard.dashboard_name)
    pulumi.export("runnerSecurityGroupId", security_group.id)
    pulumi.export("instanceRoleArn", runner_fleet.role.arn)
    pulumi.export("labels", list(cfg.github.labels))
    pulumi.export("runsOn", ["self-hosted", cfg.github.pool_label])
    pulumi.export("runnerNamePrefix", cfg.runner_name_prefix)
    pulumi.export("kmsKeys", {"controlSecrets": control.keys.control.arn, "runnerConfigs": control.keys.jit.arn})
    pulumi.export(
        "databaseParameters", {db.name: d.parameter_name for db, d in zip(cfg.databases, databases, strict=True)}
    )
    pulumi.export(
        "logGroups",
        {
            "runners": runner_fleet.log_group.name,
            "webhook": control.webhook.log_group.name,
            "scaleUp": control.scale_up.log_group.name,
            "reaper": control.reaper.log_group.name,
        },
    )
    pulumi.export("queueUrl", control.queue.url)
    # For scripts/bake-image: the template it bakes from, and a private subnet to bake in.
    pulumi.export("launchTemplateId", runner_fleet.launch_template.id)
    pulumi.export("privateSubnetIds", network.private_subnet_ids)
    pulumi.export("deadLetterQueueUrl", control.dead_letters.url)


main()
