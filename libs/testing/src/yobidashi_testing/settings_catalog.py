"""Every settings class, named once: the README's tables, the Compose and Kubernetes checks.

``scripts/env_table.py`` renders ``SECTIONS`` into the README; the deploy tests feed each
deployed component's environment to its class in ``SETTINGS`` and allow only the variables
that ``known_variables`` lists, so a variable is documented exactly when something reads it.
"""

from __future__ import annotations

from pydantic_settings import BaseSettings

from yobidashi_acker.settings import AckerSettings
from yobidashi_cli.settings import HeartbeatSettings
from yobidashi_common.settings import NatsSettings, ServiceSettings
from yobidashi_dialer.settings import DialerSettings
from yobidashi_ingest.settings import IngestSettings
from yobidashi_twilio_sim.settings import SimSettings
from yobidashi_zabbix_standin.settings import StandInSettings

# What each deployed component (Compose service, Kubernetes Deployment) reads.
SETTINGS: dict[str, type[BaseSettings]] = {
    "ingest": IngestSettings,
    "dialer": DialerSettings,
    "acker": AckerSettings,
    "heartbeat": HeartbeatSettings,
    "twilio-sim": SimSettings,
    "zabbix-standin": StandInSettings,
}

# The README's tables: title, class, and the parent whose unchanged fields it leaves out.
SECTIONS: list[tuple[str, type[BaseSettings], type[BaseSettings] | None]] = [
    ("All services: NATS", NatsSettings, None),
    ("All services: HTTP and logs", ServiceSettings, NatsSettings),
    ("Ingest", IngestSettings, ServiceSettings),
    ("Dialer", DialerSettings, ServiceSettings),
    ("Acker", AckerSettings, ServiceSettings),
    # HeartbeatSettings extends the CLI's own settings: one table for both.
    ("The CLI and the heartbeat canary", HeartbeatSettings, None),
    ("Twilio simulator (development and tests only)", SimSettings, None),
    ("Zabbix stand-in (development and tests only)", StandInSettings, None),
]


def env_name(cls: type[BaseSettings], field: str) -> str:
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


def known_variables() -> set[str]:
    """Every variable the README's tables name."""
    return {env_name(cls, field) for _, cls, _ in SECTIONS for field in cls.model_fields}
