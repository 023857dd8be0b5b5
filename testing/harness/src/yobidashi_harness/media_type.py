"""Our Zabbix media type as a file: where it is, and what Zabbix hands its script."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[4]
MEDIA_TYPE_YAML = REPO / "deploy" / "zabbix" / "yobidashi" / "media_yobidashi.yaml"

_MACRO = re.compile(r"\{[?$#]?[A-Z][A-Z0-9_.]*\}")


def load_media_type(path: Path = MEDIA_TYPE_YAML) -> dict[str, Any]:
    export = yaml.safe_load(path.read_text())
    media: dict[str, Any] = export["zabbix_export"]["media_types"][0]
    return media


def resolve_parameters(
    media: dict[str, Any], macros: dict[str, str], **fixed: str
) -> dict[str, str]:
    """What Zabbix hands the script: each parameter with the macros it knows replaced, the rest
    left as literal text (exactly Zabbix's behaviour for macros that do not apply)."""
    params = {}
    for p in media["parameters"]:
        value = _MACRO.sub(lambda m: macros.get(m.group(0), m.group(0)), p["value"])
        params[p["name"]] = fixed.get(p["name"], value)
    return params
