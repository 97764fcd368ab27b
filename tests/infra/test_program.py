"""The Pulumi program under mocks: every security property, on the resources it really declares."""

from __future__ import annotations

import base64
import importlib
import ipaddress
import json

import pytest

from infra.policy import rules
from tests.fix_pulumi import ACCOUNT, APP_KEY, REGION, TOKEN, WEBHOOK_SECRET, Policy, Program, base_config

TWO_DATABASES = [
    base_config()["databases"][0],
    {
        "name": "ledger",
        "securityGroupId": "sg-0fedcba9876543210",
        "resourceId": "cluster-ABCDEFGHIJKLMNOP1234567890",
        "host": "ledger.cluster-c9akciq32.eu-central-1.rds.amazonaws.com",
        "port": 6432,
        "dbname": "ledger",
        "user": "ledger_migrator",
    },
]
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:rds!db-0f1e2d3c-a4b5-AbC123"
SECRET_KEY = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"
IAM_AND_PASSWORD = [
    base_config()["databases"][0],
    {
        "name": "billing",
        "securityGroupId": "sg-0fedcba9876543210",
        "host": "billing.c9akciq32.eu-central-1.rds.amazonaws.com",
        "dbname": "billing",
        "secretArn": SECRET_ARN,
        "secretKmsKeyId": SECRET_KEY,
    },
]
CONFIGS = {
    "existing VPC, one database": base_config(),
    "new VPC, two databases": base_config(vpcId=None, privateSubnetIds=None, createVpc=True, databases=TWO_DATABASES),
    "spot on": base_config(spot=True),
    "an IAM database and a password database": base_config(databases=IAM_AND_PASSWORD),
    "fine-grained token": base_config(
        github={"owner": "acme", "token": TOKEN, "webhookSecret": WEBHOOK_SECRET, "repositories": ["*"]}
    ),
}


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def deployed(request, run_program) -> tuple[dict, Program]:
    config = CONFIGS[request.param]
    return config, run_program(config)


def runner_sg(program: Program) -> str:
    return program.exports["runnerSecurityGroupId"]


def test_every_resource_passes_the_policy_pack(deployed):
    _, program = deployed
    violations = {r.name: rules.check(r.type, r.inputs) for r in program.resources}
    assert {k: v for k, v in violations.items() if v} == {}
    sgs = [(r.type, {**r.inputs, "id": r.id}) for r in program.resources]
    assert rules.runner_group_ingress(sgs) == []


def test_runner_security_group_has_no_inbound_rules_and_only_needed_egress(deployed):
    config, program = deployed
    sg = runner_sg(program)
    group = program.by_id(sg)
    assert not group.inputs.get("ingress") and group.inputs["vpcId"]
    assert [r for r in program.of(rules.INGRESS_RULE) if r.inputs["securityGroupId"] == sg] == []
    egress = sorted(
        (r.inputs["fromPort"], r.inputs.get("cidrIpv4") or r.inputs.get("referencedSecurityGroupId"))
        for r in program.of("aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule")
        if r.inputs["securityGroupId"] == sg
    )
    expected = sorted([(443, "0.0.0.0/0")] + [(d.get("port", 5432), d["securityGroupId"]) for d in config["databases"]])
    assert egress == expected


def test_each_database_admits_only_the_runner_group_on_its_port(deployed):
    config, program = deployed
    ingress = program.of(rules.INGRESS_RULE)
    assert len(ingress) == len(config["databases"])
    for db in config["databases"]:
        (rule,) = [r for r in ingress if r.inputs["securityGroupId"] == db["securityGroupId"]]
        assert rule.inputs["referencedSecurityGroupId"] == runner_sg(program)
        assert (rule.inputs["fromPort"], rule.inputs["toPort"], rule.inputs["ipProtocol"]) == (
            db.get("port", 5432),
            db.get("port", 5432),
            "tcp",
        )
        assert not rule.inputs.get("cidrIpv4")


def test_launch_template_imdsv2_no_public_ip_encrypted_terminates_on_shutdown(deployed):
    config, program = deployed
    lt = program.one("aws:ec2/launchTemplate:LaunchTemplate").inputs
    assert lt["metadataOptions"]["httpTokens"] == "required"
    assert lt["networkInterfaces"] == [
        {
            "deviceIndex": 0,
            "associatePublicIpAddress": "false",
            "deleteOnTermination": "true",
            "securityGroups": [runner_sg(program)],
        }
    ]
    assert lt["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
    assert lt["instanceInitiatedShutdownBehavior"] == "terminate"
    assert lt["imageId"].startswith("resolve:ssm:/aws/service/ami-amazon-linux-latest/al2023")
    assert "keyName" not in lt  # no SSH key pairs: Session Manager only
    user_data = base64.b64decode(lt["userData"]).decode()
    assert "JIT_PARAMETER=/vpc-runners/test/jit" in user_data and "@@" not in user_data
    expected_db = "/vpc-runners/test/databases/orders" if len(config["databases"]) == 1 else "''"
    assert f"DATABASE_PARAMETER={expected_db}" in user_data


def test_instance_role_allows_exactly_what_a_runner_needs(deployed):
    config, program = deployed
    # No managed policy anywhere: AmazonSSMManagedInstanceCore would read every parameter in the account.
    assert program.of("aws:iam/rolePolicyAttachment:RolePolicyAttachment") == []
    assert not [r for r in program.of("aws:iam/role:Role") if r.inputs.get("managedPolicyArns")]
    policy = Policy.of(program.one("aws:iam/rolePolicy:RolePolicy", "fleet-instance"))
    assert sorted(policy.resources_for("rds-db:connect")) == sorted(
        f"arn:aws:rds-db:{REGION}:{ACCOUNT}:dbuser:{d['resourceId']}/{d['user']}"
        for d in config["databases"]
        if "resourceId" in d
    )
    secrets = [d for d in config["databases"] if "secretArn" in d]
    assert policy.resources_for("secretsmanager:GetSecretValue") == [d["secretArn"] for d in secrets]
    keyed = [d for d in secrets if "secretKmsKeyId" in d]
    assert policy.resources_for("kms:Decrypt") == [d["secretKmsKeyId"] for d in keyed]
    if keyed:
        (decrypt,) = [s for s in policy.statements if s["Action"] == "kms:Decrypt"]
        assert decrypt["Condition"] == {
            "StringEquals": {
                "kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com",
                "kms:EncryptionContext:SecretARN": [d["secretArn"] for d in keyed],
            }
        }
    (jit,) = [s for s in policy.statements if s.get("Sid") == "ReadAndDeleteOwnRunnerConfig"]
    assert jit["Condition"] == {"StringLike": {"ec2:SourceInstanceARN": "*/${aws:ResourceTag/InstanceId}"}}
    actions = {a for s in policy.statements for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    by_login = {"secretsmanager:GetSecretValue", "kms:Decrypt"} if secrets else set()
    assert actions == by_login | {
        "rds-db:connect",
        "ssm:GetParameter",
        "ssm:DeleteParameter",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "logs:DescribeLogStreams",
        "s3:GetObject",
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    }
    unscoped = [
        s for s in policy.statements if "*" in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    assert [s["Sid"] for s in unscoped] == ["SessionManagerChannels"]


def test_secrets_are_secure_parameters_never_lambda_environment(deployed):
    config, program = deployed
    secrets = [s for s in (APP_KEY, WEBHOOK_SECRET, TOKEN)]
    functions = program.of(rules.LAMBDA)
    assert len(functions) == 3
    for function in functions:
        text = json.dumps(function.inputs, default=str)
        assert not any(secret in text for secret in secrets)
    parameters = {p.inputs["name"]: p for p in program.of("aws:ssm/parameter:Parameter")}
    credential = "github-token" if "token" in config["github"] else "github-app-key"
    for name in ("webhook-secret", credential):
        parameter = parameters[f"/vpc-runners/test/{name}"]
        assert parameter.inputs["type"] == "SecureString" and "value" in parameter.secret_inputs
    assert parameters["/vpc-runners/test/webhook-secret"].inputs["value"] == WEBHOOK_SECRET
    parameters = {name: p.inputs for name, p in parameters.items()}
    by_name = {d["name"]: d for d in config["databases"]}
    for name, p in parameters.items():
        if "/databases/" in name:
            value, db = json.loads(p["value"]), by_name[name.rsplit("/", 1)[1]]
            login = {"secret": db["secretArn"]} if "secretArn" in db else {"iam": True}
            assert p["type"] == "String" and {k: value[k] for k in ("iam", "secret") if k in value} == login
            assert value["region"] == REGION and value["port"] == db.get("port", 5432)


def test_lambdas_point_at_the_real_handlers_with_packaged_code(deployed):
    _, program = deployed
    handlers = importlib.import_module("runner.control_plane.handlers")
    seen = set()
    for function in program.of(rules.LAMBDA):
        module, _, attribute = function.inputs["handler"].rpartition(".")
        assert module == "runner.control_plane.handlers" and callable(getattr(handlers, attribute))
        seen.add(attribute)
        assert function.inputs["runtime"] == "python3.12" and function.inputs["layers"]
        env = function.inputs["environment"]["variables"]
        assert env["VPC_RUNNERS_FLEET"] == "test" and json.loads(env["SUBNET_IDS"])
    assert seen == {"webhook_handler", "scale_up_handler", "reaper_handler"}
    scale_up = program.one(rules.LAMBDA, "scale-up").inputs
    assert scale_up["reservedConcurrentExecutions"] == 1  # batches never race on maxRunners
    # The public receiver: a flood of requests, signed or not, takes at most this much of the account.
    assert program.one(rules.LAMBDA, "webhook").inputs["reservedConcurrentExecutions"] == 10
    # Every EC2 termination in the region reaches the reaper: a burst queues instead of taking the account's.
    assert program.one(rules.LAMBDA, "reaper").inputs["reservedConcurrentExecutions"] == 5


def test_queue_url_schedule_and_logs(deployed):
    _, program = deployed
    queues = {q.inputs["name"]: q.inputs for q in program.of("aws:sqs/queue:Queue")}
    jobs, dlq = queues["vpc-runners-test-jobs.fifo"], queues["vpc-runners-test-jobs-dlq.fifo"]
    assert jobs["fifoQueue"] and dlq["fifoQueue"] and jobs["sqsManagedSseEnabled"]
    assert json.loads(jobs["redrivePolicy"])["deadLetterTargetArn"].endswith("vpc-runners-test-jobs-dlq.fifo")
    mapping = program.one("aws:lambda/eventSourceMapping:EventSourceMapping").inputs
    assert mapping["functionResponseTypes"] == ["ReportBatchItemFailures"]
    assert program.one("aws:lambda/functionUrl:FunctionUrl").inputs["authorizationType"] == "NONE"
    assert program.one("aws:cloudwatch/eventRule:EventRule", "reaper").inputs["scheduleExpression"] == "rate(5 minutes)"
    for group in program.of("aws:cloudwatch/logGroup:LogGroup"):
        assert group.inputs["retentionInDays"] == 30
    assert set(program.exports) >= {
        "webhookUrl",
        "runnerSecurityGroupId",
        "instanceRoleArn",
        "labels",
        "databaseParameters",
        "logGroups",
    }


def test_lambda_roles_name_their_resources(deployed):
    _, program = deployed
    for name in ("control-webhook", "control-scale-up", "control-reaper"):
        policy = Policy.of(program.one("aws:iam/rolePolicy:RolePolicy", name))
        for statement in policy.statements:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "*" in resources:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                assert all(a.startswith("ec2:Describe") for a in actions), (name, actions)
    scale_up = Policy.of(program.one("aws:iam/rolePolicy:RolePolicy", "control-scale-up"))
    assert scale_up.resources_for("iam:PassRole") == [program.exports["instanceRoleArn"]]
    (terminate,) = [
        s
        for s in Policy.of(program.one("aws:iam/rolePolicy:RolePolicy", "control-reaper")).statements
        if s["Action"] == "ec2:TerminateInstances"
    ]
    assert terminate["Condition"] == {"StringEquals": {"aws:ResourceTag/vpc-runners:fleet": "test"}}


def test_new_vpc_has_private_subnets_in_two_zones_behind_nat(run_program):
    program = run_program(CONFIGS["new VPC, two databases"])
    subnets = [s.inputs for s in program.of("aws:ec2/subnet:Subnet")]
    private = [s for s in subnets if "private" in s["tags"]["Name"]]
    assert len(private) == 2 and len({s["availabilityZone"] for s in private}) == 2
    assert all(s["mapPublicIpOnLaunch"] is False for s in subnets)
    assert len(program.of("aws:ec2/natGateway:NatGateway")) == 1
    blocks = [ipaddress.ip_network(s["cidrBlock"]) for s in subnets]
    assert not any(a.overlaps(b) for i, a in enumerate(blocks) for b in blocks[i + 1 :])
    routes = [r.inputs for r in program.of("aws:ec2/route:Route")]
    assert any("natGatewayId" in r for r in routes)


def test_spot_setting_reaches_the_scale_up_function(run_program):
    program = run_program(CONFIGS["spot on"])
    assert program.one(rules.LAMBDA, "scale-up").inputs["environment"]["variables"]["SPOT"] == "true"
