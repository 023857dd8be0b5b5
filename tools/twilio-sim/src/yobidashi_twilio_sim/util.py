"""Small formatting helpers shared by the REST layer, the engine and the journal."""

from __future__ import annotations

import math
import re
import secrets
from email.utils import formatdate
from urllib.parse import urlsplit

E164 = re.compile(r"^\+[1-9]\d{1,14}$")
API_VERSION = "2010-04-01"

# Only for the *Country webhook params; Twilio fills these from its number database.
_COUNTRY_PREFIXES = (("+1", "US"), ("+81", "JP"), ("+44", "GB"), ("+49", "DE"), ("+33", "FR"))


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def rfc2822(timestamp: float | None) -> str | None:
    """`Tue, 31 Aug 2010 20:36:28 +0000`, the format Twilio uses for every date."""
    if timestamp is None:
        return None
    return formatdate(timestamp, usegmt=False).replace("-0000", "+0000")


def is_endpoint(value: str) -> bool:
    """E.164 numbers, plus the `client:` and `sip:` endpoints Twilio also accepts."""
    if E164.match(value):
        return True
    return value.startswith(("client:", "sip:")) and len(value.split(":", 1)[1]) > 0


def format_number(value: str) -> str:
    """`(415) 867-5309` for NANP numbers, E.164 for everything else (as Twilio does)."""
    if re.fullmatch(r"\+1\d{10}", value):
        return f"({value[2:5]}) {value[5:8]}-{value[8:]}"
    return value


def country_of(value: str) -> str:
    for prefix, country in _COUNTRY_PREFIXES:
        if value.startswith(prefix):
            return country
    return ""


def is_http_url(value: str) -> bool:
    """An absolute http(s) URL with a hostname; Twilio refuses underscores in hostnames."""
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    host = parts.hostname or ""
    return parts.scheme in ("http", "https") and bool(host) and "_" not in host


def whole_seconds(seconds: float) -> int:
    """Round a duration up to whole seconds, ignoring float noise."""
    return max(0, math.ceil(seconds - 1e-6))
