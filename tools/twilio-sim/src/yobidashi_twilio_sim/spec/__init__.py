"""Twilio's own OpenAPI contract for the Calls endpoints, as ready-made validators.

The trimmed spec next to this file comes from `twilio/twilio-oai`
(`spec/json/twilio_api_v2010.json`, sha256 in `SOURCE_SHA256`); regenerate it with
`tools/twilio-sim/scripts/trim_spec.py`. Any package can check its own requests with
`validate_create_request(form)` and the simulator's answers with `validate_call_response(obj)`.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from jsonschema import Draft202012Validator, FormatChecker

from yobidashi_twilio_sim.util import is_endpoint, is_http_url

SPEC_FILE = Path(__file__).with_name("twilio_calls_v2010.json")
SOURCE_SHA256 = "99cae87a6bb1725f71363364cbd30282a13140374b2d5f9bdd5bdfa5d4c8a6d7"
CALLS_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls.json"
CALL_PATH = "/2010-04-01/Accounts/{AccountSid}/Calls/{Sid}.json"
FORM = "application/x-www-form-urlencoded"

FormLike = Mapping[str, str | Sequence[str]] | str | bytes


class SpecValidationError(ValueError):
    """The instance breaks the spec; `problems` lists every violation found."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(
            f"{what} does not match Twilio's OpenAPI spec:\n  " + "\n  ".join(problems)
        )
        self.problems = problems


@functools.cache
def load_spec() -> dict[str, Any]:
    """The trimmed OpenAPI document, exactly as committed."""
    spec: dict[str, Any] = json.loads(SPEC_FILE.read_text(encoding="utf-8"))
    return spec


def _openapi_to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 `nullable: true` has no JSON Schema equivalent: turn it into a null type."""
    if isinstance(node, list):
        return [_openapi_to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _openapi_to_json_schema(value) for key, value in node.items()}
    if out.pop("nullable", False):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
        if "$ref" in out:
            out = {"anyOf": [{"$ref": out.pop("$ref")}, {"type": "null"}], **out}
    return out


@functools.cache
def _components() -> dict[str, Any]:
    components: dict[str, Any] = _openapi_to_json_schema(load_spec()["components"])
    return components


def _format_checker() -> FormatChecker:
    checker = FormatChecker(formats=())

    @checker.checks("uri")
    def _uri(value: object) -> bool:
        return not isinstance(value, str) or is_http_url(value) or value.startswith("/")

    @checker.checks("endpoint")
    def _endpoint(value: object) -> bool:
        return not isinstance(value, str) or is_endpoint(value)

    @checker.checks("phone-number")
    def _phone(value: object) -> bool:
        return not isinstance(value, str) or is_endpoint(value)

    @checker.checks("http-method")
    def _method(value: object) -> bool:
        return not isinstance(value, str) or value.upper() in ("GET", "POST")

    @checker.checks("date-time-rfc-2822", raises=(TypeError, ValueError))
    def _rfc2822(value: object) -> bool:
        return not isinstance(value, str) or parsedate_to_datetime(value) is not None

    @checker.checks("currency")
    def _currency(value: object) -> bool:
        return not isinstance(value, str) or re.fullmatch(r"[A-Z]{3}", value) is not None

    @checker.checks("twiml", raises=ET.ParseError)
    def _twiml(value: object) -> bool:
        return not isinstance(value, str) or ET.fromstring(value).tag == "Response"  # noqa: S314

    return checker


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    root = {**_openapi_to_json_schema(schema), "components": _components()}
    return Draft202012Validator(root, format_checker=_format_checker())


def _operation(path: str, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = load_spec()["paths"][path][method]
    return operation


def request_schema(path: str, method: str) -> dict[str, Any]:
    body: dict[str, Any] = _operation(path, method)["requestBody"]["content"][FORM]["schema"]
    return copy.deepcopy(body)


def response_schema(path: str, method: str, status: str) -> dict[str, Any]:
    content = _operation(path, method)["responses"][status]["content"]["application/json"]
    schema: dict[str, Any] = content["schema"]
    return copy.deepcopy(schema)


def _as_form(form: FormLike) -> dict[str, list[str]]:
    if isinstance(form, bytes):
        form = form.decode("utf-8")
    if isinstance(form, str):
        return parse_qs(form, keep_blank_values=True)
    return {key: [value] if isinstance(value, str) else list(value) for key, value in form.items()}


def _coerce(form: dict[str, list[str]], schema: dict[str, Any]) -> dict[str, Any]:
    """Form values are strings; give each the JSON type its property declares."""
    properties = schema.get("properties", {})
    instance: dict[str, Any] = {}
    for name, values in form.items():
        kind = properties.get(name, {}).get("type")
        if kind == "array" or len(values) != 1:
            instance[name] = list(values)  # a repeated scalar fails its `type` check
            continue
        value = values[0]
        if kind == "integer" and re.fullmatch(r"-?\d+", value):
            instance[name] = int(value)
        elif kind == "boolean" and value.lower() in ("true", "false"):
            instance[name] = value.lower() == "true"
        else:
            instance[name] = value
    return instance


def _check(what: str, validator: Draft202012Validator, instance: Any) -> None:
    problems = [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    ]
    if problems:
        raise SpecValidationError(what, problems)


def _validate_form(what: str, form: FormLike, path: str, strict: bool) -> dict[str, list[str]]:
    parsed = _as_form(form)
    schema = request_schema(path, "post")
    if strict:
        schema["additionalProperties"] = False  # catch misspelt params Twilio would ignore
    _check(what, _validator(schema), _coerce(parsed, schema))
    return parsed


def validate_create_request(form: FormLike, *, strict: bool = True) -> dict[str, list[str]]:
    """Check a `POST .../Calls.json` form body (dict of lists, dict, or raw body) against
    `CreateCallRequest`. `strict` also rejects params the spec does not know."""
    return _validate_form("CreateCall request", form, CALLS_PATH, strict)


def validate_update_request(form: FormLike, *, strict: bool = True) -> dict[str, list[str]]:
    """Check a `POST .../Calls/{Sid}.json` form body against `UpdateCallRequest`."""
    return _validate_form("UpdateCall request", form, CALL_PATH, strict)


def validate_call_response(obj: Any) -> None:
    """Check a Call resource (create/fetch/update response) against `api.v2010.account.call`."""
    _check("Call resource", _validator(response_schema(CALL_PATH, "get", "200")), obj)


def validate_call_list_response(obj: Any) -> None:
    """Check a `GET .../Calls.json` page against `ListCallResponse`."""
    _check("Call list page", _validator(response_schema(CALLS_PATH, "get", "200")), obj)
