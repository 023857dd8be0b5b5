"""Ingest's Prometheus metrics (``yobidashi_ingest_*``). No ids or phone numbers as labels."""

from prometheus_client import Counter, Histogram

REQUESTS = Counter(
    "yobidashi_ingest_requests_total",
    "Webhook requests by result (accepted, duplicate, or the reject reason).",
    ["result"],
)
ALERTS = Counter(
    "yobidashi_ingest_alerts_total",
    "Alerts stored on the bus, by status and severity (duplicates not counted).",
    ["status", "severity"],
)
OWN_UPDATES = Counter(
    "yobidashi_ingest_own_updates_total",
    "Update notifications recognised as Yobidashi's own acknowledgements coming back.",
)
REJECTS = Counter(
    "yobidashi_ingest_rejects_total",
    "Webhook requests refused, by reason.",
    ["reason"],
)
PUBLISH_SECONDS = Histogram(
    "yobidashi_ingest_publish_seconds",
    "Time from a valid webhook to JetStream's acknowledgement of the stored alert.",
    buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REQUEST_SECONDS = Histogram(
    "yobidashi_ingest_request_seconds",
    "Time to answer a webhook request, whatever the result.",
    buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
