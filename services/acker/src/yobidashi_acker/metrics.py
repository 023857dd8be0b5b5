"""The acker's Prometheus metrics (``yobidashi_acker_*``). No ids or phone numbers as labels.

The one exception to "no free-form labels" is the info metric: the Zabbix version as a label
is how an info metric works (one series, value 1, replaced when Zabbix is upgraded).

The bus helper already counts per-consumer handling, redeliveries and dead letters
(``yobidashi_bus_*{consumer="acker"}``); these are the Zabbix side.
"""

from prometheus_client import Counter, Gauge, Histogram, Info

ACKS = Counter(
    "yobidashi_acker_acks_total",
    "Keypress/problem pairs finished, by outcome (acknowledged, already_acknowledged, failed) "
    "and key action (acknowledge, close, comment). Redeliveries of a finished one are not "
    "counted again.",
    ["outcome", "action"],
)
ZABBIX_REQUESTS = Counter(
    "yobidashi_acker_zabbix_requests_total",
    "Zabbix API requests by method and result (ok or the error kind).",
    ["method", "result"],
)
ZABBIX_REQUEST_SECONDS = Histogram(
    "yobidashi_acker_zabbix_request_duration_seconds",
    "Zabbix API request latency by method, whatever the result.",
    ["method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# Fine buckets where phone acks normally land (0.05-5 s) so that p50/p99 from
# histogram_quantile are close; coarse ones up to a day for acks that waited out an outage.
ACK_LAG_SECONDS = Histogram(
    "yobidashi_acker_ack_lag_seconds",
    "From the keypress (KeyPressed.at, the dialer's clock) to Zabbix accepting "
    "event.acknowledge (the acker's clock). Observed once per write that Zabbix accepted.",
    buckets=(
        0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0,
        1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0,
        300.0, 600.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
    ),
)  # fmt: skip
RETRIES = Counter(
    "yobidashi_acker_retries_total",
    "Keypresses put back on the bus to retry later, by reason (the Zabbix error kind, "
    "busy when another keypress holds the problem, bus when NATS refused the result).",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "yobidashi_acker_dead_letters_total",
    "Keypresses the acker sent to the dead-letter subject, by reason.",
    ["reason"],
)
AUTH_FAILURES = Counter(
    "yobidashi_acker_zabbix_auth_failures_total",
    "Zabbix refused our credentials (token, password or HTTP basic auth). A config problem: "
    "the acks wait on the bus until it is fixed.",
)
CONFIG_ERRORS = Counter(
    "yobidashi_acker_zabbix_config_errors_total",
    "Zabbix answers that point at our configuration (URL, TLS, version, role permissions).",
)
ZABBIX_UP = Gauge(
    "yobidashi_acker_zabbix_up",
    "1 when the last Zabbix API request got a usable answer (a result, or an error such as "
    "bad credentials); 0 after a transport error, a timeout or a server-side failure (HTTP "
    "5xx, database down).",
)
ZABBIX_LAST_SUCCESS = Gauge(
    "yobidashi_acker_zabbix_last_success_timestamp_seconds",
    "Unix time of the last successful authenticated Zabbix API request.",
)
ZABBIX_INFO = Info(
    "yobidashi_acker_zabbix",
    "The Zabbix the acker talks to: its version (apiinfo.version), where the credential goes "
    "(auth: header or body) and which one it is (credential: token or password).",
)
