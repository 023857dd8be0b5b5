"""The imperative shell around `decide`: load, decide, store with compare-and-set, then act.

Commands are stored in the incident's outbox in the same write as the state they belong to,
carried out, and only then removed. A crash in between leaves them in the outbox; whatever
touches the incident next (at the latest, the redelivery of the event that produced them)
carries them out again. Every command is idempotent by its id: dial requests and timers are
published with that id as Nats-Msg-Id, and ending a call twice is harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from yobidashi_common.bus import KvStore
from yobidashi_common.events import AlertStatus
from yobidashi_common.telemetry import get_logger
from yobidashi_dialer import metrics
from yobidashi_dialer.core.decide import Rules, Transition, decide
from yobidashi_dialer.core.model import AlertArrived, Command, Event, Incident
from yobidashi_dialer.store import incident_key

log = get_logger(__name__)


class CommandRunner(Protocol):
    async def run(self, incident: Incident, command: Command) -> None: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Engine:
    def __init__(
        self,
        incidents: KvStore[Incident],
        rules: Callable[[], Rules],
        runner: CommandRunner,
        *,
        now: Callable[[], datetime] = _utcnow,
        observers: dict[str, Callable[[str, float], None]] | None = None,
    ) -> None:
        self.incidents = incidents
        self.rules = rules
        self.runner = runner
        self.now = now
        self.observers = observers or DEFAULT_OBSERVERS

    async def load(self, problem_key: str) -> Incident | None:
        found = await self.incidents.get(incident_key(problem_key))
        return found[0] if found else None

    def seen(self, problem_key: str, within: float) -> Incident | None:
        """The problem's incident as this process wrote or read it in the last ``within``
        seconds, with no request; None if it has no view that recent."""
        return self.incidents.seen_within(incident_key(problem_key), within)

    async def recent(self, limit: int) -> list[Incident]:
        """The incidents that changed last, newest first."""
        return await self.incidents.recent(limit)

    async def apply(self, problem_key: str, event: Event) -> Incident | None:
        """Apply ``event`` exactly once to the problem's incident, then carry out its commands.

        Raises whatever a command raised (after storing the state), so that the caller's message
        is redelivered and the outbox flushed again.
        """
        key = incident_key(problem_key)
        # A new problem's first event: create its incident without reading first (the usual
        # case, one request fewer). If it exists after all, the create changes nothing and the
        # loop below reads it and decides again.
        if isinstance(event, AlertArrived) and event.alert.status is AlertStatus.PROBLEM:
            opening = decide(None, event, self.now(), self.rules())
            if opening.state is not None:
                first = opening.state
                first.outbox = [*first.outbox, *opening.commands]
                created = await self.incidents.create(key, first)
                if created is not None:
                    self._observe(opening)
                    return await self._flush(key, first, created)
        for _ in range(100):
            found = await self.incidents.get(key)
            state, revision = found if found else (None, 0)
            if state is not None and event.id in state.applied:
                return await self._flush(key, state, revision)
            transition = decide(state, event, self.now(), self.rules())
            new = transition.state
            if new is None:
                return None
            new.outbox = [*new.outbox, *transition.commands]
            stored = (
                await self.incidents.update(key, new, revision)
                if found
                else await self.incidents.create(key, new)
            )
            if stored is None:
                continue  # another writer got there first: decide again on their result
            self._observe(transition)
            return await self._flush(key, new, stored)
        raise RuntimeError(f"incident {problem_key}: too many concurrent writers")

    async def _flush(self, key: str, incident: Incident, revision: int) -> Incident:
        """Carry out the outbox of ``incident`` (stored at ``revision``), then prune it."""
        if not incident.outbox:
            return incident
        done: set[str] = set()
        try:
            for command in incident.outbox:
                await self.runner.run(incident, command)
                done.add(command.id)
        finally:
            # Usually nobody wrote meanwhile: one compare-and-set, without reading it again.
            pruned = _without(incident, done) if done else None
            if pruned is not None and await self.incidents.update(key, pruned, revision) is None:
                await self.incidents.mutate(key, lambda s: _without(s, done))
        incident.outbox = [c for c in incident.outbox if c.id not in done]
        return incident

    def _observe(self, transition: Transition) -> None:
        for metric, label, value in transition.observations:
            observer = self.observers.get(metric)
            if observer is not None:
                observer(label, value)


def _without(state: Incident | None, done: set[str]) -> Incident | None:
    if state is None or not any(c.id in done for c in state.outbox):
        return None
    return state.model_copy(update={"outbox": [c for c in state.outbox if c.id not in done]})


DEFAULT_OBSERVERS: dict[str, Callable[[str, float], None]] = {
    "call": lambda label, _v: metrics.CALLS.labels(label).inc(),
    "time_to_answer": lambda _l, value: metrics.ANSWER_SECONDS.observe(value),
    "dial_error": lambda label, _v: metrics.DIAL_ERRORS.labels(label).inc(),
    "keypress": lambda label, _v: metrics.KEYPRESSES.labels(label).inc(),
    "step": lambda _l, _v: metrics.STEPS.inc(),
    "policy_exhausted": lambda _l, _v: metrics.EXHAUSTED.inc(),
    "time_to_acknowledge": lambda _l, value: metrics.TIME_TO_ACKNOWLEDGE.observe(value),
    "suppressed_duplicate": lambda _l, _v: metrics.SUPPRESSED.inc(),
}
