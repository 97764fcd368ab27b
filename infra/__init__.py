"""The Pulumi program (project ``vpc-runners``): a private-subnet runner fleet with database access.

Where things live:
    __main__.py       wires the components together and exports the outputs
    settings.py       the stack configuration, read and validated in one place
    network.py        RunnerNetwork: the existing VPC, or a new one with private subnets and NAT
    access.py         RunnerSecurityGroup and DatabaseAccess: no inbound rules, egress by need
    runner_fleet.py   RunnerFleet: instance role, package, log group, launch template
    control_plane.py  ControlPlane: webhook, queue, scale-up and reaper Lambdas, their roles and logs
    artifacts.py      builds what the stack ships from uv.lock: the runner package and the Lambda layer
    policy/           a policy pack enforcing the security properties (pulumi preview --policy-pack)
"""
