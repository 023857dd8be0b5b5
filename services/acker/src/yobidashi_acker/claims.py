"""The exactly-once protocol: one claim per problem in the ``yobidashi_acks`` bucket.

A key per (problem, acknowledge|close), or per (problem, comment, keypress), holds one
`AckMarker`. Its life, always by compare-and-set on the key's revision:

- **take** — create the marker, or overwrite one that nobody holds (released, finished by
  another keypress, or a claim stale for ``ACKER_CLAIM_STALE``: its worker died). A fresh
  claim of any other attempt (another keypress, or another delivery of this one while a
  stalled worker still holds it) raises `Busy`: someone may be writing right now. This
  keypress's own finished marker is handed back instead: a redelivery, nothing to do.
- **refresh** — right before ``event.acknowledge``: renews the claim's age, and proves nobody
  took it over meanwhile (else `Busy`).
- **sending** — around the write. A write sent without an answer (timeout, lost connection)
  may still land, so the claim must then stay until stale.
- **release** — on any failure except that one: the claim becomes ``pending`` at once, so the
  retry, or another keypress, need not wait for it to go stale.
- **record** — the outcome (done or failed) replaces the claim; the key is finished.

Residual risk: a worker that stalls for longer than ``ACKER_CLAIM_STALE`` between ``refresh``
and sending its request can still add a second message.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict

from yobidashi_acker.message import Intent
from yobidashi_acker.zabbix import ErrorKind, ZabbixError
from yobidashi_common.bus import KvStore, kv_key
from yobidashi_common.events import AckOutcome, ProblemRef
from yobidashi_common.telemetry import get_logger

log = get_logger(__name__)

TAKE_ATTEMPTS = 20  # compare-and-set races lost in a row before giving up for now


class MarkerState(StrEnum):
    CLAIMED = "claimed"  # an attempt (``owner``) is reading/writing Zabbix right now, or died
    PENDING = "pending"  # an attempt failed transiently and let go; its keypress will retry
    DONE = "done"  # the outcome is known and recorded below
    FAILED = "failed"  # permanent failure, recorded below


class AckMarker(BaseModel):
    """The value under one key of the ``yobidashi_acks`` bucket."""

    model_config = ConfigDict(frozen=True)

    keypress_id: str
    ref: str
    intent: Intent
    state: MarkerState
    updated_at: AwareDatetime
    owner: str = ""  # the attempt holding a claim: one handler invocation
    outcome: AckOutcome | None = None
    action: int = 0
    message: str | None = None
    detail: str | None = None
    at: AwareDatetime | None = None

    @property
    def finished(self) -> bool:
        return self.state in (MarkerState.DONE, MarkerState.FAILED)


def marker_key(problem: ProblemRef, intent: Intent, keypress_id: str) -> str:
    """One marker per problem for acknowledge and for close; one per keypress for comments."""
    if intent is Intent.COMMENT:
        return kv_key(problem.problem_key, intent.value, keypress_id)
    return kv_key(problem.problem_key, intent.value)


class Busy(Exception):
    """Another attempt holds this problem's claim: retry shortly."""

    def __init__(self, reason: str, holder: AckMarker | None = None, revision: int = 0) -> None:
        super().__init__(reason)
        self.holder = holder
        self.revision = revision

    def held_by(self, keypress_id: str) -> bool:
        """An earlier attempt of this very keypress holds it (its write may be in doubt)."""
        return self.holder is not None and self.holder.keypress_id == keypress_id


@dataclass
class Claim:
    """One handler invocation's hold on one key."""

    markers: KvStore[AckMarker]
    key: str
    keypress_id: str
    ref: str
    intent: Intent
    owner: str
    clock: Callable[[], datetime]
    revision: int = 0
    writing: bool = False  # an event.acknowledge is in flight: it may land whatever we do

    @classmethod
    async def take(
        cls,
        markers: KvStore[AckMarker],
        key: str,
        *,
        keypress_id: str,
        ref: str,
        intent: Intent,
        clock: Callable[[], datetime],
        stale_after: float,
    ) -> Claim | AckMarker:
        """Our claim, or this keypress's finished marker (a redelivery); `Busy` if held."""
        claim = cls(markers, key, keypress_id, ref, intent, uuid.uuid4().hex[:16], clock)
        for _ in range(TAKE_ATTEMPTS):
            mine = claim.marker(MarkerState.CLAIMED)
            current = await markers.get(key)
            if current is None:
                if (revision := await markers.create(key, mine)) is not None:
                    claim.revision = revision
                    return claim
                continue
            marker, revision = current
            if marker.keypress_id == keypress_id and marker.finished:
                return marker
            if marker.state is MarkerState.CLAIMED and marker.owner != claim.owner:
                age = (mine.updated_at - marker.updated_at).total_seconds()
                if age < stale_after:
                    raise Busy(
                        f"keypress {marker.keypress_id} is writing to this problem",
                        marker,
                        revision,
                    )
                log.warning(
                    "acker.stale_claim_taken_over",
                    holder=marker.keypress_id,
                    age_seconds=round(age, 1),
                )
            if (new_revision := await markers.update(key, mine, revision)) is not None:
                claim.revision = new_revision
                return claim
        raise Busy("too many concurrent writers on this problem")

    @classmethod
    def in_doubt(
        cls, markers: KvStore[AckMarker], key: str, busy: Busy, clock: Callable[[], datetime]
    ) -> Claim:
        """The claim an earlier attempt of this keypress still holds because its write is in
        doubt: once Zabbix shows that write, its outcome is recorded on that claim."""
        assert busy.holder is not None
        holder = busy.holder
        return cls(
            markers,
            key,
            holder.keypress_id,
            holder.ref,
            holder.intent,
            holder.owner,
            clock,
            busy.revision,
            writing=True,
        )

    def marker(self, state: MarkerState) -> AckMarker:
        """The claim itself (``claimed``), or its release (``pending``)."""
        return AckMarker(
            keypress_id=self.keypress_id,
            ref=self.ref,
            intent=self.intent,
            state=state,
            updated_at=self.clock(),
            owner=self.owner if state is MarkerState.CLAIMED else "",
        )

    async def refresh(self) -> None:
        """Renew the claim right before writing; losing it means someone took over."""
        revision = await self.markers.update(
            self.key, self.marker(MarkerState.CLAIMED), self.revision
        )
        if revision is None:
            raise Busy("our claim on this problem was taken over")
        self.revision = revision

    async def release(self) -> None:
        """Best effort: mark the claim released. If this fails, the claim goes stale instead."""
        try:
            await self.markers.update(self.key, self.marker(MarkerState.PENDING), self.revision)
        except Exception as exc:
            log.info("acker.release_failed", error=repr(exc))

    async def record(self, outcome: AckMarker) -> AckMarker | None:
        """Replace the claim with the outcome: the marker as stored, or None when the key
        changed meanwhile (only a stale-claim takeover can do that)."""
        stamped = outcome.model_copy(update={"updated_at": self.clock()})
        if await self.markers.update(self.key, stamped, self.revision) is None:
            return None
        return stamped

    @asynccontextmanager
    async def held(self) -> AsyncIterator[Claim]:
        """The attempt's lifetime. If it ends in a failure (transient, a bug, or shutdown), the
        claim is released, unless a write may still land or the claim is someone else's now."""
        try:
            yield self
        except Busy:
            raise
        except (Exception, asyncio.CancelledError):
            if not self.writing:
                await self.release()
            raise

    @asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """Around ``event.acknowledge``: in doubt until Zabbix answers, whatever it answers."""
        self.writing = True
        try:
            yield
        except ZabbixError as exc:
            if exc.kind not in (ErrorKind.TIMEOUT, ErrorKind.TRANSPORT):
                self.writing = False  # Zabbix answered: nothing is still on its way
            raise
        self.writing = False
