"""A test-side model of how the GitHub Actions runner finds workflow commands in a step's output.

Written from the runner's documented behaviour, to check what it would do with vpc-migrate's log:

* Output is read line by line; a line ends at LF, CR or CR LF.
* V2 syntax: after trimming leading white space the line starts with ``::``; the command info runs to
  the next ``::`` and the data is everything after it. The info is ``name`` or ``name props`` (split at
  the first space), props are ``key=value`` pairs separated by ``,``. The name must be a registered
  command (case-insensitive).
* Legacy syntax, tried only when V2 does not parse: the first ``##[`` anywhere in the line, the info up
  to the next ``]``, props ``key=value`` separated by ``;``, data after the ``]``.
* Data is unescaped (``%25`` ``%0D`` ``%0A``; legacy also ``%3B`` ``%5D``); V2 property values also
  ``%3A`` ``%2C``.
* ``stop-commands`` with data TOKEN makes every later command be ignored until one named TOKEN (the
  runner registers the token as a command for that time, so ``::TOKEN::`` resumes; so would
  ``##[TOKEN]``). An empty token never resumes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

REGISTERED = frozenset(
    {
        "add-mask",
        "error",
        "warning",
        "notice",
        "debug",
        "group",
        "endgroup",
        "set-output",
        "save-state",
        "add-path",
        "set-env",
        "echo",
        "stop-commands",
        "add-matcher",
        "remove-matcher",
    }
)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_V2_DATA = {"%25": "%", "%0D": "\r", "%0A": "\n"}
_V2_PROPERTY = {**_V2_DATA, "%3A": ":", "%2C": ","}
_LEGACY = {**_V2_DATA, "%3B": ";", "%5D": "]"}


@dataclass(frozen=True)
class Command:
    name: str  # lower case
    data: str
    properties: Mapping[str, str] = field(default_factory=dict)
    form: Literal["v2", "legacy"] = "v2"
    line: int = 0  # 0-based index of the line in the output
    resume: bool = False  # the command that ended a stop-commands fence (its name is the token)


@dataclass
class Parsed:
    commands: list[Command]
    stopped_by: str | None  # the token of a stop-commands still in force at the end, if any

    def names(self) -> list[str]:
        return [c.name for c in self.commands]


def _unescape(text: str, table: Mapping[str, str]) -> str:
    pattern = "|".join(re.escape(k) for k in table)
    return re.sub(pattern, lambda m: table[m.group(0)], text) if text else text


def _name_and_props(info: str, separator: str, table: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    name, _, rest = info.partition(" ")
    props: dict[str, str] = {}
    for item in rest.strip().split(separator):
        key, eq, value = item.partition("=")
        if key and eq and value:
            props[key] = _unescape(value, table)
    return name, props


def parse_v2(line: str, registered: frozenset[str] = REGISTERED) -> Command | None:
    body = line.lstrip()
    if not body.startswith("::"):
        return None
    end = body.find("::", 2)
    if end < 0:
        return None
    name, props = _name_and_props(body[2:end], ",", _V2_PROPERTY)
    if name.lower() not in registered:
        return None
    return Command(name.lower(), _unescape(body[end + 2 :], _V2_DATA), props, "v2")


def parse_legacy(line: str, registered: frozenset[str] = REGISTERED) -> Command | None:
    start = line.find("##[")
    if start < 0:
        return None
    close = line.find("]", start)
    if close < 0:
        return None
    name, props = _name_and_props(line[start + 3 : close], ";", _LEGACY)
    if name.lower() not in registered:
        return None
    return Command(name.lower(), _unescape(line[close + 1 :], _LEGACY), props, "legacy")


def parse_line(line: str, registered: frozenset[str] = REGISTERED) -> Command | None:
    """The command the runner would read from one line, V2 first, ignoring stop-commands state."""
    return parse_v2(line, registered) or parse_legacy(line, registered)


def processed_commands(output: str) -> Parsed:
    """Every command the runner would process in ``output`` (one stream, or both merged in order)."""
    commands: list[Command] = []
    token: str | None = None
    for number, line in enumerate(_LINE_BREAK.split(output)):
        registered = (REGISTERED | {token.lower()}) if token else REGISTERED
        command = parse_line(line, registered)
        if command is None:
            continue
        command = Command(command.name, command.data, command.properties, command.form, number)
        if token is not None:  # stopped: only the token resumes (and an empty token never does)
            if token and command.name == token.lower():
                commands.append(Command(command.name, command.data, command.properties, command.form, number, True))
                token = None
            continue
        commands.append(command)
        if command.name == "stop-commands":
            token = command.data
    return Parsed(commands, token)
