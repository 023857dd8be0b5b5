"""On-call data: contacts, schedules, escalation policies and routes (one YAML file)."""

from yobidashi_dialer.oncall.config import OnCallConfig
from yobidashi_dialer.oncall.loader import ConfigError, Problem, load, load_text
from yobidashi_dialer.oncall.routing import route_for
from yobidashi_dialer.oncall.schedule import on_call

__all__ = ["ConfigError", "OnCallConfig", "Problem", "load", "load_text", "on_call", "route_for"]
