"""The runner instance's user data: a real shell file, rendered by the stack.

``render`` fills each ``@@NAME@@`` placeholder with a shell-quoted value, so no configuration value
can break out into code, and refuses unknown or missing names.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path

TEMPLATE = Path(__file__).with_name("runner-user-data.sh")
PLACEHOLDER = re.compile(r"@@([A-Z0-9_]+)@@")
# The actions/runner release pinned by default, with its published SHA-256 (linux x64).
DEFAULT_RUNNER_VERSION = "2.321.0"
DEFAULT_RUNNER_SHA256 = "ba46ba7ce3a4d7236b16fbe44419fb453bc08f866b24f04d549ec89f1722a29e"


def placeholders() -> set[str]:
    return set(PLACEHOLDER.findall(TEMPLATE.read_text()))


def render(values: Mapping[str, str]) -> str:
    template = TEMPLATE.read_text()
    wanted = placeholders()
    missing, unknown = wanted - values.keys(), values.keys() - wanted
    if missing or unknown:
        raise ValueError(f"user data placeholders: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return PLACEHOLDER.sub(lambda m: shlex.quote(str(values[m[1]])), template)
