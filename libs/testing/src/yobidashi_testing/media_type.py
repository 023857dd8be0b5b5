"""Run our Zabbix media type's JavaScript the way Zabbix 6.0 does: in Duktape (via dukpy), as
``function (value) { <script> }`` with ``HttpRequest`` and ``Zabbix.log`` provided."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dukpy
import httpx
import yaml

REPO = Path(__file__).resolve().parents[4]
MEDIA_TYPE_YAML = REPO / "deploy" / "zabbix" / "yobidashi" / "media_yobidashi.yaml"

_SHIM = """
function HttpRequest() { this._headers = []; this._status = 0; this._proxy = null; }
HttpRequest.prototype.addHeader = function (h) { this._headers.push(h); };
HttpRequest.prototype.setProxy = function (p) { this._proxy = p; };
HttpRequest.prototype.post = function (url, body) {
    var r = call_python('http_post', url, this._headers, body);
    this._status = r[0];
    return r[1];
};
HttpRequest.prototype.getStatus = function () { return this._status; };
var Zabbix = { log: function (level, message) { call_python('zabbix_log', level, message); } };
"""

_MACRO = re.compile(r"\{[?$#]?[A-Z][A-Z0-9_.]*\}")


@dataclass
class MediaTypeRun:
    result: str | None
    error: str | None
    requests: list[dict[str, Any]] = field(default_factory=list)
    logs: list[tuple[int, str]] = field(default_factory=list)


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


def run_script(script: str, params: dict[str, str], timeout: float = 10.0) -> MediaTypeRun:
    run = MediaTypeRun(result=None, error=None)

    def http_post(url: str, headers: list[str], body: str) -> list[Any]:
        hdrs = dict(h.split(": ", 1) for h in headers)
        run.requests.append({"url": url, "headers": hdrs, "body": json.loads(body)})
        try:
            response = httpx.post(url, content=body.encode(), headers=hdrs, timeout=timeout)
        except httpx.HTTPError as exc:
            # Zabbix's HttpRequest throws on transport errors; mimic with status 0.
            return [0, f"cannot connect: {exc}"]
        return [response.status_code, response.text]

    interpreter = dukpy.JSInterpreter()
    interpreter.export_function("http_post", http_post)
    interpreter.export_function("zabbix_log", lambda level, msg: run.logs.append((level, msg)))
    outcome = interpreter.evaljs(
        _SHIM
        + "var __out; try { __out = {ok: (function (value) {\n"
        + script
        + "\n})(dukpy.value)}; } catch (e) { __out = {error: String(e)}; } __out;",
        value=json.dumps(params),
    )
    run.result = outcome.get("ok")
    run.error = outcome.get("error")
    return run
