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
CALLBACK_CALLS = Counter(
    "yobidashi_dialer_callback_calls_total",
    "Calls into our number, by outcome (read_out, nothing_open, unknown_caller, wrong_pin, "
    "locked, no_pin, off).",
    ["outcome"],
)
VERIFICATIONS = Counter(
    "yobidashi_dialer_verifications_total",
    "Contact verification calls by outcome (verified, wrong_code, no_code, no_answer, failed).",
    ["outcome"],
)
CONTACTS_UNVERIFIED = Gauge(
    "yobidashi_dialer_contacts_unverified",
    "Contacts in the on-call config whose first number has not been verified.",
)
ONCALL_UNVERIFIED = Gauge(
    "yobidashi_dialer_oncall_unverified",
    "Schedules whose person on call now has an unverified number.",
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

# -- per telephony account (label: the account's configured name, never its SID) ------------
ACCOUNT_CREATES = Counter(
    "yobidashi_dialer_account_creates_total",
    "Call creates per telephony account by result: ok, or the error that counts against it "
    "(http_<status>, unreachable, timeout, code_<twilio code>).",
    ["account", "result"],
)
ACCOUNT_ERRORS = Counter(
    "yobidashi_dialer_account_errors_total",
    "Evidence against a telephony account, by kind: create (5xx, timeout, auth), "
    "cannot_call (suspended, unverified caller ID, geo permission), silent (an accepted call "
    "with no status at the watchdog's time).",
    ["account", "kind"],
)
BREAKER_STATE = Gauge(
    "yobidashi_dialer_account_breaker_state",
    "1 for the state each telephony account's circuit breaker is in (closed, open, half_open).",
    ["account", "state"],
)
BREAKER_SECONDS = Gauge(
    "yobidashi_dialer_account_breaker_state_seconds",
    "Seconds each account's breaker has spent in each state since it was first used, agreed by "
    "every replica (kept in JetStream KV).",
    ["account", "state"],
)
BREAKER_TRANSITIONS = Counter(
    "yobidashi_dialer_account_breaker_transitions_total",
    "Breaker state changes this replica made, by account and new state.",
    ["account", "state"],
)
ACCOUNT_IN_USE = Gauge(
    "yobidashi_dialer_account_in_use",
    "1 for the telephony account new calls go to now (0 for the others); order is the "
    "configured order, so anything but the first at 1 means running on a fallback.",
    ["account", "order"],
)
