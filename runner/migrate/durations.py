"""Durations as users write them: ``500ms``, ``1s``, ``2min``, ``1h``; a bare number means seconds."""

from __future__ import annotations

import re

from .errors import BadInput

_UNITS_MS = {"ms": 1, "s": 1000, "sec": 1000, "m": 60_000, "min": 60_000, "h": 3_600_000}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|m|min|h)?\s*$")


def parse_duration_ms(text: str, *, what: str) -> int:
    """Return the duration in whole milliseconds; ``what`` names the setting in the error."""
    match = _DURATION.match(text)
    if not match:
        raise BadInput(f"{what}: {text!r} is not a duration (examples: 500ms, 2s, 5min, 0)")
    number, unit = match.groups()
    return round(float(number) * _UNITS_MS[unit or "s"])


def format_ms(ms: float) -> str:
    """Short human form used in progress lines and the step summary."""
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 60_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"
