"""What the dialer keeps in JetStream: incidents, calls, timers and dial requests.

=======================  ===============================================================
``yobidashi_incidents``  KV: problem key → `Incident` (escalation state, timeline)
``yobidashi_calls``      KV: call id → `CallRecord` (problem, contact, Twilio SID); also the
                         dial marker that keeps a call from being placed twice
``yobidashi_limits``     KV: the CPS clock and live-call set shared by all replicas
``yobidashi_bundles``    KV: per person and bundle group: the last call, calls waiting
``YOBIDASHI_DIALER``     work-queue stream: ``…dials`` (calls to place), ``…timers``
=======================  ===============================================================
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from nats.js.api import RetentionPolicy
from pydantic import AwareDatetime, BaseModel, ConfigDict

from yobidashi_common.bus import kv_key
from yobidashi_common.events import ContactRef, ProblemRef, Severity
from yobidashi_common.settings import NatsSettings
from yobidashi_common.subjects import PREFIX, BucketSpec, StreamSpec
from yobidashi_dialer.core.model import Contact, Language, Timer
from yobidashi_dialer.voice import Announcement

DIALER_STREAM = "YOBIDASHI_DIALER"
DIALS_SUBJECT = f"{PREFIX}.dialer.v1.dials"
TIMERS_SUBJECT = f"{PREFIX}.dialer.v1.timers"

INCIDENTS = BucketSpec("yobidashi_incidents", "Escalation state per problem.", ttl=14 * 86400)
CALLS = BucketSpec("yobidashi_calls", "Call id → problem, contact and Twilio SID.", ttl=3 * 86400)
LIMITS = BucketSpec("yobidashi_limits", "Calls-per-second clock and live calls, all replicas.")
BUNDLES = BucketSpec(
    "yobidashi_bundles", "Per person and bundle group: last call, waiting calls.", ttl=2 * 86400
)


def dialer_stream(settings: NatsSettings) -> StreamSpec:
    return StreamSpec(
        DIALER_STREAM,
        [f"{PREFIX}.dialer.v1.>"],
        max_age=settings.nats_events_max_age,
        duplicate_window=settings.nats_duplicate_window,
        retention=RetentionPolicy.WORK_QUEUE,
        description="The dialer's own work: calls to place and timers.",
    )


def incident_key(problem_key: str) -> str:
    return kv_key(problem_key)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore")


class CallTarget(_Model):
    """One page (problem, person, step, attempt) that a call serves."""

    problem_key: str
    page_id: str
    attempt: int


class Spoken(_Model):
    """What the call reads, kept so a repeat reads the same problem."""

    severity: Severity
    host: str
    title: str
    started_at: AwareDatetime | None = None

    def announcement(self) -> Announcement:
        return Announcement(self.severity, self.host, self.title, self.started_at)


class DialRequest(_Model):
    """A call to place. Its id is the call id, so a replay asks for the same call."""

    call_id: str
    targets: list[CallTarget]
    contact: Contact
    requested_at: AwareDatetime
    bundle: str = ""
    bundle_window: float = 0.0
    redial: bool = False


class CallRecord(_Model):
    call_id: str
    targets: list[CallTarget]
    problems: list[ProblemRef]
    contact: Contact
    from_number: str
    spoken: list[Spoken]
    state: Literal["placing", "placed", "failed"]
    placing_since: AwareDatetime
    bundle_key: str | None = None
    call_sid: str | None = None
    failure: str | None = None
    callback: bool = False  # a call into our number: its problems are read newest first
    # Telephony accounts a create for this call was sent to, in order; the last one is the one
    # that placed it. Written before each create, so crash recovery asks exactly these.
    accounts: list[str] = []

    @property
    def account(self) -> str | None:
        return self.accounts[-1] if self.accounts else None

    @property
    def language(self) -> Language:
        return self.contact.language

    def contact_ref(self) -> ContactRef:
        return self.contact.ref()


class TimerDue(Timer):
    """A timer waiting on the bus for its due time."""

    problem_key: str
    due_at: datetime
