"""JSON Schema validators taken straight from the SDU contract (`contract.yaml`, OpenAPI 3.1).

OpenAPI 3.1 schema objects are JSON Schema 2020-12, so each response schema is validated with
`Draft202012Validator`, its `$ref`s resolved against the whole contract document. The contract is read
once and validators are cached per (method, path, status): nothing is parsed per request.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT_PATH = Path(__file__).with_name("contract.yaml")
_CONTRACT_URI = "urn:ct-ses:sdu-contract"

_DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
_DATE_TIME_RE = re.compile(
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)

# Our own format checker: jsonschema only checks "date-time" when an optional package is installed,
# and the contract relies on both formats.
FORMAT_CHECKER = FormatChecker(formats=())


def _check_format(name: str, pattern: re.Pattern[str], parse: Callable[[str], object]) -> None:
    """Register `name`: a string of that shape that `parse` accepts (a ValueError means it is not,
    e.g. February 30); values of other types are left to the schema's `type`."""

    @FORMAT_CHECKER.checks(name, raises=ValueError)
    def check(instance: object) -> bool:
        if not isinstance(instance, str):
            return True
        if not pattern.match(instance):
            return False
        parse(instance)
        return True


_check_format("date", _DATE_RE, date.fromisoformat)
_check_format("date-time", _DATE_TIME_RE, datetime.fromisoformat)


@functools.cache
def contract() -> dict[str, Any]:
    """The parsed contract document."""
    with CONTRACT_PATH.open(encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@functools.cache
def _registry() -> Registry:
    resource = Resource.from_contents(contract(), default_specification=DRAFT202012)
    return Registry().with_resource(_CONTRACT_URI, resource)


def _pointer(*parts: str) -> str:
    return "".join("/" + quote(p.replace("~", "~0").replace("/", "~1"), safe="~") for p in parts)


def _validator(pointer: str) -> Draft202012Validator:
    return Draft202012Validator(
        _inline(_resolve(pointer), (pointer,)), registry=_registry(), format_checker=FORMAT_CHECKER
    )


def _resolve(pointer: str) -> Any:
    return _registry().resolver().lookup(f"{_CONTRACT_URI}#{pointer}").contents


def _inline(node: Any, path: tuple[str, ...]) -> Any:
    """The schema with the contract's local `$ref`s copied in: validating then costs half as much as
    resolving each reference through the registry on every answer. A reference back to a schema it is
    inside (recursion) stays a reference, resolved by the registry."""
    if isinstance(node, list):
        return [_inline(item, path) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        rest = {k: _inline(v, path) for k, v in node.items() if k != "$ref"}
        pointer = ref[1:]
        if pointer in path:
            return {**rest, "$ref": f"{_CONTRACT_URI}#{pointer}"}
        target = _inline(_resolve(pointer), (*path, pointer))
        return {"allOf": [target], **rest} if rest else target
    return {k: _inline(v, path) for k, v in node.items()}


def _operation(method: str, path: str) -> dict[str, Any]:
    try:
        return contract()["paths"][path][method.lower()]
    except KeyError:
        raise KeyError(f"the contract has no operation {method.upper()} {path}") from None


@functools.cache
def response_validator(method: str, path: str, status: int) -> Draft202012Validator:
    """Validator for the JSON body of `status` from `method path` (path as templated in the contract,
    e.g. `/v1/cases/{case_number}/summary`). KeyError when the contract does not define that status."""
    responses = _operation(method, path)["responses"]
    if str(status) not in responses:
        raise KeyError(f"the contract defines no {status} for {method.upper()} {path}")
    response = responses[str(status)]
    parts = ["paths", path, method.lower(), "responses", str(status)]
    if "$ref" in response:  # a shared response object: follow it to its content
        ref = response["$ref"]
        assert ref.startswith("#/")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in ref[2:].split("/")]
    return _validator(_pointer(*parts, "content", "application/json", "schema"))


@functools.cache
def request_body_validator(method: str, path: str) -> Draft202012Validator:
    """Validator for the JSON request body of `method path`."""
    _operation(method, path)["requestBody"]  # KeyError when there is none
    return _validator(
        _pointer("paths", path, method.lower(), "requestBody", "content", "application/json", "schema")
    )


def prepare() -> None:
    """Every validator of the contract built now, at start-up: a worker's first SDU answer (or the stub's
    first PIN check) is then validated without reading the contract while a caller waits."""
    for path, operations in contract()["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            for status, response in operation["responses"].items():
                if status.isdigit() and ("$ref" in response or "application/json" in response.get("content", {})):
                    response_validator(method.upper(), path, int(status))
            if "application/json" in (operation.get("requestBody") or {}).get("content", {}):
                request_body_validator(method.upper(), path)


def defined_statuses(method: str, path: str) -> set[int]:
    """The response statuses the contract defines for one operation."""
    return {int(s) for s in _operation(method, path)["responses"]}
