"""The bus's own Prometheus metrics, shared by every service that uses it."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

BUS_CONNECTED = Gauge("yobidashi_bus_connected", "1 while connected to NATS and streams exist.")
BUS_RECONNECTS = Counter("yobidashi_bus_reconnects_total", "Reconnections to NATS.")
BUS_PUBLISHED = Counter(
    "yobidashi_bus_published_total", "Messages published to JetStream.", ["stream", "result"]
)
# Every request that waits for JetStream's answer, so a figure like "round trips per placed
# call" is read off a service's own /metrics (on a replicated stream each one waits for a quorum).
BUS_JETSTREAM_REQUESTS = Counter(
    "yobidashi_bus_jetstream_requests_total",
    "JetStream requests that wait for the server's answer, by operation.",
    ["operation"],
)
BUS_PUBLISH_SECONDS = Histogram(
    "yobidashi_bus_publish_seconds",
    "Time from publish to JetStream PubAck.",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
BUS_HANDLED = Counter(
    "yobidashi_bus_messages_handled_total",
    "Messages handled by durable consumers, by outcome.",
    ["consumer", "result"],
)
BUS_REDELIVERED = Counter(
    "yobidashi_bus_messages_redelivered_total",
    "Messages seen again after a nak, a crash or an ack timeout.",
    ["consumer"],
)
BUS_DEAD_LETTERS = Counter(
    "yobidashi_bus_dead_letters_total", "Messages moved to the dead-letter subject.", ["consumer"]
)
BUS_CONSUMER_PENDING = Gauge(
    "yobidashi_bus_consumer_pending_messages",
    "Messages in the stream not yet delivered to the consumer (its lag).",
    ["consumer"],
)
BUS_CONSUMER_ACK_PENDING = Gauge(
    "yobidashi_bus_consumer_ack_pending_messages",
    "Messages delivered to the consumer and not yet acknowledged (in work or waiting a retry).",
    ["consumer"],
)
BUS_HANDLER_SECONDS = Histogram(
    "yobidashi_bus_handler_seconds",
    "Time a consumer's handler spent on one message.",
    ["consumer"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
