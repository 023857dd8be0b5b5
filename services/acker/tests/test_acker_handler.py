"""The acker service in-process, against a real nats-server and the Zabbix stand-in.

The stand-in (``yobidashi_zabbix_standin``) answers as Zabbix 6.0.14 does where it matters
(a second ack is stored as a message, close needs manual_close), through the acker's real
client, and fails on demand: down, HTTP 5xx, credentials refused, or the nastiest case, a write
that Zabbix took but whose answer never arrived.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import nats
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from yobidashi_acker.acks import ACKS_BUCKET
from yobidashi_acker.app import create_app
from yobidashi_acker.claims import AckMarker, MarkerState, marker_key
from yobidashi_acker.message import Intent, make_ref
from yobidashi_acker.settings import AckerSettings
from yobidashi_acker.zabbix import EventInfo, HttpZabbixApi, ZabbixError
from yobidashi_common.events import (
    AckOutcome,
    AckResult,
    ContactRef,
    KeyAction,
    KeyPressed,
    ProblemRef,
)
from yobidashi_common.subjects import ACKS_STREAM, DLQ_STREAM
from yobidashi_testing.stack import Bus
from yobidashi_zabbix_standin import (
    CANNOT_CLOSE,
    DROP,
    LOST_ANSWER,
    NOT_AUTHORIZED,
    Fault,
    ZabbixStandIn,
    http_error,
    serve,
)

pytestmark = pytest.mark.integration

USER = "yobidashi-acker"
TOKEN = "t" * 64
PRESSED = datetime(2026, 11, 24, 18, 12, 30, tzinfo=UTC)


def standin(*write_faults: Fault) -> ZabbixStandIn:
    """Zabbix 6.0.14 with problems 1-49 and a recovery event 90; the acker's token. Its first
    writes (``event.acknowledge``) fail with ``write_faults``, in order; reads answer as usual."""
    zabbix = ZabbixStandIn("6.0.14", tokens={TOKEN: USER})
    for eventid in range(1, 50):
        zabbix.add_event(str(eventid))
    zabbix.add_event("90", value="0")
    zabbix.faults.script(*write_faults, method="event.acknowledge")
    return zabbix


def settings(url: str, **overrides: Any) -> AckerSettings:
    return AckerSettings.model_validate(
        {
            "nats_url": url,
            "nats_publish_timeout": 1,
            "zabbix_url": "http://127.0.0.1:9/zabbix",
            "zabbix_api_token": TOKEN,
            "zabbix_timeout": 1,
            "zabbix_probe_interval": 0,
            "acker_retry_backoff": "0.05s,0.1s,0.2s",
            "acker_busy_retry": "0.1s",
            "acker_claim_stale": "30s",
            "acker_error_max_deliveries": 3,
            **overrides,
        }
    )


_ids = itertools.count(1)


def keypress(
    *event_ids: str,
    action: KeyAction = KeyAction.ACKNOWLEDGE,
    name: str | None = "山田太郎",
    kp_id: str | None = None,
) -> KeyPressed:
    n = next(_ids)
    return KeyPressed(
        id=kp_id or f"kp-{n}",
        call_id=f"call-{n}",
        call_sid=f"CA{n:032d}",
        problems=[ProblemRef(problem_key=f"zabbix:{e}", source_event_id=e) for e in event_ids],
        contact=ContactRef(id="yamada", name=name, masked_number="+81 90-****-5678"),
        digit={"acknowledge": "1", "close": "3", "comment": "4"}.get(action.value, "9"),
        action=action,
        at=PRESSED,
    )


@dataclass
class Harness:
    app: FastAPI
    zabbix: ZabbixStandIn
    url: str
    http: httpx.AsyncClient

    @property
    def client(self) -> HttpZabbixApi:
        """The acker's own Zabbix client."""
        client: HttpZabbixApi = self.app.state.zabbix
        return client

    async def publish(self, kp: KeyPressed, msg_id: str | None = None) -> None:
        async with Bus(self.url) as bus:
            await bus.publish_keypress(kp, msg_id or f"{kp.id}-{next(_ids)}")

    async def messages(self, stream: str) -> list[tuple[str, bytes, dict[str, str]]]:
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            found = []
            if info.state.messages:
                for seq in range(info.state.first_seq, info.state.last_seq + 1):
                    msg = await js.get_msg(stream, seq)
                    found.append((msg.subject or "", msg.data or b"", dict(msg.headers or {})))
            return found
        finally:
            await nc.close()

    async def results(self) -> list[AckResult]:
        return [AckResult.model_validate_json(d) for _, d, _ in await self.messages(ACKS_STREAM)]

    async def wait_results(self, count: int, timeout: float = 30) -> list[AckResult]:
        deadline = time.monotonic() + timeout
        while True:
            found = await self.results()
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} AckResults: {found}")
            await asyncio.sleep(0.05)

    async def wait_dead_letters(self, count: int, timeout: float = 30) -> list[dict[str, str]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [h for _, _, h in await self.messages(DLQ_STREAM)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} dead letters")
            await asyncio.sleep(0.05)

    async def settle(self) -> None:
        """Wait until the consumer has nothing pending or in flight (all acked)."""
        nc = await nats.connect(self.url)
        try:
            js = nc.jetstream()
            for _ in range(600):
                info = await js.consumer_info("YOBIDASHI_KEYS", "acker")
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return
                await asyncio.sleep(0.05)
            raise TimeoutError(f"consumer never settled: {info}")
        finally:
            await nc.close()

    async def get_marker(self, key: str) -> AckMarker | None:
        nc = await nats.connect(self.url)
        try:
            kv = await nc.jetstream().key_value(ACKS_BUCKET)
            try:
                entry = await kv.get(key)
            except nats.js.errors.KeyNotFoundError:
                return None
            return AckMarker.model_validate_json(entry.value or b"")
        finally:
            await nc.close()

    async def put_marker(self, key: str, marker: AckMarker) -> None:
        nc = await nats.connect(self.url)
        try:
            kv = await nc.jetstream().key_value(ACKS_BUCKET)
            await kv.put(key, marker.model_dump_json().encode())
        finally:
            await nc.close()


@pytest.fixture
def running(
    nats_url: str,
) -> Callable[..., Any]:
    @asynccontextmanager
    async def start(
        zabbix: ZabbixStandIn | None = None,
        client: type[HttpZabbixApi] = HttpZabbixApi,
        **overrides: Any,
    ) -> AsyncIterator[Harness]:
        zabbix = zabbix or standin()
        async with serve(zabbix) as frontend:
            config = settings(nats_url, zabbix_url=f"{frontend}/zabbix", **overrides)
            app = create_app(config, zabbix=client(config.zabbix_connection()))
            async with app.router.lifespan_context(app):
                await asyncio.wait_for(app.state.bus.wait_ready(), 20)
                # The check at start has run (faults set from here on are the test's own).
                while app.state.zabbix.status.reachable is None:
                    await asyncio.sleep(0.01)
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://acker") as http:
                    yield Harness(app, zabbix, nats_url, http)

    return start


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# -- the happy path and idempotence ----------------------------------------------------------


async def test_a_keypress_becomes_one_acknowledgement_and_a_result(
    running: Callable[..., Any],
) -> None:
    lag_before = sample("yobidashi_acker_ack_lag_seconds_count")
    async with running() as h:
        kp = keypress("1")
        await h.publish(kp)
        [result] = await h.wait_results(1)
        _, _, headers = (await h.messages(ACKS_STREAM))[0]
    [(event_id, action, message)] = h.zabbix.writes
    ref = make_ref(kp.id, "zabbix:1", Intent.ACKNOWLEDGE)
    assert (event_id, action) == ("1", 6)
    assert message == (
        "Acknowledged by phone by 山田太郎 (+81 90-****-5678) at 2026-11-25 03:12 JST "
        f"via Yobidashi [call {kp.call_sid}/ref {ref}]"
    )
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert (result.action, result.message, result.zabbix_user) == (6, message, USER)
    assert result.keypress_id == kp.id
    assert result.pressed_at == kp.at
    assert result.at >= kp.at
    assert headers["Nats-Msg-Id"] == f"ack.{kp.id}.zabbix:1"
    assert headers["traceparent"].startswith("00-")
    assert sample("yobidashi_acker_ack_lag_seconds_count") == lag_before + 1


async def test_a_redelivered_keypress_never_writes_again(running: Callable[..., Any]) -> None:
    async with running() as h:
        kp = keypress("2")
        await h.publish(kp, msg_id="first")
        await h.wait_results(1)
        await h.publish(kp, msg_id="second")  # JetStream dedup cannot catch this one
        await h.publish(kp, msg_id="third")
        await h.settle()
        results = await h.results()
    assert len(h.zabbix.writes) == 1
    assert len(h.zabbix.events["2"].acknowledges) == 1
    assert [r.outcome for r in results] == [AckOutcome.ACKNOWLEDGED], "same msg id: deduplicated"


async def test_two_engineers_pressing_1_give_one_ack_and_one_already(
    running: Callable[..., Any],
) -> None:
    async with running() as h:
        first, second = keypress("3"), keypress("3", name="鈴木花子")
        await h.publish(first)
        await h.wait_results(1)
        await h.publish(second)
        results = await h.wait_results(2)
    assert len(h.zabbix.writes) == 1
    by_keypress = {r.keypress_id: r for r in results}
    assert by_keypress[first.id].outcome is AckOutcome.ACKNOWLEDGED
    late = by_keypress[second.id]
    assert late.outcome is AckOutcome.ALREADY_ACKNOWLEDGED
    assert (late.action, late.message) == (0, None)
    assert late.detail == "already acknowledged by phone through Yobidashi"


async def test_simultaneous_keypresses_for_one_problem_write_once(
    running: Callable[..., Any],
) -> None:
    async with running(acker_concurrency=8) as h:
        presses = [keypress("4") for _ in range(6)]
        await asyncio.gather(*(h.publish(kp) for kp in presses))
        results = await h.wait_results(6)
    assert len(h.zabbix.writes) == 1
    outcomes = sorted(r.outcome.value for r in results)
    assert outcomes == ["acknowledged"] + ["already_acknowledged"] * 5


async def test_an_ack_made_in_the_zabbix_ui_is_reported_not_repeated(
    running: Callable[..., Any],
) -> None:
    zabbix = standin()
    zabbix.acknowledge_as("suzuki", "5", 6, "looking", clock=1795546190)
    async with running(zabbix) as h:
        await h.publish(keypress("5"))
        [result] = await h.wait_results(1)
    assert zabbix.writes == []
    assert result.outcome is AckOutcome.ALREADY_ACKNOWLEDGED
    assert result.detail is not None
    assert "by suzuki" in result.detail


# -- Zabbix failures --------------------------------------------------------------------------


async def test_while_zabbix_is_down_the_keypress_waits_then_lands_once(
    running: Callable[..., Any],
) -> None:
    before = sample("yobidashi_acker_retries_total", reason="transport")
    async with running() as h:
        zabbix = h.zabbix
        zabbix.faults.script(*[DROP] * 5, http_error(503))
        await h.publish(keypress("6"))
        [result] = await h.wait_results(1)
        dead = await h.messages(DLQ_STREAM)
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(zabbix.writes) == 1
    assert dead == []
    assert sample("yobidashi_acker_retries_total", reason="transport") == before + 5


async def test_refused_credentials_keep_the_ack_waiting_and_flip_readiness(
    running: Callable[..., Any],
) -> None:
    async with running() as h:
        zabbix = h.zabbix
        zabbix.faults.script(*[NOT_AUTHORIZED] * 4)
        await h.publish(keypress("7"))
        for _ in range(400):
            if h.client.status.credentials_rejected:
                break
            await asyncio.sleep(0.01)
        refused = await h.http.get("/readyz")
        [result] = await h.wait_results(1)
        fixed = await h.http.get("/readyz")
    assert refused.status_code == 503
    assert refused.json()["checks"] == {"nats": True, "zabbix_credentials": False}
    assert fixed.status_code == 200
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(zabbix.writes) == 1


async def test_a_write_zabbix_took_but_never_answered_is_found_not_repeated(
    running: Callable[..., Any],
) -> None:
    zabbix = standin(LOST_ANSWER)
    async with running(zabbix) as h:
        kp = keypress("8")
        await h.publish(kp)
        [result] = await h.wait_results(1)
    assert len(zabbix.writes) == 1
    assert len(zabbix.events["8"].acknowledges) == 1
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert result.detail == "found in Zabbix after a retry"
    assert result.message is not None
    assert make_ref(kp.id, "zabbix:8", Intent.ACKNOWLEDGE) in result.message


async def test_a_write_in_doubt_that_did_not_land_is_retried_once_its_claim_is_stale(
    running: Callable[..., Any],
) -> None:
    """A timed-out write might still land, so nobody writes until its claim is stale."""
    zabbix = standin(DROP)  # the write is not applied, and no answer comes either
    before = sample("yobidashi_acker_retries_total", reason="busy")
    async with running(zabbix, zabbix_timeout="0.2s", acker_claim_stale="1s") as h:
        await h.publish(keypress("20"))
        [result] = await h.wait_results(1)
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(zabbix.writes) == 1
    assert sample("yobidashi_acker_retries_total", reason="busy") > before


async def test_an_unknown_event_is_dead_lettered_with_a_failed_result(
    running: Callable[..., Any],
) -> None:
    async with running() as h:
        kp = keypress("777")
        await h.publish(kp)
        [result] = await h.wait_results(1)
        [dead] = await h.wait_dead_letters(1)
        subjects = [s for s, _, _ in await h.messages(ACKS_STREAM)]
    assert result.outcome is AckOutcome.FAILED
    assert result.detail is not None
    assert "does not exist" in result.detail
    assert subjects == ["yobidashi.acks.v1.failed"]
    assert "does not exist" in dead["Yobidashi-Dlq-Reason"]
    assert dead["Yobidashi-Dlq-Subject"] == "yobidashi.keys.v1.acknowledge"


@pytest.mark.parametrize(("event_id", "reason"), [("90", "recovery event"), ("abc", "not a")])
async def test_recovery_events_and_garbage_ids_fail_permanently(
    running: Callable[..., Any], event_id: str, reason: str
) -> None:
    async with running() as h:
        await h.publish(keypress(event_id))
        [result] = await h.wait_results(1)
        await h.wait_dead_letters(1)
    assert result.outcome is AckOutcome.FAILED
    assert result.detail is not None
    assert reason in result.detail


async def test_one_bad_problem_does_not_stop_the_others(running: Callable[..., Any]) -> None:
    async with running() as h:
        await h.publish(keypress("9", "778"))
        results = await h.wait_results(2)
        [dead] = await h.wait_dead_letters(1)
    outcomes = {r.problem.source_event_id: r.outcome for r in results}
    assert outcomes == {"9": AckOutcome.ACKNOWLEDGED, "778": AckOutcome.FAILED}
    assert "zabbix:778" in dead["Yobidashi-Dlq-Reason"]


async def test_a_bug_is_dead_lettered_after_a_few_deliveries_not_retried_for_days(
    running: Callable[..., Any],
) -> None:
    class Broken(HttpZabbixApi):
        async def get_event(self, event_id: str) -> EventInfo | None:
            await super().get_event(event_id)
            raise RuntimeError("a bug")

    async with running(client=Broken) as h:
        zabbix = h.zabbix
        # Earlier transient failures do not use up the error budget: only the bug's own do.
        zabbix.faults.script(*[DROP] * 5, method="event.get")
        await h.publish(keypress("17"))
        [dead] = await h.wait_dead_letters(1)
        [result] = await h.wait_results(1)
    assert "unexpected error: RuntimeError: a bug" in dead["Yobidashi-Dlq-Reason"]
    # 5 transient failures, then ACKER_ERROR_MAX_DELIVERIES (3 here) unexpected errors.
    assert dead["Yobidashi-Dlq-Deliveries"] == "8"
    assert result.outcome is AckOutcome.FAILED
    assert result.detail == "unexpected error: RuntimeError: a bug"
    assert zabbix.writes == []


# -- close and comment ----------------------------------------------------------------------


async def test_close_where_allowed_sends_7(running: Callable[..., Any]) -> None:
    async with running() as h:
        await h.publish(keypress("10", action=KeyAction.CLOSE))
        [result] = await h.wait_results(1)
    [(_, action, message)] = h.zabbix.writes
    assert action == 7
    assert message.startswith("Acknowledged and closed by phone by 山田太郎")
    assert (result.outcome, result.action, result.detail) == (AckOutcome.ACKNOWLEDGED, 7, "closed")


async def test_close_where_not_allowed_acknowledges_and_says_so(
    running: Callable[..., Any],
) -> None:
    zabbix = standin()
    zabbix.events["11"].manual_close = False
    async with running(zabbix) as h:
        await h.publish(keypress("11", action=KeyAction.CLOSE))
        [result] = await h.wait_results(1)
    [(_, action, message)] = zabbix.writes
    assert action == 6
    assert message.endswith("Close requested, but the trigger does not allow manual close.")
    assert result.detail == "acknowledged, not closed: the trigger does not allow manual close"


async def test_a_close_zabbix_refuses_falls_back_to_acknowledge(
    running: Callable[..., Any],
) -> None:
    # The trigger allowed closing when the acker read it; by the write it no longer does.
    zabbix = standin(CANNOT_CLOSE)
    async with running(zabbix) as h:
        await h.publish(keypress("12", action=KeyAction.CLOSE))
        [result] = await h.wait_results(1)
    assert [w[1] for w in zabbix.writes] == [6]
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert result.detail is not None
    assert "refused" in result.detail


async def test_each_comment_keypress_writes_one_message(running: Callable[..., Any]) -> None:
    async with running() as h:
        first, second = (keypress("13", action=KeyAction.COMMENT) for _ in range(2))
        await h.publish(first)
        await h.publish(second)
        await h.publish(first, msg_id="again")
        results = await h.wait_results(2)
        await h.settle()
    assert [w[1] for w in h.zabbix.writes] == [4, 4]
    assert not h.zabbix.events["13"].acknowledged
    assert {r.outcome for r in results} == {AckOutcome.COMMENTED}


# -- claims ---------------------------------------------------------------------------------


async def test_a_fresh_claim_by_another_keypress_makes_us_wait(
    running: Callable[..., Any],
) -> None:
    async with running() as h:
        key = marker_key(ProblemRef(problem_key="zabbix:14", source_event_id="14"),
                         Intent.ACKNOWLEDGE, "other")  # fmt: skip
        now = datetime.now(UTC)
        other = AckMarker(
            keypress_id="other", ref="0" * 12, intent=Intent.ACKNOWLEDGE,
            state=MarkerState.CLAIMED, updated_at=now,
        )  # fmt: skip
        await h.put_marker(key, other)
        before = sample("yobidashi_acker_retries_total", reason="busy")
        await h.publish(keypress("14"))
        for _ in range(400):
            if sample("yobidashi_acker_retries_total", reason="busy") > before:
                break
            await asyncio.sleep(0.01)
        assert h.zabbix.writes == [], "it must not write while the other keypress holds it"
        # The other keypress lands in Zabbix and records it.
        h.zabbix.acknowledge_as(USER, "14", 6, "… via Yobidashi [ref 000000000000]")
        done = other.model_copy(update={"state": MarkerState.DONE, "updated_at": now})
        await h.put_marker(key, done)
        [result] = await h.wait_results(1)
    assert result.outcome is AckOutcome.ALREADY_ACKNOWLEDGED
    assert h.zabbix.writes == []


async def test_a_transient_failure_releases_the_claim(running: Callable[..., Any]) -> None:
    async with running(acker_retry_backoff="0.5s") as h:
        zabbix = h.zabbix
        zabbix.faults.down = True
        kp = keypress("18")
        await h.publish(kp)
        key = marker_key(ProblemRef(problem_key="zabbix:18", source_event_id="18"),
                         Intent.ACKNOWLEDGE, kp.id)  # fmt: skip
        marker = None
        for _ in range(400):
            marker = await h.get_marker(key)
            if marker is not None and marker.state is MarkerState.PENDING:
                break
            await asyncio.sleep(0.01)
        assert marker is not None
        assert (marker.state, marker.keypress_id, marker.owner) == (MarkerState.PENDING, kp.id, "")
        zabbix.faults.down = False
        [result] = await h.wait_results(1)
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(zabbix.writes) == 1


async def test_a_redelivery_waits_while_another_attempt_of_the_same_keypress_holds_it(
    running: Callable[..., Any],
) -> None:
    """A stalled worker still holding the claim must not be written over by a redelivery."""
    async with running() as h:
        kp = keypress("19")
        key = marker_key(ProblemRef(problem_key="zabbix:19", source_event_id="19"),
                         Intent.ACKNOWLEDGE, kp.id)  # fmt: skip
        stalled = AckMarker(
            keypress_id=kp.id, ref=make_ref(kp.id, "zabbix:19", Intent.ACKNOWLEDGE),
            intent=Intent.ACKNOWLEDGE, state=MarkerState.CLAIMED,
            updated_at=datetime.now(UTC), owner="stalled-worker",
        )  # fmt: skip
        await h.put_marker(key, stalled)
        before = sample("yobidashi_acker_retries_total", reason="busy")
        await h.publish(kp)
        for _ in range(400):
            if sample("yobidashi_acker_retries_total", reason="busy") > before:
                break
            await asyncio.sleep(0.01)
        assert sample("yobidashi_acker_retries_total", reason="busy") > before
        assert h.zabbix.writes == []
        # The stalled worker wakes up and finishes: the redelivery then only reports.
        h.zabbix.acknowledge_as(USER, "19", 6, f"… via Yobidashi [ref {stalled.ref}]")
        await h.put_marker(key, stalled.model_copy(update={"state": MarkerState.PENDING}))
        [result] = await h.wait_results(1)
    assert h.zabbix.writes == []
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert result.detail == "found in Zabbix after a retry"


async def test_a_stale_claim_is_taken_over(running: Callable[..., Any]) -> None:
    async with running() as h:
        key = marker_key(ProblemRef(problem_key="zabbix:15", source_event_id="15"),
                         Intent.ACKNOWLEDGE, "dead")  # fmt: skip
        stale = AckMarker(
            keypress_id="dead", ref="1" * 12, intent=Intent.ACKNOWLEDGE,
            state=MarkerState.CLAIMED, updated_at=datetime.now(UTC) - timedelta(hours=1),
        )  # fmt: skip
        await h.put_marker(key, stale)
        await h.publish(keypress("15"))
        [result] = await h.wait_results(1)
    assert result.outcome is AckOutcome.ACKNOWLEDGED
    assert len(h.zabbix.writes) == 1


# -- the service surface ------------------------------------------------------------------------


async def test_readiness_ignores_a_zabbix_outage_and_status_explains(
    running: Callable[..., Any],
) -> None:
    async with running() as h:
        h.zabbix.faults.down = True
        with pytest.raises(ZabbixError):
            await h.client.check()
        ready = await h.http.get("/readyz")
        health = await h.http.get("/healthz")
        status = await h.http.get("/status")
        metrics = await h.http.get("/metrics")
    assert ready.status_code == 200, "Zabbix down is not a reason to be unready"
    assert health.status_code == 200
    assert status.json()["zabbix"]["reachable"] is False
    assert status.json()["zabbix"]["auth_mode"] == "token"
    for name in (
        "yobidashi_acker_acks_total",
        "yobidashi_acker_zabbix_requests_total",
        "yobidashi_acker_zabbix_request_duration_seconds",
        "yobidashi_acker_ack_lag_seconds",
        "yobidashi_acker_retries_total",
        "yobidashi_acker_dead_letters_total",
        "yobidashi_acker_zabbix_auth_failures_total",
    ):
        assert name in metrics.text


async def test_the_consumer_is_durable_with_a_large_delivery_limit(
    running: Callable[..., Any],
) -> None:
    async with running() as h:
        await h.publish(keypress("16"))
        await h.wait_results(1)
        nc = await nats.connect(h.url)
        try:
            info = await nc.jetstream().consumer_info("YOBIDASHI_KEYS", "acker")
            bucket = await nc.jetstream().key_value(ACKS_BUCKET)
            status = await bucket.status()
        finally:
            await nc.close()
    assert info.config.durable_name == "acker"
    assert sorted(info.config.filter_subjects or []) == [
        "yobidashi.keys.v1.acknowledge",
        "yobidashi.keys.v1.close",
        "yobidashi.keys.v1.comment",
    ]
    assert info.config.max_deliver == -1, "the handler decides; the server never drops"
    assert status.bucket == ACKS_BUCKET
