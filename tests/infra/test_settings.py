"""Bad stack configuration: a clear error naming each key, before any resource is declared."""

from __future__ import annotations

import json

import pulumi
import pytest
import yaml

from infra import settings
from tests.fix_pulumi import APP_KEY, MAIN, REPO, WEBHOOK_SECRET, RecordingMocks, base_config, set_config

DB = base_config()["databases"][0]
SECRET_ARN = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds!db-0f1e2d3c-a4b5-AbC123"
KEY_ARN = "arn:aws:kms:eu-central-1:123456789012:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
PASSWORD_DB = {"name": "billing", "securityGroupId": "sg-0123456789abcdef1", "secretArn": SECRET_ARN}


def load(config, layer_dir):
    pulumi.runtime.set_mocks(RecordingMocks(), project="vpc-runners", stack="test", preview=False)
    set_config(config, layer_dir)
    return settings.load()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vpcId": None}, "vpcId: required (or set createVpc: true)"),
        ({"vpcId": "my-vpc"}, "vpcId: 'my-vpc' is not a VPC id"),
        ({"privateSubnetIds": ["subnet-0aa11bb22cc33dd44"]}, "privateSubnetIds: need two or more private subnets"),
        ({"privateSubnetIds": "subnet-0aa11bb22cc33dd44"}, "privateSubnetIds: must be a list of strings"),
        ({"createVpc": True}, "createVpc: true makes its own VPC; remove vpcId and privateSubnetIds"),
        ({"databases": None}, "databases: required"),
        ({"databases": {"name": "orders"}}, "databases: must be a non-empty list of objects"),
        (
            {"databases": [{**DB, "resourceId": "orders-db"}]},
            "databases[0].resourceId: 'orders-db' is not a DbiResourceId",
        ),
        (
            {"databases": [{**DB, "securityGroupId": "default"}]},
            "databases[0].securityGroupId: 'default' is not a security group id",
        ),
        ({"databases": [{k: v for k, v in DB.items() if k != "user"}]}, "databases[0]: missing user"),
        ({"databases": [{**DB, "port": 99999}]}, "databases[0].port: 99999 is not a port number"),
        ({"databases": [DB, DB]}, "databases: name 'orders' is used twice"),
        (
            {"databases": [{**DB, "secretArn": SECRET_ARN}]},
            "databases[0]: give resourceId (IAM authentication) or secretArn (a password in Secrets Manager), not both",
        ),
        (
            {"databases": [{**PASSWORD_DB, "secretArn": SECRET_ARN.rsplit("-", 1)[0]}]},
            "databases[0].secretArn: 'arn:aws:secretsmanager:eu-central-1:123456789012:secret:rds!db-0f1e2d3c-a4b5' "
            "is not a complete secret ARN",
        ),
        ({"databases": [{**PASSWORD_DB, "secretArn": "prod/orders"}]}, "is not a complete secret ARN"),
        ({"databases": [{**DB, "secretKmsKeyId": KEY_ARN}]}, "databases[0].secretKmsKeyId: only with secretArn"),
        (
            {"databases": [{**PASSWORD_DB, "secretKmsKeyId": "alias/db"}]},
            "databases[0].secretKmsKeyId: 'alias/db' is not a KMS key ARN",
        ),
        ({"databases": [{"name": "billing", "secretArn": SECRET_ARN}]}, "databases[0]: missing securityGroupId"),
        ({"github": None}, "github: required"),
        (
            {"github": {"owner": "acme", "webhookSecret": WEBHOOK_SECRET}},
            "github: missing appId and appPrivateKey (or token",
        ),
        (
            {
                "github": {
                    "owner": "acme",
                    "appId": "1",
                    "appPrivateKey": APP_KEY,
                    "webhookSecret": WEBHOOK_SECRET,
                    "labels": ["self-hosted", "linux"],
                }
            },
            "github.labels: must include the pool label 'vpc-test'",
        ),
        (
            {
                "github": {
                    "owner": "acme",
                    "appId": "1",
                    "appPrivateKey": APP_KEY,
                    "webhookSecret": WEBHOOK_SECRET,
                    "poolLabel": "vpc",
                    "labels": ["linux", "vpc"],
                }
            },
            "github.labels: must include 'self-hosted'",
        ),
        ({"ebsKmsKeyId": "alias/aws/ebs"}, "ebsKmsKeyId: 'alias/aws/ebs' is not a KMS key ARN"),
        (
            {
                "github": {
                    "owner": "acme",
                    "appId": "1",
                    "appPrivateKey": APP_KEY,
                    "webhookSecret": WEBHOOK_SECRET,
                    "repositories": ["*"],
                    "runnerScope": "repo",
                }
            },
            "github.runnerScope: repo needs github.repositories to name each repository",
        ),
        (
            {"github": {"owner": "acme", "appId": "1", "appPrivateKey": APP_KEY, "webhookSecret": "short"}},
            "github.webhookSecret: at least 32 characters",
        ),
        (
            {"github": {"owner": "acme", "appId": "1", "appPrivateKey": APP_KEY, "webhookSecret": WEBHOOK_SECRET}},
            "github.repositories: required",
        ),
        (
            {
                "github": {
                    "owner": "acme",
                    "appId": "1",
                    "appPrivateKey": APP_KEY,
                    "webhookSecret": WEBHOOK_SECRET,
                    "repositories": ["evil/shop"],
                }
            },
            "github.repositories: 'evil/shop' is not a repository of acme",
        ),
        ({"maxRunners": 0}, "maxRunners: must be a whole number >= 1"),
        ({"spot": "sometimes"}, "spot: must be true or false"),
        ({"idleRunners": 2}, "idleRunners: warm capacity is not supported yet"),
        ({"runnerVersion": "2.330.0"}, "runnerSha256: the SHA-256"),
    ],
)
def test_bad_configuration_names_the_key(changes, message, layer_dir):
    with pytest.raises(settings.ConfigError) as caught:
        load(base_config(**changes), layer_dir)
    assert message in str(caught.value)


def test_a_password_database_needs_only_its_secret_and_security_group(layer_dir):
    cfg = load(base_config(databases=[DB, {**PASSWORD_DB, "secretKmsKeyId": KEY_ARN}]), layer_dir)
    iam, password = cfg.databases
    assert iam.iam and iam.secret_arn is None and iam.resource_id == DB["resourceId"]
    assert not password.iam and password.resource_id is None and password.host is None and password.port == 5432
    assert (password.secret_arn, password.secret_kms_key_arn) == (SECRET_ARN, KEY_ARN)


def test_every_problem_is_reported_at_once(layer_dir):
    with pytest.raises(settings.ConfigError) as caught:
        load(base_config(vpcId=None, databases=None, maxRunners=-1), layer_dir)
    text = str(caught.value)
    assert "vpcId" in text and "databases" in text and "maxRunners" in text


def test_good_configuration_keeps_secrets_secret(layer_dir):
    cfg = load(base_config(), layer_dir)
    assert cfg.github.app_private_key is not None and cfg.github.token is None
    assert isinstance(cfg.github.webhook_secret, pulumi.Output)
    assert cfg.databases[0].port == 5432 and cfg.max_runners == 10 and cfg.spot is False


def test_program_with_bad_configuration_declares_nothing(layer_dir):
    import runpy

    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="vpc-runners", stack="test", preview=False)
    set_config(base_config(vpcId=None), layer_dir)

    @pulumi.runtime.test
    def program():
        runpy.run_path(str(MAIN), run_name="__main__")

    with pytest.raises(pulumi.RunError, match="vpcId: required"):
        program()
    assert mocks.resources == []


def test_pool_label_and_runner_prefix_are_per_stack(layer_dir):
    """Two stacks in one organization: their jobs, runners and registrations never overlap."""
    prod = load(base_config(), layer_dir)
    set_config(base_config(), layer_dir)
    staging = settings.load(stack="staging")
    assert prod.github.pool_label == "vpc-test" and staging.github.pool_label == "vpc-staging"
    assert prod.github.labels == ("self-hosted", "linux", "x64", "vpc-test")
    assert (prod.runner_name_prefix, staging.runner_name_prefix) == ("vpc-test", "vpc-staging")
    assert prod.hold_ceiling_s == 3600


def test_a_database_set_as_a_json_string_is_read_as_its_object(layer_dir):
    """What `pulumi config set --path 'vpc-runners:databases[0]' '{...}'` stores: a string holding JSON."""
    cfg = load(base_config(databases=[json.dumps(DB), json.dumps(PASSWORD_DB)]), layer_dir)
    assert [d.name for d in cfg.databases] == ["orders", "billing"] and cfg.databases[0].user == DB["user"]
    with pytest.raises(settings.ConfigError, match=r"databases\[0\]: a string that is not a JSON object"):
        load(base_config(databases=["orders"]), layer_dir)


def test_the_example_stack_file_is_a_valid_configuration(layer_dir):
    example = yaml.safe_load((REPO / "Pulumi.example.yaml").read_text())["config"]
    config = {k.removeprefix("vpc-runners:"): v for k, v in example.items() if k.startswith("vpc-runners:")}
    config["github"] |= {"appPrivateKey": APP_KEY, "webhookSecret": WEBHOOK_SECRET}  # set with --secret
    set_config(config, layer_dir)
    loaded = settings.load(stack="prod")
    assert loaded.github.pool_label == "vpc-prod" and "self-hosted" in loaded.github.labels
