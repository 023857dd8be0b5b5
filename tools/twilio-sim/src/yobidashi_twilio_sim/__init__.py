"""A faithful local stand-in for Twilio Programmable Voice (REST API + webhooks)."""

from yobidashi_twilio_sim.app import create_app
from yobidashi_twilio_sim.settings import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, SimSettings

__all__ = ["DEFAULT_ACCOUNT_SID", "DEFAULT_AUTH_TOKEN", "SimSettings", "create_app"]
