"""Subject names, stream and key-value definitions: the map of the bus.

Subjects are ``yobidashi.<kind>.v<version>.<detail...>``. A breaking change to a payload gets a
new version segment, so old and new consumers can run side by side during a rollout.

=====================  ===========================================  ========================
stream                 subjects                                     holds
=====================  ===========================================  ========================
YOBIDASHI_ALERTS       yobidashi.alerts.v1.<status>.<severity>      AlertEvent (from ingest)
YOBIDASHI_CALLS        yobidashi.calls.v1.<kind>                    call status, failures
YOBIDASHI_KEYS         yobidashi.keys.v1.<action>                   KeyPressed
YOBIDASHI_ACKS         yobidashi.acks.v1.<outcome>                  AckResult
YOBIDASHI_ESCALATIONS  yobidashi.escalations.v1.<what>              EscalationExhausted
YOBIDASHI_DLQ          yobidashi.dlq.v1.<consumer>                  what no handler could take
=====================  ===========================================  ========================

All are file-backed, limits-retention streams (consumers ack; the stream keeps history for
``max_age`` so that a new consumer or an investigation can replay it). Replicas come from
``NATS_STREAM_REPLICAS`` (3 on a production cluster).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from yobidashi_common.events import AlertStatus, Severity
from yobidashi_common.settings import NatsSettings

PREFIX = "yobidashi"

ALERTS_STREAM = "YOBIDASHI_ALERTS"
CALLS_STREAM = "YOBIDASHI_CALLS"
KEYS_STREAM = "YOBIDASHI_KEYS"
ACKS_STREAM = "YOBIDASHI_ACKS"
ESCALATIONS_STREAM = "YOBIDASHI_ESCALATIONS"
DLQ_STREAM = "YOBIDASHI_DLQ"

ALERTS_ALL = f"{PREFIX}.alerts.v1.>"
CALLS_ALL = f"{PREFIX}.calls.v1.>"
KEYS_ALL = f"{PREFIX}.keys.v1.>"
ACKS_ALL = f"{PREFIX}.acks.v1.>"
ESCALATIONS_ALL = f"{PREFIX}.escalations.v1.>"
DLQ_ALL = f"{PREFIX}.dlq.v1.>"


def alert_subject(status: AlertStatus, severity: Severity) -> str:
    return f"{PREFIX}.alerts.v1.{status.value}.{severity.value}"


def calls_subject(kind: str) -> str:
    return f"{PREFIX}.calls.v1.{kind}"


def keys_subject(digit_name: str) -> str:
    return f"{PREFIX}.keys.v1.{digit_name}"


def acks_subject(result: str) -> str:
    return f"{PREFIX}.acks.v1.{result}"


def escalations_subject(what: str) -> str:
    return f"{PREFIX}.escalations.v1.{what}"


def dlq_subject(consumer: str) -> str:
    return f"{PREFIX}.dlq.v1.{consumer}"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: list[str]
    max_age: float
    duplicate_window: float
    retention: RetentionPolicy = RetentionPolicy.LIMITS
    description: str = ""

    def config(self, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description,
            subjects=self.subjects,
            retention=self.retention,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
            num_replicas=replicas,
        )


@dataclass(frozen=True)
class BucketSpec:
    name: str
    description: str
    ttl: float | None = None
    history: int = 1

    def config(self, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name,
            description=self.description,
            ttl=self.ttl,
            history=self.history,
            storage=StorageType.FILE,
            replicas=replicas,
        )


def shared_streams(settings: NatsSettings) -> list[StreamSpec]:
    window = settings.nats_duplicate_window
    events_age = settings.nats_events_max_age
    return [
        StreamSpec(
            ALERTS_STREAM,
            [ALERTS_ALL],
            settings.nats_alerts_max_age,
            window,
            description="Normalised alerts from Zabbix (AlertEvent).",
        ),
        StreamSpec(CALLS_STREAM, [CALLS_ALL], events_age, window, description="Call outcomes."),
        StreamSpec(KEYS_STREAM, [KEYS_ALL], events_age, window, description="Keypresses."),
        StreamSpec(ACKS_STREAM, [ACKS_ALL], events_age, window, description="Zabbix ack results."),
        StreamSpec(
            ESCALATIONS_STREAM,
            [ESCALATIONS_ALL],
            events_age,
            window,
            description="Escalations that ran out.",
        ),
        dlq_stream(settings),
    ]


def dlq_stream(settings: NatsSettings) -> StreamSpec:
    """Every service that consumes needs this one, so `Bus` always ensures it."""
    return StreamSpec(
        DLQ_STREAM,
        [DLQ_ALL],
        max(settings.nats_events_max_age, 30 * 86400.0),
        settings.nats_duplicate_window,
        description="Messages that no handler could take, kept for investigation.",
    )
