"""RunnerNetwork: where the runners live. An existing VPC's private subnets, or a new VPC with
private subnets in two availability zones whose only way out is a NAT gateway."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class RunnerNetworkArgs:
    create_vpc: bool
    vpc_id: str | None = None
    private_subnet_ids: tuple[str, ...] = ()
    cidr: str = "10.80.0.0/16"
    zones: int = 2
    tags: dict[str, str] | None = None


class RunnerNetwork(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: RunnerNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("vpc-runners:network:RunnerNetwork", name, None, opts)
        if not args.create_vpc:
            self.vpc_id = pulumi.Output.from_input(args.vpc_id or "")
            self.private_subnet_ids = pulumi.Output.from_input(list(args.private_subnet_ids))
        else:
            self._create(name, args)
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids})

    def _create(self, name: str, args: RunnerNetworkArgs) -> None:
        child = pulumi.ResourceOptions(parent=self)
        tags = args.tags or {}
        zones = aws.get_availability_zones(state="available").names[: args.zones]
        blocks = list(ipaddress.ip_network(args.cidr).subnets(new_prefix=20))
        vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=args.cidr,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags={**tags, "Name": f"{name}-vpc"},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=tags, opts=child)
        public_routes = aws.ec2.RouteTable(f"{name}-public", vpc_id=vpc.id, tags=tags, opts=child)
        aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )
        # The NAT gateway sits in a public subnet; runners never do, and never get public addresses.
        public = aws.ec2.Subnet(
            f"{name}-public-0",
            vpc_id=vpc.id,
            cidr_block=str(blocks[0]),
            availability_zone=zones[0],
            map_public_ip_on_launch=False,
            tags={**tags, "Name": f"{name}-public-0"},
            opts=child,
        )
        aws.ec2.RouteTableAssociation(
            f"{name}-public-0", subnet_id=public.id, route_table_id=public_routes.id, opts=child
        )
        address = aws.ec2.Eip(f"{name}-nat", domain="vpc", tags=tags, opts=child)
        nat = aws.ec2.NatGateway(
            f"{name}-nat",
            allocation_id=address.id,
            subnet_id=public.id,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[gateway]),
        )
        private_routes = aws.ec2.RouteTable(f"{name}-private", vpc_id=vpc.id, tags=tags, opts=child)
        aws.ec2.Route(
            f"{name}-private-default",
            route_table_id=private_routes.id,
            destination_cidr_block="0.0.0.0/0",
            nat_gateway_id=nat.id,
            opts=child,
        )
        private = []
        for i, zone in enumerate(zones):
            subnet = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=vpc.id,
                cidr_block=str(blocks[8 + i]),
                availability_zone=zone,
                map_public_ip_on_launch=False,
                tags={**tags, "Name": f"{name}-private-{i}"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=subnet.id, route_table_id=private_routes.id, opts=child
            )
            private.append(subnet)
        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*[s.id for s in private]).apply(list)
