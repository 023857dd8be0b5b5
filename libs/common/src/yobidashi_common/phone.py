"""Phone numbers: E.164 normalisation for dialling and masking for anything a human reads.

Two types, so one cannot stand in for the other: `E164` is the number itself, what is dialled
and what identifies a person (see `identity`); `MaskedNumber` is only a view of it for logs,
speech and Zabbix messages, and many real numbers share one.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NewType

import phonenumbers

E164 = NewType("E164", str)
MaskedNumber = NewType("MaskedNumber", str)


class InvalidPhoneNumber(ValueError):
    """A number that cannot be dialled. The message never contains the full number."""


def normalize(raw: str, default_region: str = "JP") -> E164:
    """Return ``raw`` as E.164 (``090-1234-5678`` in JP becomes ``+819012345678``)."""
    text = raw.strip()
    if not text:
        raise InvalidPhoneNumber("empty phone number")
    try:
        parsed = phonenumbers.parse(text, default_region.upper())
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(f"unparseable phone number {mask(text)}: {exc}") from None
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber(f"invalid phone number {mask(text)} (region {default_region})")
    return E164(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=16384)  # each alert's log line masks its recipient: a team has few numbers
def mask(number: str) -> MaskedNumber:
    """Hide the middle of a number: ``+819012345678`` becomes ``+81 90-****-5678``.

    Keeps the country code, the first two national digits and the last four: enough for an
    engineer to recognise their own phone, not enough to dial it.
    """
    try:
        parsed = phonenumbers.parse(number, None)
        pretty = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        prefix_len = len(f"+{parsed.country_code}")
    except phonenumbers.NumberParseException:
        pretty, prefix_len = number, 0
    digits_after_prefix = [i for i, ch in enumerate(pretty) if ch.isdigit() and i >= prefix_len]
    keep = set(digits_after_prefix[:2]) | set(digits_after_prefix[-4:])
    if len(digits_after_prefix) <= 6:
        keep = set(digits_after_prefix[-2:])
    return MaskedNumber(
        "".join(
            "*" if i in digits_after_prefix and i not in keep else ch for i, ch in enumerate(pretty)
        )
    )


# Phone-like runs in free text: international (+8190...) or national with dashes (090-1234-5678).
_PHONE_IN_TEXT = re.compile(
    r"(?<![\w*])(?:\+\d[\d \-]{6,17}\d|0\d{1,4}[\- ]\d{1,4}[\- ]\d{3,4})(?![\w*])"
)


def mask_in_text(text: str) -> str:
    """Mask every phone-number-looking run inside ``text`` (used on log lines)."""
    return _PHONE_IN_TEXT.sub(lambda m: mask(m.group(0)), text)
