"""Metrics as CloudWatch embedded metric format (EMF) lines: Lambda ships stdout to CloudWatch Logs,
which turns each line into metrics in the ``vpc-runners`` namespace, dimension ``Fleet`` (and, for
counts by cause, ``Fleet, Reason``). Values of a ``Seconds`` metric are kept as a distribution, so
CloudWatch answers p50 and p95 over them."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any

NAMESPACE = "vpc-runners"
# Low-cardinality causes of a failed launch: a metric dimension each (never free text).
LAUNCH_FAILURE_REASONS = ("capacity", "quota", "throttled", "refused", "setup")


def emf(
    fleet: str,
    values: Mapping[str, float],
    *,
    unit: str = "Count",
    reason: str | None = None,
    at_ms: int | None = None,
    **properties: Any,
) -> dict[str, Any]:
    """One EMF document: ``values`` as metrics (one unit), plus plain properties for Logs Insights."""
    dimensions = [["Fleet"], ["Fleet", "Reason"]] if reason is not None else [["Fleet"]]
    return {
        "_aws": {
            "Timestamp": at_ms if at_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": NAMESPACE,
                    "Dimensions": dimensions,
                    "Metrics": [{"Name": name, "Unit": unit} for name in values],
                }
            ],
        },
        "Fleet": fleet,
        **({"Reason": reason} if reason is not None else {}),
        **values,
        **properties,
    }


def emit(fleet: str, name: str, value: float = 1, *, reason: str | None = None, **properties: Any) -> None:
    """A count, optionally by ``reason`` (one of a fixed set: it becomes a dimension)."""
    write(emf(fleet, {name: value}, reason=reason, **properties))


def write(document: Mapping[str, Any]) -> None:
    print(json.dumps(document, separators=(",", ":")), file=sys.stdout, flush=True)
