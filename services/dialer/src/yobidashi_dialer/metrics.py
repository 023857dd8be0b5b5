"""The dialer's Prometheus metrics (``yobidashi_dialer_*``). No ids or phone numbers as labels."""

from prometheus_client import Counter, Gauge, Histogram

CALLS = Counter(
    "yobidashi_dialer_calls_total",
    "Finished call attempts by outcome: answered, no_answer, busy, failed, canceled, machine.",
    ["outcome"],
)
CALLS_PLACED = Counter("yobidashi_dialer_calls_placed_total", "Calls created at Twilio.")
ANSWER_SECONDS = Histogram(
    "yobidashi_dialer_time_to_answer_seconds",
    "From creating a call to a human answering it.",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120),
)
DIAL_LATENCY = Histogram(
    "yobidashi_dialer_dial_latency_seconds",
    "From the alert (or redial timer) asking for a call to Twilio accepting the create.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
TWILIO_REQUESTS = Counter(
    "yobidashi_dialer_twilio_requests_total",
    "Twilio REST requests by operation and result (ok, http_<status>, unreachable).",
    ["operation", "result"],
)
TWILIO_SECONDS = Histogram(
    "yobidashi_dialer_twilio_request_seconds",
    "Twilio REST request latency by operation.",
    ["operation"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CALLBACKS = Counter(
    "yobidashi_dialer_callbacks_total", "Verified Twilio callbacks by kind.", ["kind"]
)
CALLBACKS_REJECTED = Counter(
    "yobidashi_dialer_callbacks_rejected_total",
    "Twilio callbacks refused, by reason (bad_signature, missing_signature, unknown_call...).",
    ["reason"],
)
KEYPRESSES = Counter(
    "yobidashi_dialer_keypresses_total", "Keys pressed during calls, by action.", ["action"]
)
DIAL_ERRORS = Counter(
    "yobidashi_dialer_dial_errors_total",
    "Calls that could not be placed, by reason (invalid_number, twilio_<code>, ...).",
    ["reason"],
)
CPS_QUEUE_DEPTH = Gauge(
    "yobidashi_dialer_cps_queue_depth",
    "Calls in this replica waiting for a calls-per-second or concurrency slot.",
)
CONCURRENT_CALLS = Gauge(
    "yobidashi_dialer_concurrent_calls",
    "Live calls counted against the account-wide concurrency cap (all replicas).",
)
