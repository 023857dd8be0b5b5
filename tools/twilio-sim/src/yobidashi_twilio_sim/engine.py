"""The call engine: CPS-limited dialling queue, call lifecycles, status callbacks, AMD.

Every call runs as a task on the app's event loop. A REST hang-up or redirect, a callee
hang-up or the TimeLimit interrupts whatever the call is doing at once (`guarded`).
Hang-ups are applied synchronously, so the REST response already shows the final status.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from dataclasses import replace
from typing import Any, TypeVar

from yobidashi_twilio_sim.calls import Call, CallOptions, CallStatus, TwimlSource
from yobidashi_twilio_sim.interpreter import DocumentRunner
from yobidashi_twilio_sim.journal import Journal
from yobidashi_twilio_sim.models import RuntimeSettings, Scenario
from yobidashi_twilio_sim.scenarios import ScenarioBook
from yobidashi_twilio_sim.settings import SimSettings
from yobidashi_twilio_sim.twiml import TwimlError, Verb, parse
from yobidashi_twilio_sim.util import API_VERSION, country_of, new_sid, rfc2822, whole_seconds
from yobidashi_twilio_sim.webhooks import WebhookSender

T = TypeVar("T")

CONCURRENCY_LIMIT_EXCEEDED = 10004
HTTP_RETRIEVAL_FAILURE = 11200
INVALID_CONTENT_TYPE = 12300
APPLICATION_ERROR_TEXT = "An application error has occurred."
TWIML_CONTENT_TYPES = frozenset({"text/xml", "application/xml", "text/html"})
DEFAULT_SIP_CODES: dict[str, int] = {
    "completed": 200,
    "busy": 486,
    "no-answer": 487,
    "canceled": 487,
    "failed": 500,
}


def _party(role: str, number: str) -> list[tuple[str, str]]:
    """One party's number and the geo fields Twilio sends with it (only the country is known)."""
    return [
        (role, number),
        (f"{role}City", ""),
        (f"{role}Country", country_of(number)),
        (f"{role}State", ""),
        (f"{role}Zip", ""),
    ]


class Interrupted(Exception):
    """The call was hung up or redirected while a step was running."""


class TwimlFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class CallEngine:
    def __init__(self, settings: SimSettings, journal: Journal, scenarios: ScenarioBook) -> None:
        self.settings = settings
        self.runtime = RuntimeSettings(
            cps=settings.cps,
            max_concurrent_calls=settings.max_concurrent_calls,
            time_scale=settings.time_scale,
            say_seconds_per_char=settings.say_seconds_per_char,
            amd_detection_seconds=settings.amd_detection_seconds,
        )
        self.journal = journal
        self.scenarios = scenarios
        self.webhooks = WebhookSender(settings.auth_token, settings.webhook_timeout)
        self._queue: deque[Call] = deque()
        self._queue_changed = asyncio.Event()
        self._dial_times: deque[float] = deque()
        self._live: set[str] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    # ----------------------------------------------------------------- lifecycle of the engine

    async def start(self) -> None:
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="twilio-sim-dialler")

    async def stop(self) -> None:
        await self._cancel_call_tasks()
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            with suppress(asyncio.CancelledError):
                await self._dispatcher
        await self.webhooks.aclose()

    async def reset(self) -> None:
        """Drop every call (live ones silently, without callbacks) and rewind the scenarios."""
        await self._cancel_call_tasks()
        self._queue.clear()
        self._dial_times.clear()
        self._live.clear()
        self.journal.clear()
        self.scenarios.rewind()

    async def _cancel_call_tasks(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        """Start a task the engine keeps a reference to and cancels at shutdown."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ----------------------------------------------------------------------- simulated time

    def real_seconds(self, simulated: float) -> float:
        return simulated * self.runtime.time_scale

    async def sleep(self, simulated: float) -> None:
        await asyncio.sleep(self.real_seconds(simulated))

    def simulated_since(self, started: float) -> float:
        return (time.time() - started) / self.runtime.time_scale

    # ------------------------------------------------------------------- create and dialling

    def create_call(
        self,
        account_sid: str,
        options: CallOptions,
        received_params: dict[str, list[str]],
        arrived_at: float,
    ) -> Call:
        scenario = self.scenarios.next_for(options.to)
        call = Call(
            sid=new_sid("CA"),
            account_sid=account_sid,
            options=options,
            received_params=received_params,
            scenario=scenario,
            created_at=arrived_at,
            updated_at=arrived_at,
        )
        call.control.scenario_presses.extend(scenario.digits)
        call.status_history.append({"status": "queued", "at": arrived_at})
        call.queue_time_ms = math.ceil(1000 * len(self._queue) / self.runtime.cps)
        self.journal.add_call(call)
        self._queue.append(call)
        self._queue_changed.set()
        return call

    async def _dispatch_loop(self) -> None:
        while True:
            if not self._queue or self.runtime.dialling_held:
                self._queue_changed.clear()
                await self._queue_changed.wait()
                continue
            await self._wait_for_dial_slot()
            if self._queue and not self.runtime.dialling_held:
                self._dial(self._queue.popleft())

    async def _wait_for_dial_slot(self) -> None:
        """Block until fewer than `cps` calls were dialled in the last (rolling) second."""
        while True:
            now = time.time()
            while self._dial_times and now - self._dial_times[0] >= 1.0:
                self._dial_times.popleft()
            if len(self._dial_times) < self.runtime.cps:
                return
            # Re-check after waking: the loop clock and the wall clock can differ slightly.
            await asyncio.sleep(self._dial_times[0] + 1.0 - now + 0.001)

    def _dial(self, call: Call) -> None:
        now = time.time()
        call.dialled_at = now
        call.updated_at = now
        self._dial_times.append(now)
        limit = self.runtime.max_concurrent_calls
        if limit and len(self._live) >= limit:
            call.error(CONCURRENCY_LIMIT_EXCEEDED, "Call concurrency limit exceeded")
            self.finish(call, "failed")
            return
        self._go_live(call, self._ring, name=f"call-{call.sid}")

    # --------------------------------------------------------------------- one call's life

    def _go_live(self, call: Call, life: Callable[[Call], Awaitable[None]], *, name: str) -> None:
        """Count ``call`` as live and run ``life`` for it in its own task."""
        self._live.add(call.sid)
        call.control.task = self.spawn(self._live_call(call, life), name=name)

    async def _live_call(self, call: Call, life: Callable[[Call], Awaitable[None]]) -> None:
        try:
            await life(call)
        except Interrupted:
            pass  # hung up from outside; `finish` already ran
        except Exception as exc:  # a simulator bug must not leave the call dangling
            call.error(0, f"simulator error: {exc!r}")
            self.finish(call, "failed")
        finally:
            current = asyncio.current_task()
            for timer in call.control.timers:
                if timer is not current:
                    timer.cancel()

    async def _ring(self, call: Call) -> None:
        scenario = call.scenario
        call.activity = "dialling"
        self._progress(call, "initiated")
        call.set_status("ringing")
        call.activity = "ringing"
        self._progress(call, "ringing")
        ring_limit = call.options.timeout
        if scenario.answer == "no-answer" or scenario.answer_after >= ring_limit:
            await self.guarded(call, self.sleep(ring_limit))
            self.finish(call, "no-answer")
            return
        await self.guarded(call, self.sleep(scenario.answer_after))
        if scenario.answer in ("busy", "failed"):
            self.finish(call, scenario.answer)
            return
        await self._answered(call, scenario)

    async def _answered(self, call: Call, scenario: Scenario) -> None:
        call.answered_at = time.time()
        call.set_status("in-progress")
        self._progress(call, "answered")
        if scenario.hangup_after is not None:
            self._timer(call, scenario.hangup_after, "callee hung up")
        self._timer(call, call.options.time_limit, "TimeLimit reached")

        options = call.options
        source: TwimlSource | None = options.source
        if options.machine_detection:
            answered_by = self._amd_result(call)
            detect = (
                scenario.amd_after
                if scenario.amd_after is not None
                else self.runtime.amd_detection_seconds
            )
            if options.async_amd:
                self.spawn(self._async_amd(call, answered_by, detect), name=f"amd-{call.sid}")
            else:
                # Synchronous AMD holds the first TwiML request until detection ends.
                call.activity = "detecting"
                try:
                    await self.guarded(call, self.sleep(detect))
                except Interrupted:
                    if call.is_ended():
                        raise
                    source = self._take_redirect(call)
                else:
                    call.answered_by = answered_by
                    source = replace(
                        call.options.source,
                        extra_params=(
                            ("AnsweredBy", answered_by),
                            ("MachineDetectionDuration", str(round(detect * 1000))),
                        ),
                    )
        await self._run_documents(call, source)
        if not call.is_ended():
            self.finish(call, "completed")

    def _amd_result(self, call: Call) -> str:
        if call.scenario.answer != "machine":
            return "human"
        if call.options.machine_detection == "DetectMessageEnd":
            return "machine_end_beep"
        return "machine_start"

    async def _async_amd(self, call: Call, answered_by: str, detect: float) -> None:
        await self.sleep(detect)
        if call.is_ended():
            return
        call.answered_by = answered_by
        url = call.options.async_amd_status_callback
        if url:
            params = [
                ("AccountSid", call.account_sid),
                ("AnsweredBy", answered_by),
                ("CallSid", call.sid),
                ("MachineDetectionDuration", str(round(detect * 1000))),
            ]
            response = await self.webhooks.send(
                call,
                "amd-status-callback",
                url,
                call.options.async_amd_status_callback_method,
                params,
            )
            if not response.ok:
                call.error(HTTP_RETRIEVAL_FAILURE, "AMD status callback failed", url=url)

    def _timer(self, call: Call, simulated: float, reason: str) -> None:
        async def fire() -> None:
            await self.sleep(simulated)
            if not call.is_ended():
                call.error(0, reason, level="info")
                self.finish(call, "completed")

        call.control.timers.append(self.spawn(fire(), name=f"timer-{call.sid}"))

    async def guarded(self, call: Call, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` unless the call is interrupted (hang-up, redirect) first."""
        interrupt = call.control.interrupt
        if interrupt.is_set():
            coro.close()
            raise Interrupted
        task = asyncio.ensure_future(coro)
        waiter = asyncio.ensure_future(interrupt.wait())
        try:
            await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if not task.done():
                task.cancel()
                # Let the step's own cleanup run (gathers, in-flight webhook journaling).
                with suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise Interrupted
        return task.result()

    def _take_redirect(self, call: Call) -> TwimlSource | None:
        source = call.control.pending_redirect
        call.control.pending_redirect = None
        call.control.interrupt.clear()
        return source

    # ------------------------------------------------------------------ TwiML documents

    async def _run_documents(self, call: Call, source: TwimlSource | None) -> None:
        while source is not None and not call.is_ended():
            try:
                source = await self.guarded(call, self._run_source(call, source))
            except Interrupted:
                if call.is_ended():
                    return
                source = self._take_redirect(call)

    async def _run_source(self, call: Call, source: TwimlSource) -> TwimlSource | None:
        """Load and run one document; return where the next one comes from, if anywhere."""
        loaded = await self._load(call, source)
        if loaded is None:
            self.application_error(call)
            return None
        verbs, document_url = loaded
        return await DocumentRunner(self, call, document_url).run(verbs)

    async def _load(self, call: Call, source: TwimlSource) -> tuple[list[Verb], str | None] | None:
        """The document's verbs and URL, trying FallbackUrl once if the first attempt fails."""
        try:
            if source.twiml is not None:
                try:
                    return parse(source.twiml), None
                except TwimlError as exc:
                    raise TwimlFailure(exc.code, str(exc)) from exc
            assert source.url is not None
            return await self._fetch(call, source), source.url
        except TwimlFailure as failure:
            call.error(failure.code, failure.message, url=source.url, request=source.kind)
            fallback = call.options.fallback_url
            if fallback and source.kind != "fallback":
                return await self._load(
                    call,
                    TwimlSource(
                        url=fallback,
                        method=call.options.fallback_method,
                        kind="fallback",
                        extra_params=(
                            ("ErrorCode", str(failure.code)),
                            ("ErrorUrl", source.url or ""),
                        ),
                    ),
                )
            return None

    async def _fetch(self, call: Call, source: TwimlSource) -> list[Verb]:
        assert source.url is not None
        call.activity = "fetching"
        params = self.call_params(call) + list(source.extra_params)
        response = await self.webhooks.send(call, source.kind, source.url, source.method, params)
        if response.error is not None:
            raise TwimlFailure(HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: {response.error}")
        if not response.ok:
            raise TwimlFailure(
                HTTP_RETRIEVAL_FAILURE, f"HTTP retrieval failure: status {response.status}"
            )
        media_type = response.content_type.split(";")[0].strip().lower()
        if media_type not in TWIML_CONTENT_TYPES:
            raise TwimlFailure(INVALID_CONTENT_TYPE, f"Invalid Content-Type: {media_type!r}")
        try:
            return parse(response.body)
        except TwimlError as exc:
            raise TwimlFailure(exc.code, str(exc)) from exc

    def application_error(self, call: Call) -> None:
        """What the callee hears when no TwiML can be run; the call then hangs up."""
        call.spoken.append(
            {
                "verb": "Say",
                "text": APPLICATION_ERROR_TEXT,
                "language": "en-US",
                "voice": "man",
                "at": time.time(),
                "system": True,
            }
        )

    # ------------------------------------------------------------------ webhook parameters

    def call_params(self, call: Call, status: str | None = None) -> list[tuple[str, str]]:
        """The params every voice webhook carries, geo fields included even when blank."""
        to, from_ = call.options.to, call.options.from_
        params = [
            ("AccountSid", call.account_sid),
            ("ApiVersion", API_VERSION),
            ("CallSid", call.sid),
            ("CallStatus", status or call.status),
            *_party("Called", to),
            *_party("Caller", from_),
            ("Direction", call.options.direction),
            *_party("From", from_),
            *_party("To", to),
        ]
        return params

    def _progress(self, call: Call, event: str) -> None:
        """Record a call-progress event and send its status callback if subscribed.

        Every event takes a SequenceNumber whether or not it is sent, as a 2018 capture
        suggests (completed=3 with initiated unsubscribed); this is unverified.
        """
        sequence = call.sequence_number
        call.sequence_number += 1
        call_status = {"answered": "in-progress"}.get(event, event)
        if event == "completed":
            call_status = call.status
        now = time.time()
        options = call.options
        subscribed = event == "completed" or event in options.status_callback_events
        url = options.status_callback
        sent = subscribed and url is not None
        call.progress_events.append(
            {
                "event": event,
                "call_status": call_status,
                "sequence_number": sequence,
                "at": now,
                "sent": sent,
            }
        )
        if not sent or url is None:
            return
        params = [
            *self.call_params(call, call_status),
            ("CallbackSource", "call-progress-events"),
            ("SequenceNumber", str(sequence)),
            ("Timestamp", rfc2822(now) or ""),
        ]
        if event == "completed":
            duration = call.call_duration or 0
            params += [
                ("CallDuration", str(duration)),
                ("Duration", str(max(1, math.ceil(duration / 60)) if call.answered_at else 0)),
                ("SipResponseCode", str(call.sip_response_code or "")),
            ]
            if options.machine_detection and call.answered_by:
                params.append(("AnsweredBy", call.answered_by))
        self._queue_callback(call, url, options.status_callback_method, params)

    def _queue_callback(
        self, call: Call, url: str, method: str, params: list[tuple[str, str]]
    ) -> None:
        # One sender per call keeps callbacks in order without stalling the call itself.
        control = call.control
        if control.callbacks is None:
            control.callbacks = asyncio.Queue()
            control.callback_worker = self.spawn(
                self._callback_worker(call, control.callbacks), name=f"callbacks-{call.sid}"
            )
        control.callbacks.put_nowait((url, method, params))

    async def _callback_worker(
        self,
        call: Call,
        queue: asyncio.Queue[tuple[str, str, list[tuple[str, str]]] | None],
    ) -> None:
        while (item := await queue.get()) is not None:
            url, method, params = item
            response = await self.webhooks.send(call, "status-callback", url, method, params)
            if not response.ok:
                call.error(
                    HTTP_RETRIEVAL_FAILURE,
                    f"status callback failed: {response.error or response.status}",
                    url=url,
                )

    # --------------------------------------------------------------- ending and changing calls

    def finish(self, call: Call, status: CallStatus, sip_response_code: int | None = None) -> None:
        """End the call now: final status, times, the `completed` callback, wake its task."""
        if call.is_ended():
            return
        now = time.time()
        if call.answered_at is not None:
            call.call_duration = whole_seconds(self.simulated_since(call.answered_at))
        if sip_response_code is None and status in ("busy", "failed"):
            sip_response_code = call.scenario.sip_response_code
        call.sip_response_code = sip_response_code or DEFAULT_SIP_CODES.get(status)
        if call.dialled_at is not None:
            call.ended_at = now
        call.set_status(status)
        call.activity = "ended"
        self._live.discard(call.sid)
        with suppress(ValueError):
            self._queue.remove(call)
        self._progress(call, "completed")
        if call.control.callbacks is not None:
            call.control.callbacks.put_nowait(None)
        call.control.gather_inbox = None
        call.control.interrupt.set()

    def hang_up(self, call: Call, requested: str) -> None:
        """REST `Status=canceled|completed`. Never-answered calls end `canceled`."""
        if call.status in ("queued", "ringing"):
            self.finish(call, "canceled")
        elif call.status == "in-progress" and requested == "completed":
            self.finish(call, "completed")
        # `canceled` does not affect a call that is already in progress.

    def redirect(self, call: Call, source: TwimlSource) -> None:
        """REST `Url`/`Twiml` update: replaces the running TwiML at once."""
        if call.status == "in-progress":
            call.control.pending_redirect = source
            call.control.interrupt.set()
        else:
            # Not yet answered: the new TwiML is what runs on answer (unverified).
            call.options = replace(call.options, source=source)

    def press(self, call: Call, keys: str, source: str) -> bool:
        """Feed DTMF into the call's current <Gather>, or keep it for its next one."""
        inbox = call.control.gather_inbox
        call.digits.append(
            {
                "keys": keys,
                "source": source,
                "at": time.time(),
                "delivered": "gather" if inbox is not None else "buffered",
            }
        )
        if inbox is not None:
            for key in keys:
                inbox.put_nowait(key)
            return True
        call.control.buffered_digits.extend(keys)
        return False

    # ------------------------------------------------------------------ incoming calls

    def inbound_call(self, account_sid: str, from_: str, to: str, url: str, method: str) -> Call:
        """Someone at ``from_`` calls our number ``to``, whose Voice URL is ``url``.

        The caller's phone follows the scenario for ``from_`` (its keypresses, its hang-up).
        Incoming calls are not dialled, so no CPS or concurrency limit applies; the call is
        answered at once and Twilio asks the Voice URL what to do.
        """
        scenario = self.scenarios.next_for(from_)
        now = time.time()
        call = Call(
            sid=new_sid("CA"),
            account_sid=account_sid,
            options=CallOptions(
                to=to,
                from_=from_,
                source=TwimlSource(url=url, method=method),
                direction="inbound",
            ),
            received_params={},
            scenario=scenario,
            created_at=now,
            updated_at=now,
        )
        call.control.scenario_presses.extend(scenario.digits)
        call.dialled_at = now
        call.set_status("ringing")
        self.journal.add_call(call)
        self._go_live(call, self._pick_up, name=f"inbound-{call.sid}")
        return call

    async def _pick_up(self, call: Call) -> None:
        await self._answered(call, call.scenario)

    def apply_settings(self, **changes: Any) -> RuntimeSettings:
        self.runtime = self.runtime.model_copy(update=changes)
        self._queue_changed.set()  # a released hold, or a higher CPS, lets the queue move
        return self.runtime

    @property
    def queued_calls(self) -> int:
        return len(self._queue)

    @property
    def live_calls(self) -> int:
        return len(self._live)
