"""NATS JetStream, the way every Yobidashi service uses it.

- `connection`: `Bus` connects, reconnects, and publishes only what JetStream stored.
- `consumer`: `Consumer` runs a durable pull consumer: acks, retries, dead letters.
- `kv`: `KvStore`, a typed key-value bucket with compare-and-set, and `kv_key`.
- `streams`: `ensure_stream` and `ensure_bucket` bring JetStream in line with `subjects`.
- `metrics`: the ``yobidashi_bus_*`` metrics.
"""

from yobidashi_common.bus.connection import (
    MSG_ID_IN_PROCESS,
    TRACEPARENT,
    Bus,
    BusUnavailable,
    Published,
    connect_options,
    tls_context,
)
from yobidashi_common.bus.consumer import (
    Consumer,
    ConsumerSpec,
    Delivery,
    Reject,
    RetryLater,
    backoff_delay,
)
from yobidashi_common.bus.kv import KvStore, kv_key
from yobidashi_common.bus.metrics import (
    BUS_CONNECTED,
    BUS_CONSUMER_ACK_PENDING,
    BUS_CONSUMER_PENDING,
    BUS_DEAD_LETTERS,
    BUS_HANDLED,
    BUS_HANDLER_SECONDS,
    BUS_PUBLISH_SECONDS,
    BUS_PUBLISHED,
    BUS_RECONNECTS,
    BUS_REDELIVERED,
)
from yobidashi_common.bus.streams import ensure_bucket, ensure_stream

__all__ = [
    "BUS_CONNECTED",
    "BUS_CONSUMER_ACK_PENDING",
    "BUS_CONSUMER_PENDING",
    "BUS_DEAD_LETTERS",
    "BUS_HANDLED",
    "BUS_HANDLER_SECONDS",
    "BUS_PUBLISHED",
    "BUS_PUBLISH_SECONDS",
    "BUS_RECONNECTS",
    "BUS_REDELIVERED",
    "MSG_ID_IN_PROCESS",
    "TRACEPARENT",
    "Bus",
    "BusUnavailable",
    "Consumer",
    "ConsumerSpec",
    "Delivery",
    "KvStore",
    "Published",
    "Reject",
    "RetryLater",
    "backoff_delay",
    "connect_options",
    "ensure_bucket",
    "ensure_stream",
    "kv_key",
    "tls_context",
]
