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

CONFIG_RELOADS = Counter(
    "yobidashi_dialer_config_reloads_total",
    "On-call config loads after start, by result (ok, invalid).",
    ["result"],
)

# -- escalation ------------------------------------------------------------------------------

STEPS = Counter("yobidashi_escalation_steps_total", "Escalation policy steps started.")
EXHAUSTED = Counter(
    "yobidashi_escalation_policies_exhausted_total", "Escalation policies that ran out."
)
TIME_TO_ACKNOWLEDGE = Histogram(
    "yobidashi_escalation_time_to_acknowledge_seconds",
    "From the problem's start in Zabbix to a keypress that acknowledged it.",
    buckets=(10, 30, 60, 120, 180, 300, 600, 900, 1800, 3600, 7200),
)
BUNDLED_CALLS = Counter(
    "yobidashi_escalation_bundled_calls_total", "Calls that announced more than one problem."
)
BUNDLED_PROBLEMS = Counter(
    "yobidashi_escalation_bundled_problems_total", "Problems announced in bundled calls."
)
SUPPRESSED = Counter(
    "yobidashi_escalation_suppressed_duplicates_total",
    "Zabbix notifications for a problem whose escalation policy already runs.",
)
HELD = Counter(
    "yobidashi_escalation_calls_held_total",
    "Calls held back for a while, by reason (bundle_window, hourly_cap, on_the_phone).",
    ["reason"],
)
