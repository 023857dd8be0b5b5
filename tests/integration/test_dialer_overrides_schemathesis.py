"""``/v1/overrides`` and ``/v1/contacts``, fuzzed with schemathesis against the real dialer.

As for ingest: cases come from the dialer's own ``/openapi.json``, schema-conforming and
schema-violating, each with the right admin token, none, or a wrong one. Whatever comes in:
never a 5xx, every 4xx is JSON with an ``error`` and a ``message``, every answer is one the
schema documents, and a change without the right token is always 401.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from schemathesis import Case, GenerationMode

from yobidashi_harness.nats_server import NatsServer
from yobidashi_harness.processes import ServiceProcess
from yobidashi_testing import oncall_yaml
from yobidashi_testing.stack import SimAccount, dialer_process

from .test_ingest_schemathesis import check, fuzz, load_schema

pytestmark = pytest.mark.integration

TOKEN = "schemathesis-admin-token-0123"
AUTHS: dict[str, dict[str, str]] = {
    "right": {"Authorization": f"Bearer {TOKEN}"},
    "none": {},
    "wrong": {"Authorization": f"Bearer {TOKEN[:-1]}X"},
    "basic": {"Authorization": f"Basic {TOKEN}"},
}
ERRORS = {"unauthorized", "invalid_json", "invalid_field", "overlap", "not_found", "too_large"}
CONFIG = oncall_yaml.contacts(
    oncall_yaml.TANAKA_CONTACT, oncall_yaml.SATO_CONTACT
) + oncall_yaml.one_schedule("primary", oncall_yaml.weekly_layer("tanaka"))


@pytest.fixture
def dialer(nats_server: NatsServer, tmp_path: Path) -> Iterator[ServiceProcess]:
    path = tmp_path / "oncall.yaml"
    path.write_text(CONFIG)
    # Overrides never reach Twilio: an address nothing listens on will do.
    account = SimAccount("http://127.0.0.1:9")
    proc = dialer_process(
        nats_server.url, account, tmp_path / "dialer.log",
        YOBIDASHI_CONFIG=str(path), YOBIDASHI_ADMIN_TOKEN=TOKEN,
    )  # fmt: skip
    with proc:
        proc.wait_ready()
        yield proc


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as http:
        http.trust_env = False
        yield http


# A string in a path or a free query string cannot violate its schema: negative cases only
# where there is a body to get wrong.
@pytest.mark.parametrize(
    ("path", "method", "mode"),
    [
        ("/v1/overrides", "POST", GenerationMode.POSITIVE),
        ("/v1/overrides", "POST", GenerationMode.NEGATIVE),
        ("/v1/overrides", "GET", GenerationMode.POSITIVE),
        ("/v1/overrides/{override_id}", "DELETE", GenerationMode.POSITIVE),
        ("/v1/contacts/verify", "POST", GenerationMode.POSITIVE),
        ("/v1/contacts/verify", "POST", GenerationMode.NEGATIVE),
        ("/v1/contacts/verify/{attempt_id}", "GET", GenerationMode.POSITIVE),
        ("/v1/contacts", "GET", GenerationMode.POSITIVE),
    ],
)
def test_override_endpoints_never_5xx_and_4xx_are_json(
    dialer: ServiceProcess,
    session: requests.Session,
    path: str,
    method: str,
    mode: GenerationMode,
) -> None:
    schema = load_schema(dialer.url)
    operation = schema[path][method]
    seen: dict[tuple[str, int], int] = {}

    def send(case: Case[Any], auth: str) -> None:
        response = case.call(base_url=dialer.url, session=session, headers=AUTHS[auth])
        check(
            case, response, auth, seen, right_token=AUTHS["right"]["Authorization"], errors=ERRORS
        )

    fuzz(operation, mode, AUTHS, send, max_examples=100)
    print(method, path, mode.value, dict(sorted(seen.items())))
    assert seen, "no case ran"
    if method != "GET":
        assert any(auth != "right" and status == 401 for auth, status in seen)
    if method == "POST":
        assert seen.get(("right", 422)), "no bad request was refused"
    # What was accepted is readable and well-formed: nothing half-written.
    with httpx.Client(trust_env=False, timeout=10) as http:
        listed = http.get(f"{dialer.url}/v1/overrides").raise_for_status().json()
    if "overrides" not in path:
        return
    for each in listed["overrides"]:
        assert each["schedule"] == "primary"
        assert each["contact"] in {"tanaka", "sato"}
