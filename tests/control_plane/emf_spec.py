"""The CloudWatch embedded metric format, as AWS's specification states it ("Specification: Embedded
metric format", CloudWatch User Guide): what CloudWatch Logs needs to turn a log line into metrics.
A line that breaks it is kept as a log line and produces no metric, silently; so every metric line the
kit writes is held to this."""

from __future__ import annotations

from typing import Any

UNITS = {
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}  # fmt: skip


def problems(document: Any) -> list[str]:
    """Why ``document`` is not a valid EMF document (empty: it is)."""
    if not isinstance(document, dict):
        return ["the root is not an object"]
    meta = document.get("_aws")
    if not isinstance(meta, dict):
        return ["no _aws object"]
    found = []
    if not isinstance(meta.get("Timestamp"), int) or isinstance(meta.get("Timestamp"), bool):
        found.append("_aws.Timestamp must be an integer (epoch milliseconds)")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*found, "_aws.CloudWatchMetrics must be a non-empty array"]
    for directive in directives:
        namespace = directive.get("Namespace")
        if not isinstance(namespace, str) or not 1 <= len(namespace) <= 1024:
            found.append("Namespace must be a string of 1 to 1024 characters")
        dimension_sets = directive.get("Dimensions")
        if not isinstance(dimension_sets, list):
            found.append("Dimensions must be an array of dimension sets")
            dimension_sets = []
        for dimensions in dimension_sets:
            if not isinstance(dimensions, list) or len(dimensions) > 30:
                found.append("a dimension set must be an array of at most 30 names")
                continue
            for name in dimensions:
                if not isinstance(document.get(name), str):
                    found.append(f"dimension {name!r} must be a string member of the root")
        metrics = directive.get("Metrics")
        if not isinstance(metrics, list) or not 1 <= len(metrics) <= 100:
            found.append("Metrics must be an array of 1 to 100 definitions")
            continue
        for metric in metrics:
            name, unit = metric.get("Name"), metric.get("Unit", "None")
            value = document.get(name)
            if not isinstance(name, str) or not 1 <= len(name) <= 1024:
                found.append("a metric Name must be a string of 1 to 1024 characters")
            elif isinstance(value, bool) or not isinstance(value, int | float | list):
                found.append(f"metric {name!r} must have a number (or array of numbers) at the root")
            if unit not in UNITS:
                found.append(f"metric {name!r}: unit {unit!r} is not a CloudWatch unit")
    return found
