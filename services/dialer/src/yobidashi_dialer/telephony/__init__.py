"""The dialer's one outside system, behind a small interface so the core stays testable.

`TwilioTelephony` is the real adapter; the Twilio simulator stands in for Twilio in tests.
"""

from yobidashi_dialer.telephony.base import (
    CallInfo,
    CallRequest,
    Telephony,
    TelephonyError,
)

__all__ = ["CallInfo", "CallRequest", "Telephony", "TelephonyError"]
