"""GitHub's own published references, read from the npm packages pinned in tests/js/package.json.

- ``@octokit/openapi``: GitHub's REST API description (OpenAPI 3.0.3) for api.github.com,
  ``generated/api.github.com.json``. Operations are found by method and path template; response
  schemas are translated to JSON Schema (draft 2020-12) for ``jsonschema``: ``nullable: true`` becomes
  "or null", ``$ref`` resolves within the document, OpenAPI-only keywords are dropped.
- ``@octokit/webhooks-examples``: example webhook deliveries GitHub's documentation shows, per event.

Both are installed by ``npm ci`` in tests/js (scripts/dev_env.py does it); a missing one fails the test
that needs it, naming the command.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest

JS_TOOLS = Path(__file__).resolve().parents[1] / "js"
MODULES = JS_TOOLS / "node_modules"
OPENAPI_PACKAGE = "@octokit/openapi"
OPENAPI = MODULES / OPENAPI_PACKAGE / "generated" / "api.github.com.json"
EXAMPLES_PACKAGE = "@octokit/webhooks-examples"
EXAMPLES = MODULES / EXAMPLES_PACKAGE

# OpenAPI 3.0 keywords with no JSON Schema meaning (annotations), dropped in translation.
_DROPPED = {"nullable", "example", "examples", "discriminator", "readOnly", "writeOnly", "xml", "externalDocs"}
_SCHEMA_REF = re.compile(r"^#/components/schemas/([^/]+)$")


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.fail(
            f"{path.relative_to(JS_TOOLS.parent.parent)} is missing: install the npm test tools "
            "(cd tests/js && npm ci --no-audit --no-fund, or python3 scripts/dev_env.py test)"
        )
    return path


def installed_version(package: str) -> str:
    version: str = json.loads(_require(MODULES / package / "package.json").read_text())["version"]
    return version


def pinned_version(package: str) -> str:
    version: str = json.loads((JS_TOOLS / "package.json").read_text())["dependencies"][package]
    return version


@functools.cache
def description() -> dict[str, Any]:
    """GitHub's REST API description for api.github.com."""
    document: dict[str, Any] = json.loads(_require(OPENAPI).read_text())
    return document


def _pointer(document: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise LookupError(f"only local $refs are expected in GitHub's description, not {ref}")
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def _resolve(document: dict[str, Any], node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _pointer(document, node["$ref"])
    return node


# -- OpenAPI 3.0 schema -> JSON Schema 2020-12 ------------------------------------------------------------
def to_json_schema(schema: dict[str, Any], document: dict[str, Any], *, closed: bool = False) -> dict[str, Any]:
    """A self-contained JSON Schema for an OpenAPI schema of ``document``.

    ``closed``: objects that list their properties (and say nothing of others) admit no others, so an
    answer with a misspelt or invented field fails. GitHub may add fields at any time, so this is for
    holding a fake to the description, not for reading GitHub itself.
    """
    defs: dict[str, Any] = {}
    todo: list[str] = []

    def ref(name: str) -> dict[str, Any]:
        if name not in defs:
            defs[name] = None  # claimed: converted below, once
            todo.append(name)
        return {"$ref": f"#/$defs/{name}"}

    def convert(node: Any, close: bool) -> Any:
        if isinstance(node, bool):
            return node
        if not isinstance(node, dict):
            raise TypeError(f"not a schema: {node!r}")
        if "$ref" in node:
            match = _SCHEMA_REF.match(node["$ref"])
            if not match:
                raise LookupError(f"unexpected $ref in a schema: {node['$ref']}")
            if close != closed:  # an allOf member stays open: inlined, not the shared closed definition
                return convert(_pointer(document, node["$ref"]), close)
            return ref(match[1])
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROPPED or key.startswith("x-"):
                continue
            if key == "properties":
                out[key] = {name: convert(sub, closed) for name, sub in value.items()}
            elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
                out[key] = convert(value, closed)
            elif key in ("anyOf", "oneOf"):
                out[key] = [convert(sub, close) for sub in value]
            elif key == "allOf":
                out[key] = [convert(sub, False) for sub in value]
            elif key in ("exclusiveMinimum", "exclusiveMaximum") and isinstance(value, bool):
                bound = "minimum" if key == "exclusiveMinimum" else "maximum"
                if value and bound in node:
                    out[key] = node[bound]
            else:
                out[key] = value
        if "exclusiveMinimum" in out and "minimum" in out:
            del out["minimum"]
        if "exclusiveMaximum" in out and "maximum" in out:
            del out["maximum"]
        if close and "properties" in out and "additionalProperties" not in out and "allOf" not in out:
            out["additionalProperties"] = False
        if node.get("nullable") is True:
            return {"anyOf": [{"type": "null"}, out]}
        return out

    root = convert(schema, closed)
    while todo:
        name = todo.pop()
        defs[name] = convert(_pointer(document, f"#/components/schemas/{name}"), closed)
    wrapped: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "allOf": [root]}
    if defs:
        wrapped["$defs"] = defs
    return wrapped


def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)", value):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and parts.netloc)


FORMATS = jsonschema.FormatChecker(formats=())
FORMATS.checks("date-time")(_date_time)
FORMATS.checks("uri")(_uri)
FORMATS.checks("email")(lambda value: not isinstance(value, str) or "@" in value)


def problems(instance: Any, schema: dict[str, Any]) -> list[str]:
    """Every way ``instance`` breaks ``schema`` (a translated one), as ``path: message`` lines."""
    validator = jsonschema.Draft202012Validator(schema, format_checker=FORMATS)
    found = []
    for err in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path))):
        # An anyOf failure (every nullable field) says little by itself: name its best-matching cause.
        cause = jsonschema.exceptions.best_match(err.context) if err.context else err
        where = "/".join(map(str, (cause or err).absolute_path)) or "(body)"
        found.append(f"{where}: {(cause or err).message}"[:400])
    return found


# -- operations -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    template: str  # e.g. /repos/{owner}/{repo}/actions/jobs/{job_id}
    spec: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.spec.get("operationId", f"{self.method} {self.template}"))

    def statuses(self) -> set[str]:
        return set(self.spec.get("responses", {}))

    def documents(self, status: int) -> bool:
        return str(status) in self.statuses()

    def response(self, status: int) -> dict[str, Any]:
        responses = self.spec.get("responses", {})
        if str(status) not in responses:
            raise LookupError(f"{self.id} documents no {status} answer (it documents {sorted(responses)})")
        found: dict[str, Any] = _resolve(description(), responses[str(status)])
        return found

    def response_schema(self, status: int, *, closed: bool = False) -> dict[str, Any] | None:
        """The JSON Schema of the ``status`` answer's JSON body, or None when it has no body (e.g. 204)."""
        content = self.response(status).get("content", {})
        if not content:
            return None
        media = content.get("application/json") or next(iter(content.values()))
        return to_json_schema(media["schema"], description(), closed=closed)

    def response_headers(self, status: int) -> set[str]:
        return {name.lower() for name in self.response(status).get("headers", {})}

    def request_schema(self) -> dict[str, Any] | None:
        body = _resolve(description(), self.spec.get("requestBody"))
        if not body:
            return None
        return to_json_schema(body["content"]["application/json"]["schema"], description())

    def parameters(self) -> dict[str, dict[str, Any]]:
        found = [_resolve(description(), p) for p in self.spec.get("parameters", [])]
        return {p["name"]: p for p in found}


def operation(method: str, template: str) -> Operation:
    """The operation at ``method`` ``template`` in GitHub's description; LookupError if there is none."""
    paths = description()["paths"]
    if template not in paths:
        raise LookupError(f"GitHub's REST description ({OPENAPI_PACKAGE}) has no path {template}")
    spec = paths[template].get(method.lower())
    if spec is None:
        raise LookupError(f"GitHub's REST description has {template} but no {method.upper()} on it")
    return Operation(method.upper(), template, spec)


def _template_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts) + "$")


@functools.cache
def _patterns() -> list[tuple[int, str, re.Pattern[str]]]:
    # Most literal characters first, so /actions/runners/generate-jitconfig beats /actions/runners/{runner_id}.
    found = [(len(re.sub(r"\{[^}]+\}", "", t)), t, _template_pattern(t)) for t in description()["paths"]]
    return sorted(found, key=lambda item: -item[0])


# The id forms GitHub's Link headers use, and the documented paths they stand for.
_ID_FORMS = [
    (re.compile(r"^/organizations/\d+/"), "/orgs/{org}/"),
    (re.compile(r"^/repositories/\d+/"), "/repos/{owner}/{repo}/"),
]


def operation_for(method: str, path: str) -> Operation:
    """The documented operation a concrete request path (no query) is an instance of."""
    for pattern, documented in _ID_FORMS:
        path = pattern.sub(documented, path)
    for _, template, pattern in _patterns():
        if pattern.match(path) and method.lower() in description()["paths"][template]:
            return operation(method, template)
    raise LookupError(f"no operation in GitHub's REST description matches {method} {path}")


def webhook_examples(event: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, payload) of every published example of ``event``, for api.github.com and each GHES
    version the package carries, duplicates left out."""
    seen: set[str] = set()
    for index in sorted(_require(EXAMPLES).glob("*/index.json")):
        for entry in json.loads(index.read_text()):
            if entry["name"] != event:
                continue
            for n, example in enumerate(entry["examples"]):
                key = json.dumps(example, sort_keys=True)
                if key not in seen:
                    seen.add(key)
                    yield f"{index.parent.name}#{n}", example
