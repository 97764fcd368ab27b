"""Counters as CloudWatch embedded metric format (EMF) lines: Lambda ships stdout to CloudWatch Logs,
which turns each line into a metric in the ``vpc-runners`` namespace, dimension ``Fleet``."""

from __future__ import annotations

import json
import sys
import time

NAMESPACE = "vpc-runners"


def emit(fleet: str, name: str, value: float = 1, **properties: str) -> None:
    line = {
        "_aws": {
            "Timestamp": int(time.time() * 1000),
            "CloudWatchMetrics": [
                {"Namespace": NAMESPACE, "Dimensions": [["Fleet"]], "Metrics": [{"Name": name, "Unit": "Count"}]}
            ],
        },
        "Fleet": fleet,
        name: value,
        **properties,
    }
    print(json.dumps(line), file=sys.stdout, flush=True)
