"""Ingest's published OpenAPI, fuzzed with schemathesis against the real ``yobidashi-ingest``.

Cases are generated from ``/openapi.json`` as the running process serves it: schema-conforming
bodies (positive) and schema-violating ones (negative), each sent with the right bearer token,
without one, and with a wrong one. Whatever comes in: never a 5xx, every 4xx is JSON with an
``error`` and a ``message``, every answer conforms to the responses the schema documents, and
without the right token it is always 401.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing.stack import stored_alerts

pytestmark = pytest.mark.integration

TOKEN = "schemathesis-ingest-token-0123"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
ERRORS = {"unauthorized", "invalid_json", "invalid_payload", "too_large"}
AUTHS: dict[str, dict[str, str]] = {
    "right": {"Authorization": f"Bearer {TOKEN}"},
    "none": {},
    "wrong": {"Authorization": f"Bearer {TOKEN[:-1]}X"},
    "basic": {"Authorization": f"Basic {TOKEN}"},
}


@pytest.fixture
def ingest_env() -> dict[str, str]:
    """For conftest's ``ingest``."""
    return {"INGEST_TOKEN": TOKEN, "INGEST_MAX_BODY_BYTES": "65536"}


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False  # loopback only: no proxy from the environment
        yield http


def load_schema(base_url: str) -> Any:
    with httpx.Client(trust_env=False, timeout=10) as http:
        raw = http.get(f"{base_url}/openapi.json").raise_for_status().json()
    assert raw["openapi"].startswith("3.1")
    return schemathesis.openapi.from_dict(raw)


def fuzz(
    operation: Any,
    mode: GenerationMode,
    auths: Mapping[str, object],
    send: Callable[[Case[Any], str], None],
    max_examples: int,
) -> None:
    """``send`` each case hypothesis makes for ``operation``, with one of ``auths`` named."""

    @settings(
        max_examples=max_examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        database=None,
    )
    @given(case=operation.as_strategy(generation_mode=mode), auth=st.sampled_from(list(auths)))
    def run(case: Case[Any], auth: str) -> None:
        send(case, auth)

    run()


def check(
    case: Case[Any],
    response: Response,
    auth: str,
    seen: dict[tuple[str, int], int],
    *,
    right_token: str = AUTHS["right"]["Authorization"],
    errors: AbstractSet[str] = ERRORS,
) -> None:
    """schemathesis's own response checks, then ours. A read (GET) needs no token; anything
    else without ``right_token`` is 401, and a 4xx names one of ``errors``."""
    case.validate_response(response, checks=CHECKS)
    status = response.status_code
    seen[(auth, status)] = seen.get((auth, status), 0) + 1
    assert status < 500, f"{status} for {case.body!r:.500}: {response.text:.500}"
    if case.method != "GET":
        sent = response.request.headers.get("Authorization")
        if sent != right_token:
            # Not ours, or negative generation replaced it with something schema-violating.
            assert status == 401, f"{auth} token ({sent!r}) got {status}: {response.text:.300}"
        elif status == 401:
            raise AssertionError(f"the right token was refused: {response.text:.300}")
    if 400 <= status < 500:
        assert response.headers["content-type"][0].startswith("application/json")
        body = json.loads(response.content)
        assert body.get("error") in errors, body
        assert body["message"]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
async def test_generated_cases_never_5xx_and_4xx_are_json(
    ingest: ServiceProcess,
    nats_server: NatsServer,
    session: requests.Session,
    mode: GenerationMode,
) -> None:
    schema = load_schema(ingest.url)
    operation = schema["/v1/zabbix"]["POST"]
    seen: dict[tuple[str, int], int] = {}
    accepted: list[str] = []

    def send(case: Case[Any], auth: str) -> None:
        response = case.call(base_url=ingest.url, session=session, headers=AUTHS[auth])
        check(case, response, auth, seen)
        if response.status_code == 202 and not response.json()["duplicate"]:
            accepted.append(response.json()["id"])

    fuzz(operation, mode, AUTHS, send, max_examples=150)
    print(mode.value, dict(sorted(seen.items())))
    # The run exercised both sides of the door, so passing means something.
    assert any(auth == "right" for auth, _ in seen)
    assert any(auth != "right" for auth, _ in seen)
    if mode is GenerationMode.POSITIVE:
        assert seen.get(("right", 202)), "no schema-conforming body was accepted"
    else:
        assert seen.get(("right", 422)), "no schema-violating body was refused"
    events = await stored_alerts(nats_server.url)
    assert sorted(e.dedup_key for e in events) == sorted(accepted)
