"""The control plane without AWS or GitHub, for tests, benchmarks and trying a configuration.

    fake_github.py  a fake GitHub REST API on loopback (App JWTs, installation tokens, jobs, runs,
                    runners, runner groups, injected faults)
    harness.py      `python -m simulator.harness EVENT.json`: replay a webhook through the real
                    receiver, queue and scale-up code against moto and the fake GitHub

Never shipped: the Lambda package holds only what the handlers import (infra/artifacts.py).
"""
