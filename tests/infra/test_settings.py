"""Bad stack configuration: a clear error naming each key, before any resource is declared."""

from __future__ import annotations

import pulumi
import pytest

from infra import settings
from tests.fix_pulumi import APP_KEY, MAIN, WEBHOOK_SECRET, RecordingMocks, base_config, set_config

DB = base_config()["databases"][0]


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
            "github.labels: must include the pool label 'vpc'",
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
