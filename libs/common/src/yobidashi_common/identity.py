"""Who a person is: the one key for bundles, "on the phone with us", hourly caps and acks.

A `ContactId` is either the contact's id from the on-call config, or ``tel:`` and the full
E.164 number of someone only Zabbix knows. It is never built from a masked or display form:
``+81 90-****-5678`` is shared by many real phones, so a key made from it would merge two
people, and the wrong phone would hear (and acknowledge) someone else's problem. The check is
in the type: a masked number (spaces, ``*``) or a name with spaces is not a valid id, so it
cannot become one by accident.

Ids written by Yobidashi 0.1 for Zabbix-driven contacts were ``phone:<masked number>``. They
identify nobody; `is_legacy` names them so the dialer can rebuild the identity from the full
number it stored beside them.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import GetCoreSchemaHandler
from pydantic_core import core_schema

from yobidashi_common.phone import E164

CONFIG_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
NUMBER_ID = re.compile(r"tel:\+[1-9][0-9]{6,14}")
_LEGACY_PREFIX = "phone:"


class ContactId(str):
    """A config contact id, or ``tel:+<E.164>``. Validated on construction."""

    __slots__ = ()

    def __new__(cls, value: str) -> ContactId:
        if not (CONFIG_ID.fullmatch(value) or NUMBER_ID.fullmatch(value)):
            raise ValueError(
                "a contact id is an on-call config id ([A-Za-z0-9_.-], up to 64) or tel:+<E.164>"
            )
        return super().__new__(cls, value)

    @classmethod
    def of_number(cls, number: E164) -> ContactId:
        return cls(f"tel:{number}")

    @property
    def config_id(self) -> str | None:
        """The on-call config's id, or None for someone known only by their number."""
        return None if self.startswith("tel:") else str(self)

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: type[Any], handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(
            cls, core_schema.str_schema(), serialization=core_schema.to_string_ser_schema()
        )


def is_legacy(raw_id: str) -> bool:
    """An id Yobidashi 0.1 made from a masked number (``phone:+81 90-****-5678``)."""
    return raw_id.startswith(_LEGACY_PREFIX)
