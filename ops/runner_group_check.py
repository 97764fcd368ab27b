"""The second lock, GitHub's own: check that the stack's runner group is closed (`scripts/runner-group-check`).

GitHub enforces at job assignment only the runner group's settings. The stack's admission policy
(runner/control_plane/admission.py) decides who gets a runner launched; the group decides which jobs
may take a registered runner. A platform team should set the group to selected repositories, selected
workflows and no public repositories. This reads the group (``GET /orgs/{org}/actions/runner-groups/{id}``
and its repositories) with a token that may read it, and warns about each open setting.

Exit codes: 0 closed; 1 open (each warning printed); 2 bad arguments or no such group; 3 GitHub unreachable
or the token refused.
"""

from __future__ import annotations

import argparse
import enum
import os
import sys
from collections.abc import Sequence
from typing import Any

from runner.control_plane.errors import GitHubError
from runner.control_plane.github import GitHubClient, TokenAuth


class Exit(enum.IntEnum):
    CLOSED = 0
    OPEN = 1
    BAD_INPUT = 2
    CANNOT_CONNECT = 3


def findings(group: dict[str, Any], repositories: list[str] | None, allowed: Sequence[str]) -> list[str]:
    """What is open about a runner group, as sentences (empty: closed)."""
    found = []
    name = group.get("name", group.get("id"))
    if group.get("visibility") == "all":
        found.append(f"runner group {name!r} is open to every repository of the organization: select repositories")
    if group.get("allows_public_repositories"):
        found.append(f"runner group {name!r} allows public repositories: anyone can open a pull request there")
    if not group.get("restricted_to_workflows"):
        found.append(f"runner group {name!r} is not restricted to selected workflows: select the migration workflows")
    if repositories is not None and allowed and list(allowed) != ["*"]:
        extra = sorted(set(repositories) - set(allowed))
        if extra:
            found.append(
                f"runner group {name!r} admits repositories outside the stack's allow-list: {', '.join(extra)}"
            )
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Warn about each open setting of the stack's runner group (token from GITHUB_TOKEN)."""
    parser = argparse.ArgumentParser(prog="runner-group-check", description=main.__doc__)
    parser.add_argument("--org", required=True, help="the organization (the stack's github.owner)")
    parser.add_argument("--group", type=int, required=True, help="the numeric runner group id (github.runnerGroup)")
    parser.add_argument("--allowed", nargs="*", default=[], help="the stack's github.repositories, to compare")
    parser.add_argument("--api-url", default=os.environ.get("GITHUB_API_URL", "https://api.github.com"))
    args = parser.parse_args(argv)
    token = os.environ.get("GITHUB_TOKEN")
    if not token:
        print("runner-group-check: set GITHUB_TOKEN to a token that may read the organization's runner groups")
        return Exit.BAD_INPUT
    client = GitHubClient(args.api_url.rstrip("/"), args.org, TokenAuth(token))
    base = f"/orgs/{args.org}/actions/runner-groups/{args.group}"
    try:
        group = client.call("GET", base)
        repositories = None
        if group.get("visibility") == "selected":
            listed = client.pages(f"{base}/repositories?per_page=100", "repositories")
            repositories = [r["full_name"] for r in listed]
    except GitHubError as err:
        if err.status == 404:
            print(f"runner-group-check: no runner group {args.group} in {args.org}")
            return Exit.BAD_INPUT
        print(f"runner-group-check: {err}")
        return Exit.CANNOT_CONNECT
    problems = findings(group, repositories, args.allowed)
    for problem in problems:
        print(f"warning: {problem}")
    if not problems:
        print(f"runner group {group.get('name')!r} is closed: selected repositories and workflows, no public ones")
    return Exit.OPEN if problems else Exit.CLOSED


if __name__ == "__main__":
    sys.exit(main())
