"""One media type file for Zabbix 6.0 to 8.0: exported as 6.0, using no macro 8.0 removed.

Zabbix 8.0's documentation lists the macros it removed (use ``{EVENT.UPDATE.*}`` instead);
7.2 removed the media type properties ``content_type`` and ``exec_params``. Import converters
up to 8.0 change no webhook field, so a 6.0 export imports everywhere: the real 6.0 and 7.0
import it in the Zabbix tests.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from yobidashi_testing.media_type import MEDIA_TYPE_YAML, load_media_type

REMOVED_IN_8_0 = {
    "{ACK.DATE}",
    "{ACK.MESSAGE}",
    "{ACK.TIME}",
    "{EVENT.ACK.HISTORY}",
    "{TRIGGER.COMMENT}",
    "{STATUS}",
    "{USER.ALIAS}",
}
REMOVED_PROPERTIES_7_2 = {"content_type", "exec_params"}
MACRO = re.compile(r"\{[A-Z][A-Z0-9_.]*(?:\.[A-Za-z0-9_]+)*\}")


def macros_in(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(MACRO.findall(value))
    if isinstance(value, dict):
        return set().union(*(macros_in(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(macros_in(v) for v in value)) if value else set()
    return set()


def test_the_media_type_uses_no_macro_that_zabbix_8_removed() -> None:
    media = load_media_type()
    used = macros_in({k: v for k, v in media.items() if k != "script"})
    assert "{EVENT.UPDATE.ACTION}" in used  # the check sees the parameters
    assert "{EVENT.TAGS.__yobidashi_url}" in used  # and the event menu
    assert used & REMOVED_IN_8_0 == set()
    assert {macro for macro in used if macro.startswith("{ACK.")} == set()


def test_the_media_type_is_a_6_0_export_without_properties_7_2_removed() -> None:
    export = yaml.safe_load(MEDIA_TYPE_YAML.read_text())["zabbix_export"]
    assert export["version"] == "6.0"
    assert REMOVED_PROPERTIES_7_2.isdisjoint(export["media_types"][0])


def test_the_check_would_catch_a_removed_macro() -> None:
    assert macros_in({"message": "{USER.ALIAS} acked: {ACK.MESSAGE}"}) & REMOVED_IN_8_0 == {
        "{USER.ALIAS}",
        "{ACK.MESSAGE}",
    }
