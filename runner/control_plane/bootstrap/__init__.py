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
# The actions/runner release pinned by default, with the SHA-256 its release notes publish (linux x64).
# Keep it current: GitHub stops giving jobs to runners too far behind, and an outdated runner updates
# itself before its job, a download on every boot (README: "Upgrading").
DEFAULT_RUNNER_VERSION = "2.338.0"
DEFAULT_RUNNER_SHA256 = "af4b794c1bc41d73d40535e3fe092a39f9679cd8d965954c2aca25a05ca41d32"


def placeholders() -> set[str]:
    return set(PLACEHOLDER.findall(TEMPLATE.read_text()))


def render(values: Mapping[str, str]) -> str:
    template = TEMPLATE.read_text()
    wanted = placeholders()
    missing, unknown = wanted - values.keys(), values.keys() - wanted
    if missing or unknown:
        raise ValueError(f"user data placeholders: missing {sorted(missing)}, unknown {sorted(unknown)}")
    return PLACEHOLDER.sub(lambda m: shlex.quote(str(values[m[1]])), template)
