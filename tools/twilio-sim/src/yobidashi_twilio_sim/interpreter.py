"""Runs one parsed TwiML document on a live call: Say, Play, Pause, Gather, Redirect, Hangup."""

from __future__ import annotations

import asyncio
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urljoin

from yobidashi_twilio_sim.calls import Call, TwimlSource
from yobidashi_twilio_sim.models import DigitPress
from yobidashi_twilio_sim.twiml import Gather, Hangup, Pause, Prompt, Redirect, Say, Verb
from yobidashi_twilio_sim.util import is_http_url

if TYPE_CHECKING:
    from yobidashi_twilio_sim.engine import CallEngine

INVALID_URL = 11100
GatherOutcome = TwimlSource | Literal["continue", "end"]


class DocumentRunner:
    def __init__(self, engine: CallEngine, call: Call, document_url: str | None) -> None:
        self.engine = engine
        self.call = call
        self.document_url = document_url

    async def run(self, verbs: list[Verb]) -> TwimlSource | None:
        """Run the verbs in order. Returns the next document to fetch, or None to hang up
        (`<Hangup/>`, or the end of the document)."""
        for verb in verbs:
            if isinstance(verb, Hangup):
                return None
            if isinstance(verb, Redirect):
                url = self._resolve(verb.url)
                if url is None:
                    return None
                return TwimlSource(url=url, method=verb.method, kind="redirect")
            if isinstance(verb, Gather):
                outcome = await self._gather(verb)
                if outcome == "continue":
                    continue
                if outcome == "end":
                    return None
                return outcome
            await self._prompt(verb)
        return None

    def _resolve(self, url: str) -> str | None:
        """Relative URLs resolve against the current document's URL, as in a browser."""
        resolved = urljoin(self.document_url, url) if self.document_url else url
        if not is_http_url(resolved):
            self.call.error(INVALID_URL, f"Invalid URL: {url!r}", document=self.document_url)
            self.engine.application_error(self.call)
            return None
        return resolved

    # ---------------------------------------------------------------------------- prompts

    async def _prompt(self, verb: Prompt) -> None:
        if isinstance(verb, Pause):
            self.call.activity = "pausing"
            await self.engine.sleep(verb.length)
            return
        entry: dict[str, Any]
        if isinstance(verb, Say):
            entry = {"verb": "Say", "text": verb.text, "language": verb.language}
            entry["voice"] = verb.voice
            seconds = len(verb.text) * self.engine.runtime.say_seconds_per_char
            self.call.activity = "speaking"
        else:
            entry = {"verb": "Play", "url": verb.url, "digits": verb.digits}
            seconds = 0.0
            self.call.activity = "playing"
        if verb.loop == 0:
            # loop="0" repeats until the call moves on: journal it once, then hold.
            await self._speak({**entry, "loop": 0}, None)
            return
        for iteration in range(verb.loop):
            await self._speak({**entry, "loop": verb.loop, "iteration": iteration}, seconds)

    async def _speak(self, entry: dict[str, Any], seconds: float | None) -> None:
        entry["at"] = time.time()
        entry["interrupted"] = False
        self.call.spoken.append(entry)
        try:
            if seconds is None:
                await asyncio.Event().wait()
            else:
                await self.engine.sleep(seconds)
        except asyncio.CancelledError:
            entry["interrupted"] = True  # barge-in, hang-up or redirect
            raise

    async def _play_prompts(self, prompts: tuple[Prompt, ...]) -> None:
        for prompt in prompts:
            await self._prompt(prompt)

    # ----------------------------------------------------------------------------- gather

    async def _gather(self, verb: Gather) -> GatherOutcome:
        control = self.call.control
        inbox: asyncio.Queue[str] = asyncio.Queue()
        for key in control.buffered_digits:
            inbox.put_nowait(key)
        control.buffered_digits.clear()
        control.gather_inbox = inbox
        press = control.scenario_presses.popleft() if control.scenario_presses else None
        presser = asyncio.ensure_future(self._press_later(press)) if press else None
        prompts = asyncio.ensure_future(self._play_prompts(verb.prompts))
        try:
            digits, finished_on_key = await self._collect(verb, inbox, prompts)
        finally:
            control.gather_inbox = None
            for task in (presser, prompts):
                if task is not None and not task.done():
                    task.cancel()
                    with suppress(asyncio.CancelledError):
                        await task
        self.call.activity = "gathered"
        if not digits and not verb.action_on_empty_result:
            return "continue"  # no input: fall through to the next verb
        action = verb.action or self.document_url
        if action is None:
            # Inline TwiML has no document URL to default to (behaviour unverified).
            self.call.error(0, "<Gather> without action in a document that has no URL")
            return "continue"
        url = self._resolve(action)
        if url is None:
            return "end"
        return TwimlSource(
            url=url,
            method=verb.method,
            kind="gather-action",
            extra_params=(
                ("Digits", digits),
                ("FinishedOnKey", finished_on_key),
                ("msg", "Gather End"),
            ),
        )

    async def _press_later(self, press: DigitPress) -> None:
        await self.engine.sleep(press.after)
        self.engine.press(self.call, press.keys, "scenario")

    async def _collect(
        self, verb: Gather, inbox: asyncio.Queue[str], prompts: asyncio.Future[None]
    ) -> tuple[str, str]:
        """Digits until numDigits, finishOnKey, or `timeout` of silence after the prompts
        (and between digits). The first key stops the prompts (barge-in)."""
        self.call.activity = "listening"
        timeout = self.engine.real_seconds(verb.timeout)
        key = await self._first_key(inbox, prompts, timeout)
        digits = ""
        while key is not None:
            if not prompts.done():
                prompts.cancel()
            if verb.finish_on_key and key == verb.finish_on_key:
                # Only meaningful after some digits; on its own it submits nothing.
                return digits, key if digits else ""
            digits += key
            if verb.num_digits is not None and len(digits) >= verb.num_digits:
                return digits, ""
            key = await self._next_key(inbox, timeout)
        return digits, ""

    async def _first_key(
        self, inbox: asyncio.Queue[str], prompts: asyncio.Future[None], silence: float
    ) -> str | None:
        """A key pressed during the prompts, or within `silence` seconds after they finish."""
        getter = asyncio.ensure_future(inbox.get())
        racers: list[asyncio.Future[Any]] = [getter, prompts]
        try:
            await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                return getter.result()
            prompts.result()  # surface a failure in the prompts
        finally:
            getter.cancel()
        return await self._next_key(inbox, silence)

    @staticmethod
    async def _next_key(inbox: asyncio.Queue[str], silence: float) -> str | None:
        try:
            return await asyncio.wait_for(inbox.get(), silence)
        except TimeoutError:
            return None
