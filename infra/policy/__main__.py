"""vpc-runners policy pack: `pulumi preview --policy-pack infra/policy` enforces rules.py."""

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from rules import RULES, runner_group_ingress


def _resource_policy(name, description, rule):
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation):
        for message in rule(args.resource_type, args.props):
            report_violation(message)

    return ResourceValidationPolicy(
        name=name, description=description, validate=validate, enforcement_level=EnforcementLevel.MANDATORY
    )


def _stack_validate(args: StackValidationArgs, report_violation: ReportViolation):
    for message in runner_group_ingress([(r.resource_type, r.props) for r in args.resources]):
        report_violation(message)


PolicyPack(
    name="vpc-runners-security",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        *(_resource_policy(name, description, rule) for name, (description, rule) in RULES.items()),
        StackValidationPolicy(
            name="runner-sg-no-ingress", description="Nothing may reach the runners.", validate=_stack_validate
        ),
    ],
)
